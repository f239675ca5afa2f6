"""deploy/replicas.py: per-pod capacity from a campaign, and the replica count for a target load."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from servescope.results import (
    CampaignInfo,
    CpuUsage,
    LatencySummary,
    LoadSpec,
    MachineInfo,
    ServerDeltas,
    ServerSettings,
    StepRecord,
    append_step,
    write_campaign,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("replicas", REPO_ROOT / "deploy" / "replicas.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def step(
    index: int, users: int, rps: float, p99_s: float, *, batching: bool, stable: bool = True
) -> StepRecord:
    latency = LatencySummary(p50=p99_s / 3, p90=p99_s / 2, p95=p99_s / 1.5, p99=p99_s, p999=p99_s, max=p99_s,
                             mean=p99_s / 3)  # fmt: skip
    requests = rps * 5
    settings = ServerSettings(
        batching=batching, max_batch_size=64 if batching else None,
        max_queue_delay_us=2000 if batching else None, instances=1, device="cpu",
    )  # fmt: skip
    server = ServerDeltas(
        requests=requests, request_s_sum=requests * 0.004, inferences=requests, batches=requests / 4,
        queue_count=requests, queue_s_sum=requests * 0.002, compute_count=requests / 4,
        compute_s_sum=requests / 4 * 0.008, batch_size_sum=requests, batch_size_buckets={}, rejected={},
        requests_by_code={"OK": requests},
    )  # fmt: skip
    return StepRecord(
        step_index=index, model="sentiment_int8", precision="int8", client_batch_size=1,
        load=LoadSpec(mode="closed", users=users),
        server_settings=settings,
        started_at="2026-11-29T14:00:00Z", warmup_s=2, duration_s=5, completed=int(requests),
        errors_by_code={}, requests_per_s=rps, inferences_per_s=rps, latency_s=latency, stable=stable,
        windows=[], server=server,
        cpu=CpuUsage(server_cores=1.0, generator_cores=0.8, generator_max_process_percent=80,
                     generator_saturated=False),
        gpu=None,
    )  # fmt: skip


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    info = CampaignInfo(
        name="unit", started_at="2026-11-29T14:00:00Z", config={},
        machine=MachineInfo(cpu_model="test cpu", cpu_count=2, memory_bytes=None, gpu_name=None,
                            platform="linux", python="3.11", packages={}),
        objective={"percentile": "p99", "latency_s": 0.05}, target={},
    )  # fmt: skip
    write_campaign(info, tmp_path)
    for record in (
        step(0, 1, 400, 0.010, batching=True),
        step(1, 8, 1500, 0.030, batching=True),  # the best step within 50 ms
        step(2, 32, 1900, 0.080, batching=True),  # faster but misses the objective
        step(3, 1, 350, 0.012, batching=False),
        step(4, 8, 600, 0.045, batching=False, stable=False),  # not stable: ignored
    ):
        append_step(record, tmp_path)
    return tmp_path


def test_replica_formula() -> None:
    replicas = load_script()
    assert replicas.replicas_needed(5000, 1500, 0.7, 1) == 6  # ceil(5000 / 1050) = 5, plus one spare
    assert replicas.replicas_needed(1050, 1500, 0.7, 0) == 1
    with pytest.raises(ValueError, match="capacity_rps must be positive, got 0"):
        replicas.replicas_needed(10, 0, 0.7, 0)


def test_capacity_is_the_best_stable_step_within_the_objective(campaign: Path) -> None:
    replicas = load_script()
    from servescope.results import read_steps

    steps, _ = read_steps(campaign)
    found, missing = replicas.capacities(
        steps, percentile="p99", objective_s=0.05, max_error_ratio=0.01, batch_size=1
    )
    by_batching = {item.step.server_settings.batching: item for item in found}
    best = by_batching[True]
    assert best.step.requests_per_s == 1500 and best.latency_s == 0.030
    assert best.inflight_per_pod == pytest.approx(1500 * 0.004)  # Little's law on the server side
    assert best.lower_bound is False  # a heavier step exists and missed the objective
    assert by_batching[False].step.requests_per_s == 350
    assert by_batching[False].lower_bound is False
    assert missing == []


def test_command_line_prints_the_table(campaign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replicas = load_script()
    assert replicas.main([str(campaign), "--target-rps", "5000"]) == 0
    out = capsys.readouterr().out
    assert "objective p99 <= 50 ms; target 5000 req/s" in out
    lines = [line.split() for line in out.splitlines() if line.startswith("sentiment_int8")]
    # batching on: 1500 req/s -> ceil(5000 / (0.7 * 1500)) + 1 = 6; batching off: 350 -> 21 + 1 = 22
    assert [line[-1] for line in lines] == ["6", "22"]
    assert lines[0][-2] == "6.0"  # in-flight per pod at the operating point


def test_command_line_rejects_bad_headroom(campaign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replicas = load_script()
    with pytest.raises(SystemExit) as exit_info:
        replicas.main([str(campaign), "--target-rps", "10", "--headroom", "1.5"])
    assert exit_info.value.code == 2
    assert "--headroom must be in (0, 1], got 1.5" in capsys.readouterr().err


def test_unstable_steps_only_on_request_and_flagged(
    campaign: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replicas = load_script()
    assert replicas.main([str(campaign), "--target-rps", "5000", "--include-unstable"]) == 0
    out = capsys.readouterr().out
    (off,) = [line for line in out.splitlines() if line.startswith("sentiment_int8   batching off")]
    # The unstable 8-user step (600 req/s, p99 45 ms) now counts; it was also the heaviest load offered,
    # so the capacity is a lower bound: both marks.
    assert ">*" in off and off.split()[-1] == str(-(-5000 // 420) + 1)
    assert "* : from a step whose measurement windows disagreed" in out
