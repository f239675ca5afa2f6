"""Hand-made campaign folders: steps whose numbers agree with each other (Little's law, counts that add
up), built from a few chosen quantities, so each test states the situation it shows."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from servescope.results import (
    CampaignInfo,
    ClientTiming,
    CpuUsage,
    GpuUsage,
    LatencySummary,
    LoadSpec,
    MachineInfo,
    PeakProbe,
    ServerDeltas,
    ServerSettings,
    StepRecord,
    Window,
    append_step,
    write_campaign,
)

BATCH_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128)


def model_metadata(name: str, precision: str, accuracy: float, size_bytes: int) -> dict[str, Any]:
    return {
        "model_name": name,
        "precision": precision,
        "file_size_bytes": size_bytes,
        "parameter_count": 739_457,
        "weight_bytes": size_bytes,
        "flops_per_sample": 10_000_000,
        "accuracy": accuracy,
        "max_abs_diff_vs_fp32": 0.0,
        "cpu_latency_s": {"batch_1": 0.0006, "batch_32": 0.004},
        "opset": 17,
        "packages": {},
        "dataset": {"name": "synthetic", "train_samples": 1000, "test_samples": 200},
        "seed": 0,
        "epochs": 1,
        "exported_at": "2026-11-29T13:00:00+00:00",
        "inputs": {"tokens": {"min_value": 0, "max_value": 9999}},
    }


MODELS = {
    "sentiment_fp32": model_metadata("sentiment_fp32", "fp32", 0.870, 2_960_000),
    "sentiment_int8": model_metadata("sentiment_int8", "int8", 0.867, 760_000),
    "sentiment_fp16": model_metadata("sentiment_fp16", "fp16", 0.870, 1_490_000),
}


def make_info(
    *, objective_s: float = 0.05, gpu_name: str | None = None, cores: int = 2, peak: bool = True
) -> CampaignInfo:
    return CampaignInfo(
        name="handmade",
        started_at="2026-11-29T14:00:00+00:00",
        config={"handmade": True},
        machine=MachineInfo(
            cpu_model="Test CPU",
            cpu_count=cores,
            memory_bytes=8 << 30,
            gpu_name=gpu_name,
            platform="Linux",
            python="3.11",
            packages={},
        ),
        objective={"percentile": "p99", "latency_s": objective_s},
        target={"grpc": "127.0.0.1:0", "metrics_url": None, "embedded": True},
        models=dict(MODELS),
        peak=PeakProbe(matmul_flops_per_s=5e10, memory_bytes_per_s=5e9, device="cpu") if peak else None,
    )


@dataclass
class Shape:
    """The chosen quantities of one step; everything else in the record follows from them."""

    users: int
    queue_s: float
    compute_s: float  # per batch
    batch_mean: float
    rest_s: float = 0.0004
    overhead_s: float = 0.0001  # inside the server, outside queue and compute
    model: str = "sentiment_fp32"
    client_batch: int = 1
    batching: bool = True
    max_batch: int = 64
    delay_us: int = 1000
    device: str = "cpu"
    instances: int = 1
    server_cores: float | None = 0.5
    generator_cores: float | None = 0.2
    generator_max_percent: float | None = 20.0
    generator_saturated: bool = False
    gpu_util: float | None = None
    cores: int = 2
    p99_factor: float = 1.5
    duration_s: float = 10.0
    errors: dict[str, int] = field(default_factory=dict)
    stable: bool = True
    throughput_factor: float = 1.0  # != 1 breaks Little's law on purpose
    with_server: bool = True
    rate_rps: float | None = None  # open loop: offered rate; answered = min(rate, capacity_rps)
    capacity_rps: float | None = None
    workers: int = 1
    adaptive_delay: bool | None = None  # the server's --adaptive-delay (None: not reported)
    # The machine accounting of a step recorded by a campaign that ran the server (None: not measured).
    loop_cores: float | None = None  # the busiest event-loop thread
    loop_wait: float | None = None  # its run-queue wait share
    generator_wait: float | None = None
    other_cores: float | None = None
    client_delay_s: float | None = None  # the generator's own delay between answer and next request
    request_bytes: int = 400
    loop_lag_s: float | None = None  # mean event-loop timer lateness from the metrics


def make_step(index: int, shape: Shape) -> StepRecord:
    mean_s = shape.queue_s + shape.compute_s + shape.overhead_s + shape.rest_s
    if shape.rate_rps is not None:
        requests_per_s = min(shape.rate_rps, shape.capacity_rps or shape.rate_rps)
    else:
        requests_per_s = shape.users / mean_s * shape.throughput_factor
    completed = round(requests_per_s * shape.duration_s)
    inferences = completed * shape.client_batch
    batches = inferences / shape.batch_mean
    server = None
    if shape.with_server:
        buckets = {}
        for bound in BATCH_BOUNDS:
            buckets[str(bound)] = batches if bound >= shape.batch_mean else 0.0
        buckets["+Inf"] = batches
        server = ServerDeltas(
            requests=completed,
            request_s_sum=completed * (shape.queue_s + shape.compute_s + shape.overhead_s),
            inferences=inferences,
            batches=batches,
            queue_count=completed,
            queue_s_sum=completed * shape.queue_s,
            compute_count=batches,
            compute_s_sum=batches * shape.compute_s,
            batch_size_sum=inferences,
            batch_size_buckets=buckets,
            rejected={"queue_full": float(shape.errors.get("RESOURCE_EXHAUSTED", 0))},
            requests_by_code={"OK": completed, **{k: float(v) for k, v in shape.errors.items()}},
        )
        if shape.loop_lag_s is not None:
            ticks = shape.duration_s / 0.05
            server.loop_lag_count = {str(w): ticks for w in range(shape.workers)}
            server.loop_lag_s_sum = {str(w): ticks * shape.loop_lag_s for w in range(shape.workers)}
    return StepRecord(
        step_index=index,
        model=shape.model,
        precision=MODELS.get(shape.model, {}).get("precision"),
        client_batch_size=shape.client_batch,
        load=LoadSpec(mode="closed", users=shape.users)
        if shape.rate_rps is None
        else LoadSpec(mode="open", rate_rps=shape.rate_rps, arrival="poisson"),
        server_settings=ServerSettings(
            batching=shape.batching,
            max_batch_size=shape.max_batch if shape.batching else 1,
            max_queue_delay_us=shape.delay_us if shape.batching else 0,
            instances=shape.instances,
            device=shape.device,
            workers=shape.workers,
            adaptive_delay=shape.adaptive_delay,
        ),
        started_at=f"2026-11-29T14:{index:02d}:00+00:00",
        warmup_s=2.0,
        duration_s=shape.duration_s,
        completed=completed,
        errors_by_code=dict(shape.errors),
        requests_per_s=completed / shape.duration_s,
        inferences_per_s=inferences / shape.duration_s,
        latency_s=LatencySummary(
            p50=mean_s * 0.95,
            p90=mean_s * 1.2,
            p95=mean_s * 1.3,
            p99=mean_s * shape.p99_factor,
            p999=mean_s * 2.0,
            max=mean_s * 3.0,
            mean=mean_s,
        ),
        stable=shape.stable,
        windows=[Window(shape.duration_s / 3, completed // 3, requests_per_s, mean_s * shape.p99_factor)] * 3,
        server=server,
        cpu=CpuUsage(
            server_cores=shape.server_cores,
            generator_cores=shape.generator_cores,
            generator_max_process_percent=shape.generator_max_percent,
            generator_saturated=shape.generator_saturated,
            machine_cores=shape.cores,
            server_available_cores=shape.cores,
            generator_available_cores=shape.cores,
            other_cores=shape.other_cores,
            server_loop_cores=shape.loop_cores,
            server_loop_wait_share=shape.loop_wait,
            generator_wait_share=shape.generator_wait,
        ),
        client=ClientTiming(
            delay_mean_s=shape.client_delay_s or 0.0,
            delay_p99_s=(shape.client_delay_s or 0.0) * 3,
            request_bytes=shape.request_bytes,
        ),
        gpu=GpuUsage("Test GPU", shape.gpu_util, 1e9, 8e9) if shape.gpu_util is not None else None,
    )


def write_handmade(folder: Path, shapes: list[Shape], info: CampaignInfo | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_campaign(info or make_info(), folder)
    for index, shape in enumerate(shapes):
        append_step(make_step(index, shape), folder)
    return folder


@pytest.fixture
def handmade(tmp_path: Path):
    """Factory: handmade(shapes, info=None, name="campaign") -> campaign folder."""

    def build(shapes: list[Shape], info: CampaignInfo | None = None, name: str = "campaign") -> Path:
        return write_handmade(tmp_path / name, shapes, info)

    return build


@pytest.fixture
def kit():
    """The builders, for tests (conftest modules cannot be imported under --import-mode=importlib)."""
    import types

    return types.SimpleNamespace(
        Shape=Shape, make_info=make_info, make_step=make_step, models=MODELS, contended=contended
    )


# What the analysis says when other processes of a shared machine held the CPU during a real campaign:
# the honest verdict is then the machine's or the starved generator's, and a planted one cannot be seen.
CONTENDED_KINDS = {"machine-contended", "generator-starved"}


def contended(campaign_dir: Path) -> bool:
    """Whether other processes measurably took CPU during a real campaign (a shared CI machine)."""
    import json

    steps = [json.loads(line) for line in (campaign_dir / "steps.jsonl").read_text().splitlines()]
    return any((s["cpu"]["other_cores"] or 0) >= 0.5 for s in steps)


# Under --import-mode=importlib the repository root is not put on sys.path by pytest itself; the
# analysis package is imported from the checkout (python -m pytest adds the working directory).
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
