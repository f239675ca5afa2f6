"""Every threshold the analysis uses, in one place, with what it means (MEANINGS).

docs/analysis.md lists them (tests/analysis/test_thresholds.py keeps that list equal to this module);
`python -m analysis.thresholds` prints the list as a Markdown table.
"""

from __future__ import annotations

from servescope.results import GENERATOR_SATURATED_PERCENT

# Verdicts (analysis/rules.py)
HEADROOM = 0.8
QUEUE_DOMINANT_SHARE = 0.5
BATCH_WINDOW_SHARE = 0.3
LONELY_BATCH_MAX = 1.5
REST_DOMINANT_SHARE = 0.5
IDLE_HOST = 0.5
HOST_BUSY = 0.85
GPU_BUSY = 0.85
GPU_IDLE = 0.5
OPEN_LOOP_SHORTFALL = 0.9
GENERATOR_BUSY_PERCENT = GENERATOR_SATURATED_PERCENT
GENERATOR_STARVED_WAIT_SHARE = 0.5
GENERATOR_DELAY_SHARE = 0.25
CONTENDED_OTHER_CORES = 0.5
SERVER_STARVED_WAIT_SHARE = 0.3
LOOP_BUSY_CORES = 0.85
LOOP_LAG_SATURATED_S = 0.002
COMPUTE_BUSY = 0.8
HEALTHY_MAX_BUSY = 0.7
LARGE_REQUEST_BYTES = 1 << 20
FULL_BATCH_FRACTION = 0.9
# Recommendations (analysis/recommend.py)
BETTER_VARIANT_RATIO = 1.1
BATCH_GAIN_MIN = 0.1
TRANSPORT_SAVING_SHARE = 0.1
# Batching (analysis/batching.py)
STOP_PAYING_FRACTION = 0.9
WINDOW_OBJECTIVE_SHARE = 0.1
DELAY_WORTH_CHANGING = 0.5
MIN_FIT_SPREAD = 1.0
# Curves (analysis/curves.py)
KNEE_MIN_LATENCY_GROWTH = 0.10
# Consistency checks (analysis/consistency.py)
LITTLE_MIN_RATIO = 0.75
LITTLE_MAX_RATIO = 1.10
ERROR_RATIO_MAX = 0.01
# Utilization (analysis/utilization.py)
MIN_POINTS_FOR_CORRELATION = 3

MEANINGS: dict[str, str] = {
    "HEADROOM": "healthy needs the objective's percentile at or below this share of the objective",
    "QUEUE_DOMINANT_SHARE": "queueing dominates at this share of the mean latency",
    "BATCH_WINDOW_SHARE": "the batch window costs latency for nothing at this share of the mean latency, "
    "with lonely batches",
    "LONELY_BATCH_MAX": "batches are lonely at or below this many requests per batch",
    "REST_DOMINANT_SHARE": "time outside queue and compute dominates at this share of the mean latency",
    "IDLE_HOST": "server and generator below this share of the cores: the machine was not busy with the test",
    "HOST_BUSY": "server and generator at this share of the cores or more: the host CPUs are saturated",
    "GPU_BUSY": "compute-bound on GPU at this GPU busy fraction or more",
    "GPU_IDLE": "host-bound when the GPU is below this busy fraction while the host CPUs are saturated",
    "OPEN_LOOP_SHORTFALL": "an open-loop step answering under this share of the offered rate is saturated",
    "GENERATOR_BUSY_PERCENT": "the load generator is saturated when one of its processes uses this percent "
    "of a core",
    "GENERATOR_STARVED_WAIT_SHARE": "the load generator is starved when its threads waited for a CPU this "
    "share of the CPU time they asked for (run-queue wait / (run + wait), all its processes' threads)",
    "GENERATOR_DELAY_SHARE": "the load generator is behind when its own send delay is this share of the mean "
    "latency",
    "CONTENDED_OTHER_CORES": "other processes using this many cores while the server waits for a CPU: the "
    "machine, not the server",
    "SERVER_STARVED_WAIT_SHARE": "the server's event loop waited for a CPU this share of the step: starved",
    "LOOP_BUSY_CORES": "an event-loop thread using this many cores is saturated (front-end-bound)",
    "LOOP_LAG_SATURATED_S": "a mean event-loop timer lateness this long (seconds) also says the loop is "
    "saturated",
    "COMPUTE_BUSY": "the compute slots (instances x workers) busy this share of the step: compute-bound",
    "HEALTHY_MAX_BUSY": "healthy needs the compute slots and the event loop below this load",
    "LARGE_REQUEST_BYTES": "requests this large (bytes) make the transport a plausible limit",
    "FULL_BATCH_FRACTION": "batches are full when they average this share of max_batch_size",
    "BETTER_VARIANT_RATIO": "recommend another precision variant from this throughput ratio",
    "BATCH_GAIN_MIN": "a larger batch is worth it while throughput per sample still improves by this share",
    "TRANSPORT_SAVING_SHARE": "recommend another transport (streaming, gRPC, REST) when the transport probe "
    "measured it this share cheaper per request than the one used",
    "STOP_PAYING_FRACTION": "larger batches stop paying once one instance reaches this share of its ceiling",
    "WINDOW_OBJECTIVE_SHARE": "a suggested batch window takes at most this share of the latency objective",
    "DELAY_WORTH_CHANGING": "suggest a shorter window only at or below this share of the current one",
    "MIN_FIT_SPREAD": "the compute fit needs mean batch sizes spread over at least this many samples",
    "KNEE_MIN_LATENCY_GROWTH": "the knee needs mean latency to grow faster than throughput and by this share",
    "LITTLE_MIN_RATIO": "closed loop: throughput x mean latency / users below this is flagged",
    "LITTLE_MAX_RATIO": "closed loop: throughput x mean latency / users above this is flagged",
    "ERROR_RATIO_MAX": "a step with more failed requests than this share is flagged",
    "MIN_POINTS_FOR_CORRELATION": "a resource's correlation with throughput needs this many steps",
}


def values() -> dict[str, float]:
    """Every threshold by name, in the order of MEANINGS."""
    return {name: globals()[name] for name in MEANINGS}


def markdown() -> str:
    lines = ["| threshold | value | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {value:g} | {MEANINGS[name]} |" for name, value in values().items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
