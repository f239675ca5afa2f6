"""Campaigns end to end: a server killed mid-step, on_error continue/stop, Ctrl-C, bad files rejected."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from loadtest.campaign import CampaignError, run_campaign
from loadtest.campaign_config import parse_campaign_config
from loadtest.procs import REPO_ROOT, child_env
from loadtest.samples import SampleReader
from loadtest.server_proc import start_server
from servescope import results
from servescope.settings import ServeFlags

pytestmark = pytest.mark.slow

QUICK_STEPS = {"warmup_s": 0.5, "duration_s": 1.5, "max_duration_s": 1.5}


def _kill_when(condition: object, action: object, timeout_s: float = 60.0) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():  # type: ignore[operator]
                action()  # type: ignore[operator]
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _answered(output: Path, step: int, count: int) -> bool:
    """True once the load generator of `step` has recorded `count` answered requests."""
    reader = SampleReader(output / ".raw" / f"step-{step:03d}")
    reader.poll()
    return int((reader.all()["code"] == 0).sum()) >= count


def test_server_killed_mid_step_is_recorded_and_campaign_continues(
    model_repository: Path, tmp_path: Path
) -> None:
    """Embedded server: step 1 loses its server (errors by code), step 2 runs on a restarted server."""
    output = tmp_path / "campaign"
    config = parse_campaign_config(
        {
            "name": "kill",
            "models": ["sentiment_int8"],
            "load": {"concurrency": [2, 4]},
            "server": [{"batching": True}],
            "step": QUICK_STEPS,
            "on_error": "continue",
        }
    )
    ready = output / "server" / "server-0.ready.json"

    def kill_server() -> None:
        os.kill(json.loads(ready.read_text())["pid"], signal.SIGKILL)

    _kill_when(lambda: ready.is_file() and _answered(output, 0, 300), kill_server)
    lines: list[str] = []
    run_campaign(config, output, model_repository=model_repository, progress=lines.append)
    steps, skipped = results.read_steps(output)
    assert skipped == [] and [s.step_index for s in steps] == [0, 1]
    first, second = steps
    assert first.errors_by_code, first
    assert set(first.errors_by_code) <= {"UNAVAILABLE", "CANCELLED", "UNKNOWN", "INTERNAL"}, (
        first.errors_by_code
    )
    assert "server exited during the step" in (first.note or "")
    assert any("starting it again" in line for line in lines)
    assert second.errors_by_code == {} and second.completed > 0 and second.load.users == 4
    info = results.read_campaign(output)
    assert info.interrupted is False and info.finished_at is not None
    assert info.models["sentiment_int8"]["precision"] == "int8"
    assert info.peak is not None and info.peak.matmul_flops_per_s > 0


def test_external_target_dying_stops_the_campaign_cleanly(model_repository: Path, tmp_path: Path) -> None:
    server = start_server(
        model_repository, ["sentiment_fp32"], ServeFlags(batching=True), tmp_path / "srv", "external"
    )
    output = tmp_path / "campaign"
    config = parse_campaign_config(
        {
            "name": "stop",
            "models": ["sentiment_fp32"],
            "load": {"concurrency": [2, 4, 8]},
            "step": QUICK_STEPS,
            "on_error": "stop",
        }
    )
    try:
        _kill_when(lambda: _answered(output, 0, 300), lambda: server.proc.send_signal(signal.SIGKILL))
        lines: list[str] = []
        run_campaign(
            config,
            output,
            target=server.target,
            metrics_url=server.metrics_url,
            progress=lines.append,
        )
    finally:
        server.stop()
    steps, _ = results.read_steps(output)
    assert len(steps) == 1
    assert "UNAVAILABLE" in steps[0].errors_by_code
    assert steps[0].server_settings.server == "servescope"
    assert any("stopping as on_error: stop asks" in line for line in lines)
    info = results.read_campaign(output)
    assert info.target == {
        "protocol": "grpc", "streaming": False, "grpc": server.target, "http": None,
        "metrics_url": server.metrics_url, "embedded": False,
    }  # fmt: skip
    assert info.interrupted is False


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_ctrl_c_keeps_finished_steps_and_leaves_no_process(model_repository: Path, tmp_path: Path) -> None:
    campaign_file = tmp_path / "c.yaml"
    campaign_file.write_text(
        "models: [sentiment_fp32]\n"
        "load: {concurrency: [1, 2, 4, 8], workers: 1}\n"
        "step: {warmup_s: 0.5, duration_s: 1.5, max_duration_s: 1.5}\n"
    )
    output = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "campaign", str(campaign_file), "--output", str(output),
         "--model-repository", str(model_repository)],
        cwd=REPO_ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not _answered(output, 1, 300):
            time.sleep(0.1)
        children = _descendants(proc.pid)
        assert len(children) >= 3, children  # server, Locust master, Locust worker
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    message = [line for line in stderr.splitlines() if "servescope campaign" in line]
    assert len(message) == 1 and "interrupted after 1 of 4 steps" in message[0], stderr
    assert "step 1/4 done" in stdout
    time.sleep(0.5)
    assert [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
    info = results.read_campaign(output)
    assert info.interrupted is True and info.finished_at is not None
    steps, skipped = results.read_steps(output)
    assert len(steps) == 1 and skipped == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [m]\nload: {concurrency: [1]}\nstep: {duration_s: -1}\n", "step.duration_s: -1 must be"),
        ("models: [m]\nload: {concurency: [1]}\n", "load.concurency: [1] is not a known key"),
    ],
)
def test_bad_campaign_file_is_rejected_before_any_load(tmp_path: Path, text: str, message: str) -> None:
    campaign_file = tmp_path / "bad.yaml"
    campaign_file.write_text(text)
    output = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "campaign", str(campaign_file), "--output", str(output),
         "--target", "127.0.0.1:1"],
        cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("servescope campaign: error: ") and message in lines[0]
    assert not output.exists()


def test_unknown_model_or_used_output_fail_before_anything_starts(
    model_repository: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    with pytest.raises(
        CampaignError, match=r"models: \['nope'\] not in --model-repository .* \(has \['sentiment_"
    ):
        run_campaign(
            {"models": ["nope"], "load": {"concurrency": [1]}}, output, model_repository=model_repository
        )
    assert not output.exists()
    output.mkdir()
    (output / "campaign.json").write_text("{}")
    with pytest.raises(CampaignError, match=r"already holds a campaign; choose a new folder or delete it"):
        run_campaign(
            {"models": ["sentiment_fp32"], "load": {"concurrency": [1]}},
            output,
            model_repository=model_repository,
        )


def test_step_records_carry_the_settings_the_server_reports(model_repository: Path, tmp_path: Path) -> None:
    """Not the campaign's request: preferred sizes as the server filters them, instances as it runs them,
    batching off where the model's config has no dynamic_batching, threads and adaptive delay."""
    from server.model import default_intra_op_threads
    from servescope.repository import read_config, write_config

    repository = tmp_path / "models"
    shutil.copytree(model_repository / "sentiment_int8", repository / "sentiment_int8")
    shutil.copytree(model_repository / "sentiment_fp32", repository / "plain")
    config = read_config(repository / "plain" / "config.pbtxt")
    config.name = "plain"
    config.ClearField("dynamic_batching")
    write_config(config, repository / "plain" / "config.pbtxt")
    (repository / "plain" / "metadata.json").unlink()
    output = tmp_path / "campaign"
    run_campaign(
        parse_campaign_config(
            {
                "models": ["sentiment_int8", "plain"],
                "load": {"concurrency": [1]},
                "server": [{"batching": True, "max_batch_size": 16, "instances": 2}],
                "step": QUICK_STEPS,
            }
        ),
        output,
        model_repository=repository,
        progress=lambda line: None,
    )
    steps, _ = results.read_steps(output)
    by_model = {step.model: step.server_settings for step in steps}
    int8 = by_model["sentiment_int8"]
    assert int8.batching is True and int8.max_batch_size == 16
    assert int8.preferred_batch_sizes == [8, 16]  # config.pbtxt says [8, 16, 32, 64]; 32, 64 > 16
    assert int8.instances == 2 and int8.device == "cpu" and int8.server == "servescope"
    assert int8.adaptive_delay is True and int8.intra_op_threads == default_intra_op_threads(2)
    plain = by_model["plain"]
    assert plain.batching is False and plain.max_queue_delay_us is None and plain.adaptive_delay is None
