"""The on-disk contracts: model repository layout and campaign results, plus the CLI's exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servescope import repository, results
from servescope.protocol import model_config_pb2

CONFIG_TEXT = """
name: "toy"
platform: "onnxruntime_onnx"
max_batch_size: 8
input { name: "tokens" data_type: TYPE_INT32 dims: [ 100 ] }
output { name: "probability" data_type: TYPE_FP32 dims: [ 1 ] }
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 500
  default_queue_policy { max_queue_size: 16 }
}
instance_group { count: 2 kind: KIND_CPU }
"""


def _make_model(root: Path, name: str = "toy", text: str = CONFIG_TEXT) -> Path:
    model_dir = root / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "3").mkdir()
    (model_dir / "notes").mkdir()
    (model_dir / "config.pbtxt").write_text(text)
    return model_dir


def test_repository_reads_config_versions_and_metadata(tmp_path: Path) -> None:
    model_dir = _make_model(tmp_path)
    repository.write_metadata({"precision": "fp32", "flops_per_sample": 12}, model_dir)
    (entry,) = repository.list_models(tmp_path)
    assert entry.name == "toy"
    assert entry.versions == (1, 3)
    assert entry.config.max_batch_size == 8
    assert entry.config.dynamic_batching.default_queue_policy.max_queue_size == 16
    assert entry.config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert entry.metadata == {"precision": "fp32", "flops_per_sample": 12}
    assert entry.model_file() == model_dir / "3" / "model.onnx"
    assert entry.model_file(1) == model_dir / "1" / "model.onnx"
    with pytest.raises(repository.RepositoryError, match=r"has no version 2 \(has \[1, 3\]\)"):
        entry.model_file(2)


def test_config_round_trips_through_text_format(tmp_path: Path) -> None:
    config = repository.read_config(_make_model(tmp_path) / "config.pbtxt")
    repository.write_config(config, tmp_path / "again.pbtxt")
    assert repository.read_config(tmp_path / "again.pbtxt") == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name: "toy" max_batch_sise: 8', "max_batch_sise"),
        ('name: "other"', "differs from the folder name 'toy'"),
    ],
)
def test_bad_config_names_the_file_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    _make_model(tmp_path, text=text)
    with pytest.raises(repository.RepositoryError, match=message) as info:
        repository.list_models(tmp_path)
    assert "config.pbtxt" in str(info.value)


def test_missing_or_empty_repository(tmp_path: Path) -> None:
    with pytest.raises(repository.RepositoryError, match="model repository not found"):
        repository.list_models(tmp_path / "nope")
    with pytest.raises(repository.RepositoryError, match="no model folders"):
        repository.list_models(tmp_path)


def _step(index: int = 0) -> results.StepRecord:
    return results.StepRecord(
        step_index=index,
        model="sentiment_fp32",
        precision="fp32",
        client_batch_size=1,
        load=results.LoadSpec(mode="closed", users=8),
        server_settings=results.ServerSettings(batching=True, max_batch_size=64, max_queue_delay_us=1000),
        started_at="2026-11-29T14:00:00Z",
        warmup_s=2.0,
        duration_s=10.0,
        completed=1000,
        errors_by_code={"RESOURCE_EXHAUSTED": 10},
        requests_per_s=100.0,
        inferences_per_s=100.0,
        latency_s=results.LatencySummary(0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.012),
        stable=True,
        windows=[results.Window(duration_s=2.0, completed=200, throughput_rps=100.0, p99_s=0.04)],
        server=results.ServerDeltas(
            requests=1000,
            request_s_sum=8.0,
            inferences=1000,
            batches=250,
            queue_count=1000,
            queue_s_sum=2.0,
            compute_count=250,
            compute_s_sum=5.0,
            batch_size_sum=1000,
            batch_size_buckets={"1": 0, "4": 250, "+Inf": 250},
            rejected={"queue_full": 10},
            requests_by_code={"OK": 1000, "RESOURCE_EXHAUSTED": 10},
        ),
        cpu=results.CpuUsage(1.5, 0.4, 35.0, False, machine_cores=2),
        gpu=None,
    )


def test_step_records_round_trip_and_derive(tmp_path: Path) -> None:
    step = _step()
    assert step.failed == 10
    assert step.error_ratio == pytest.approx(10 / 1010)
    assert step.server is not None
    assert step.server.batch_size_mean == 4.0
    assert step.server.compute_mean_s == 0.02
    results.append_step(step, tmp_path)
    results.append_step(_step(1), tmp_path)
    steps, skipped = results.read_steps(tmp_path)
    assert steps == [step, _step(1)]
    assert skipped == []


def test_half_written_and_unknown_version_lines_are_left_out_with_reasons(tmp_path: Path) -> None:
    results.append_step(_step(), tmp_path)
    future = results.to_dict(_step(1)) | {"schema_version": 99}
    with (tmp_path / results.STEPS_FILE).open("a") as f:
        f.write(json.dumps(future) + "\n")
        f.write('{"step_index": 2, "mod')
    steps, skipped = results.read_steps(tmp_path)
    assert [s.step_index for s in steps] == [0]
    assert len(skipped) == 2
    assert "schema_version 99 is not supported" in skipped[0]
    assert "steps.jsonl:3: not valid JSON" in skipped[1]


def test_campaign_info_round_trips(tmp_path: Path) -> None:
    info = results.CampaignInfo(
        name="demo",
        started_at="2026-11-29T14:00:00Z",
        config={"steps": 3},
        machine=results.MachineInfo(
            "Xeon", 2, 24 << 30, None, "Linux", "3.11.7", {"onnxruntime-gpu": "1.31.1"}
        ),
        objective={"percentile": "p99", "latency_s": 0.05},
        target={"grpc": "127.0.0.1:8001", "metrics_url": "http://127.0.0.1:8002/metrics", "embedded": True},
        peak=results.PeakProbe(matmul_flops_per_s=1e11, memory_bytes_per_s=1e10),
    )
    results.write_campaign(info, tmp_path / "c")
    assert results.read_campaign(tmp_path / "c") == info
    with pytest.raises(results.ResultsError, match="not a campaign folder"):
        results.read_campaign(tmp_path)


def _servescope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_usage_errors_exit_2_with_one_line() -> None:
    done = _servescope("no-such-command")
    assert done.returncode == 2
    assert "invalid choice: 'no-such-command'" in done.stderr
    assert _servescope().returncode == 2


def test_cli_help_lists_every_subcommand() -> None:
    done = _servescope("--help")
    assert done.returncode == 0
    for name in ("export", "serve", "load", "campaign", "analyze", "demo"):
        assert name in done.stdout
