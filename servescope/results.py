"""Campaign results on disk: the contract between the load tester (writer) and the analysis (reader).

    <campaign>/campaign.json    CampaignInfo: resolved configuration, machine facts, peak probe, models
    <campaign>/steps.jsonl      one StepRecord per measured step, appended as each step finishes
    <campaign>/samples/*.npy    optional raw client latencies (seconds, float64) per step

Every record carries `schema_version`; readers refuse versions they do not know (READABLE_VERSIONS).
All times are in seconds, rates per second, sizes in bytes. A field is None when it was not measured
(for example `gpu` on a machine without one, `server` when /metrics could not be scraped).

The files are untrusted input to the reader: every field is checked against its declared type (a
string `completed` or an int `model` is refused, naming the file, the line, the key and the value cut
to a bounded length), reads are bounded (MAX_CAMPAIGN_FILE_BYTES, MAX_STEP_LINE_BYTES) and JSON nested
deeper than the parser allows is refused like any other malformed line.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from servescope.echo import one_line, shown
from servescope.metrics import ServerDeltas  # re-exported: step records hold it

SCHEMA_VERSION = 5
# Version 1 lacked ServerSettings.intra_op_threads and .workers, the machine accounting of CpuUsage
# beyond machine_cores, StepRecord.client and .compute_by_batch_size; its records read with them None.
# Version 2 lacked CampaignInfo.transport (read as None), version 3 CampaignInfo.compute_probe (read empty),
# version 4 CpuUsage.server_process, .server_process_note and .server_pids (read as None).
READABLE_VERSIONS = (1, 2, 3, 4, 5)
CAMPAIGN_FILE = "campaign.json"
STEPS_FILE = "steps.jsonl"
SAMPLES_DIR = "samples"
MAX_CAMPAIGN_FILE_BYTES = 16 << 20  # campaign.json is a few kB to a few hundred kB
MAX_STEP_LINE_BYTES = 4 << 20  # one step record is a few kB
MAX_STEPS_FILE_BYTES = 512 << 20  # about 100,000 steps


class ResultsError(ValueError):
    """A campaign folder or record is missing, malformed or of an unknown schema version."""


@dataclass
class LoadSpec:
    """How load was offered: closed loop (users) or open loop (rate_rps)."""

    mode: str  # "closed" or "open"
    users: int | None = None
    rate_rps: float | None = None
    arrival: str | None = None  # "constant" or "poisson" for open loop
    workers: int = 0  # Locust worker processes (0: a single local process)


@dataclass
class ServerSettings:
    """The settings the server reported running during a step (its ModelConfig; servescope.settings).

    None where unknown (a server that does not answer ModelConfig). Every field is part of a series'
    identity in the analysis: two steps that differ in any of them are never merged.
    """

    batching: bool | None = None
    max_batch_size: int | None = None
    max_queue_delay_us: int | None = None
    preferred_batch_sizes: list[int] = field(default_factory=list)
    max_queue_size: int | None = None
    instances: int | None = None
    device: str | None = None  # "cpu" or "cuda"
    # servescope closes a batch early when no other request is expected before the delay ends;
    # False means the delay is always waited out (Triton's behaviour). None: unknown or not servescope.
    adaptive_delay: bool | None = None
    intra_op_threads: int | None = None  # ONNX Runtime threads per execution
    workers: int | None = None  # server worker processes
    server: str = "servescope"  # ServerMetadata's name ("servescope", "triton", ...) or "unknown"


@dataclass
class LatencySummary:
    """Client-observed latency percentiles over every completed request of the step, in seconds."""

    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float
    mean: float


@dataclass
class Window:
    """One measurement window; a step is stable when its last three windows agree."""

    duration_s: float
    completed: int
    throughput_rps: float
    p99_s: float | None


# CpuUsage.server_process: whose CPU the server_* figures are (loadtest/listener.py finds them).
SERVER_STARTED, SERVER_FOUND, SERVER_REMOTE, SERVER_NOT_FOUND = "started", "found", "remote", "not found"

# A load generator process using this percent of one core or more limits the load it can offer
# (CpuUsage.generator_saturated); the analysis uses the same figure.
GENERATOR_SATURATED_PERCENT = 90.0


@dataclass
class CpuUsage:
    """CPU use during the step, in cores (1.0 = one core fully busy), and what each side could have used.

    The *_wait_share figures are the share of the step a thread spent runnable but waiting for a CPU
    (Linux schedstat): near 0 the thread ran whenever it wanted; a large share means something else
    held the cores it may use.
    """

    server_cores: float | None  # from the server's process_cpu_seconds_total, or sampled with psutil
    generator_cores: float | None  # all load generator processes together
    generator_max_process_percent: float | None  # the busiest generator process, percent of one core
    generator_saturated: bool  # Locust's cpu warning fired, or a process stayed above 90% of a core
    machine_cores: int | None = None
    server_available_cores: int | None = None  # affinity capped by the cgroup quota (servescope.cores)
    generator_available_cores: int | None = None
    other_cores: float | None = None  # every other process of the machine during the step
    server_loop_cores: float | None = None  # the busiest worker's event-loop (main) thread
    server_busiest_thread_cores: float | None = None  # the server's busiest thread, whichever it is
    server_loop_wait_share: float | None = None  # that event-loop thread, runnable but not running
    # The generator's threads together: of the CPU time they asked for, the share they waited for.
    generator_wait_share: float | None = None
    # Whose CPU server_* is (loadtest/listener.py): "started" (by the campaign), "found" (the process tree
    # listening on the target's port here), "remote" or "not found" (then server_* is from its /metrics
    # or None); the note says what was found or why nothing was, server_pids the tree when it was found.
    server_process: str | None = None
    server_process_note: str | None = None
    server_pids: list[int] | None = None


@dataclass
class ClientTiming:
    """The load generator's own timing: how late it sent what it meant to send.

    delay: in a closed loop, the time between a user's answer and its next request (the think time is
    0, so all of it is the generator's own overhead or starvation); in an open loop, how late each
    request left against its schedule.
    """

    delay_mean_s: float
    delay_p99_s: float
    late_arrivals: int = 0  # open loop: sent more than 5 ms behind schedule
    dropped_arrivals: int = 0  # open loop: never sent (in-flight cap)
    request_bytes: int | None = None  # tensor bytes in one request


@dataclass
class GpuUsage:
    """GPU gauges from the server's metrics, averaged over the step's samples."""

    name: str | None
    utilization_ratio: float | None
    memory_used_bytes: float | None
    memory_total_bytes: float | None
    power_watts: float | None = None


@dataclass
class StepRecord:
    """One measured step of a campaign (one line of steps.jsonl)."""

    step_index: int
    model: str
    precision: str | None
    client_batch_size: int
    load: LoadSpec
    server_settings: ServerSettings
    started_at: str  # ISO 8601, UTC
    warmup_s: float
    duration_s: float  # measured time, warm-up excluded
    completed: int  # requests answered OK
    errors_by_code: dict[str, int]  # gRPC status code name -> count
    requests_per_s: float
    inferences_per_s: float
    latency_s: LatencySummary | None  # None when nothing completed
    stable: bool
    windows: list[Window]
    server: ServerDeltas | None
    cpu: CpuUsage
    gpu: GpuUsage | None
    samples_file: str | None = None  # relative to the campaign folder
    note: str | None = None  # why a step ended early, e.g. "target unreachable"
    client: ClientTiming | None = None
    # The server's ModelStatistics over the step: batch size -> [executions, compute seconds].
    compute_by_batch_size: dict[str, list[float]] | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def failed(self) -> int:
        return sum(self.errors_by_code.values())

    @property
    def error_ratio(self) -> float:
        total = self.completed + self.failed
        return self.failed / total if total else 0.0


@dataclass
class MachineInfo:
    cpu_model: str
    cpu_count: int
    memory_bytes: int | None
    gpu_name: str | None
    platform: str
    python: str
    packages: dict[str, str]


@dataclass
class PeakProbe:
    """A short measurement of what this machine can do, for the analytic floor of the analysis."""

    matmul_flops_per_s: float  # float32 matrix multiply, all cores
    memory_bytes_per_s: float  # large array copy
    device: str = "cpu"


# The ways to call a server that TransportProbe measures.
TRANSPORTS = ("grpc", "grpc_stream", "http")


@dataclass
class TransportProbe:
    """What one request costs over each way to call the server, measured side by side before the steps:
    sequential batch-1 requests (concurrency 1, one connection each, after a warm-up) over unary gRPC,
    one gRPC ModelStreamInfer stream and REST with binary tensors on a keep-alive connection. Only the
    transports the campaign could reach are measured (an embedded server: all three)."""

    model: str
    requests: int  # measured requests per transport
    p50_s: dict[str, float]  # transport (TRANSPORTS) -> median client latency per request, seconds
    mean_s: dict[str, float]
    used: str  # the transport the steps used


@dataclass
class CampaignInfo:
    """campaign.json: what was run, where, against what."""

    name: str
    started_at: str
    config: dict[str, Any]  # the resolved campaign configuration
    machine: MachineInfo
    objective: dict[str, Any]  # {"percentile": "p99", "latency_s": 0.05}
    # {"protocol": "grpc"|"http", "streaming": bool, "grpc": "host:port" or None, "http": "host:port" or None,
    #  "metrics_url": ..., "embedded": bool}
    target: dict[str, Any]
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> metadata.json
    peak: PeakProbe | None = None
    finished_at: str | None = None
    interrupted: bool = False
    transport: TransportProbe | None = None
    # model -> batch size -> [executions, compute seconds] the server recorded for the compute probe:
    # client batches of 1, 2, 4, ... samples sent one at a time before the steps (loadtest/compute_probe.py)
    compute_probe: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


def is_loopback(address: str | None) -> bool:
    """True for a HOST:PORT on this machine's loopback (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if not address:
        return False
    if "://" in address:  # a URL (an HTTP target)
        from urllib.parse import urlsplit

        return is_loopback(urlsplit(address).netloc or None)
    host = address.rsplit(":", 1)[0].strip("[]") if address.count(":") == 1 or "]" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def to_dict(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


def _build(cls: type, data: Any, where: str, key: str = "") -> Any:
    """Build a dataclass from parsed JSON, checking every field against its declared type.

    Raises ResultsError naming `where` (file and line), the dotted key and the value (cut).
    """
    if not isinstance(data, dict):
        raise ResultsError(
            f"{where}: {key or cls.__name__}: expected an object for {cls.__name__}, found "
            f"{type(data).__name__} {shown(data)}"
        )
    hints = _hints(cls)
    unknown = [name for name in data if name not in hints]
    if unknown:
        raise ResultsError(f"{where}: unknown field(s) {shown(sorted(map(str, unknown)))} in {cls.__name__}")
    kwargs = {
        name: _typed(value, hints[name], where, f"{key}.{name}" if key else name)
        for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ResultsError(f"{where}: {cls.__name__}: {one_line(str(exc))}") from exc


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


_SCALARS: dict[type, tuple[tuple[type, ...], str]] = {
    str: ((str,), "a string"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    bool: ((bool,), "true or false"),
}


def _typed(value: Any, hint: Any, where: str, key: str) -> Any:
    """value if it fits the type hint (dataclasses built, recursively); ResultsError otherwise."""
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        errors = []
        for option in options:
            try:
                return _typed(value, option, where, key)
            except ResultsError as exc:
                errors.append(exc)
        if value is None:
            raise ResultsError(f"{where}: {key}: null is not allowed here")
        raise errors[0]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where, key)
    if origin is list:
        if not isinstance(value, list):
            raise ResultsError(f"{where}: {key}: {shown(value)} must be a list")
        return [_typed(item, args[0], where, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ResultsError(f"{where}: {key}: {shown(value)} must be an object")
        return {k: _typed(v, args[1], where, f"{key}.{k}") for k, v in value.items()}
    accepted, description = _SCALARS[hint]
    if (isinstance(value, bool) and hint is not bool) or not isinstance(value, accepted):
        raise ResultsError(f"{where}: {key}: {shown(value)} must be {description}")
    return float(cast("float", value)) if hint is float else value


def _check_version(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise ResultsError(f"{where}: expected a JSON object, found {type(data).__name__} {shown(data)}")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ResultsError(
            f"{where}: schema_version {shown(version)} is not supported "
            f"(readable: {', '.join(map(str, READABLE_VERSIONS))})"
        )


def step_from_dict(data: dict[str, Any], where: str = "step") -> StepRecord:
    _check_version(data, where)
    return _build(StepRecord, data, where)


def campaign_from_dict(data: dict[str, Any], where: str = CAMPAIGN_FILE) -> CampaignInfo:
    _check_version(data, where)
    return _build(CampaignInfo, data, where)


def write_campaign(info: CampaignInfo, folder: Path) -> None:
    """Write campaign.json atomically (write then rename), so a reader never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CAMPAIGN_FILE + ".tmp")
    tmp.write_text(json.dumps(to_dict(info), indent=2, sort_keys=True) + "\n")
    tmp.replace(folder / CAMPAIGN_FILE)


def append_step(record: StepRecord, folder: Path) -> None:
    """Append one step as a single line; flushed and fsynced so an interruption keeps finished steps."""
    import os

    with (folder / STEPS_FILE).open("a") as f:
        f.write(json.dumps(to_dict(record), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_campaign(folder: Path) -> CampaignInfo:
    path = folder / CAMPAIGN_FILE
    if not path.is_file():
        raise ResultsError(f"{folder}: not a campaign folder (no {CAMPAIGN_FILE})")
    if path.stat().st_size > MAX_CAMPAIGN_FILE_BYTES:
        raise ResultsError(f"{path}: larger than {MAX_CAMPAIGN_FILE_BYTES} bytes, not a campaign file")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({_parse_error(exc)})") from exc
    return campaign_from_dict(data, str(path))


def _parse_error(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text at offset {exc.start}"
    return one_line(str(exc), 200)


def read_steps(folder: Path) -> tuple[list[StepRecord], list[str]]:
    """Every readable step, plus one message per line that was left out (half-written, bad version)."""
    path = folder / STEPS_FILE
    if not path.is_file():
        raise ResultsError(f"{folder}: no {STEPS_FILE} (the campaign recorded no step)")
    if path.stat().st_size > MAX_STEPS_FILE_BYTES:
        raise ResultsError(f"{path}: larger than {MAX_STEPS_FILE_BYTES} bytes, not a steps file")
    steps: list[StepRecord] = []
    skipped: list[str] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_STEP_LINE_BYTES + 1), b""), start=1):
            where = f"{path}:{number}"
            if len(raw) > MAX_STEP_LINE_BYTES:
                skipped.append(f"{where}: longer than {MAX_STEP_LINE_BYTES} bytes, not a step record")
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line
                    raw = handle.readline(MAX_STEP_LINE_BYTES + 1)
                continue
            if not raw.strip():
                continue
            try:
                data = json.loads(raw.decode("utf-8"))
            except json.JSONDecodeError:
                skipped.append(f"{where}: not valid JSON (half-written line?)")
                continue
            except (RecursionError, UnicodeDecodeError) as exc:
                skipped.append(f"{where}: not valid JSON ({_parse_error(exc)})")
                continue
            try:
                steps.append(step_from_dict(data, where))
            except ResultsError as exc:
                skipped.append(str(exc))
    return steps, skipped
