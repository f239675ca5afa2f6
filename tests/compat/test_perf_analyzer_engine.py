"""perf_analyzer as the campaign's load engine (`load.engine: perf_analyzer`, `servescope load --engine
perf_analyzer`) against real servers: records complete and agreeing with the server, the analysis on them,
the open-loop rate, and a perf_analyzer that fails recorded as a failed step (docs/loadtest.md)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis import analyze_campaign
from analysis.rules import KINDS
from loadtest.campaign import CampaignError, run_campaign
from loadtest.campaign_config import CampaignConfigError, parse_campaign_config
from loadtest.connection import Connection
from loadtest.perf_analyzer import ENV_BINARY, Located
from loadtest.server_proc import ManagedServer, start_server
from servescope import results
from servescope.errors import UsageError
from servescope.settings import ServeFlags
from tests.loadtest.load_command import run_load
from tests.server.conftest import RunningServer, server_options

pytestmark = pytest.mark.slow
QUICK_STEPS = {"warmup_s": 0.5, "duration_s": 1.5, "max_duration_s": 1.5}


@pytest.fixture(scope="module")
def server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedServer]:
    running = start_server(model_repository, ["sentiment_fp32"], ServeFlags(batching=True),
                           tmp_path_factory.mktemp("server"), "server")  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


def campaign(**load: Any) -> dict[str, Any]:
    return {
        "name": "pa",
        "models": ["sentiment_fp32"],
        "load": {"engine": "perf_analyzer", "concurrency": [1, 4], **load},
        "server": [{"batching": True}],
        "step": QUICK_STEPS,
        "on_error": "continue",
    }


def assert_agrees_with_the_server(step: results.StepRecord) -> None:
    assert step.errors_by_code == {} and step.completed > 0 and len(step.windows) >= 3
    assert step.latency_s is not None and 0 < step.latency_s.p50 <= step.latency_s.p99
    # The server counted the same requests in the same interval, within one second's worth.
    assert step.server is not None and step.server.source == "servescope"
    served = step.server.requests_by_code["OK"]
    assert abs(served - step.completed) <= step.requests_per_s, (served, step.completed)
    # perf_analyzer's CPU, recorded by the campaign's own accounting
    assert step.cpu.generator_cores is not None and step.cpu.generator_cores > 0


def test_a_campaign_on_perf_analyzer_is_recorded_and_analysed(
    perf_analyzer: Located, model_repository: Path, tmp_path: Path
) -> None:
    output = tmp_path / "campaign"
    lines: list[str] = []
    config = parse_campaign_config(campaign())
    run_campaign(config, output, model_repository=model_repository, progress=lines.append)
    steps, skipped = results.read_steps(output)
    assert skipped == [] and [s.load.users for s in steps] == [1, 4]
    for step in steps:
        assert_agrees_with_the_server(step)
        assert np.load(output / step.samples_file).size == step.completed
    assert results.read_campaign(output).config["load"]["engine"] == "perf_analyzer"
    assert any("the engine reports its samples when it ends" in line for line in lines)
    assert sorted(p.name for p in (output / "perf_analyzer").iterdir() if p.name.endswith("-output.txt"))
    summary = analyze_campaign(output, tmp_path / "analysis")
    assert summary.verdicts and all(v.kind in KINDS for v in summary.verdicts)
    assert (tmp_path / "analysis" / "report.html").is_file()


def test_servescope_load_on_perf_analyzer_over_a_grpc_stream(
    perf_analyzer: Located, server: ManagedServer, tmp_path: Path
) -> None:
    output = tmp_path / "load"
    run_load(output, Connection(streaming=True), target=server.target, model="sentiment_fp32", users=2,
             duration_s=1.5, warmup_s=0.5, probe_requests=0, metrics_url=server.metrics_url,
             engine="perf_analyzer")  # fmt: skip
    (step,) = results.read_steps(output)[0]
    assert_agrees_with_the_server(step)
    assert step.load.users == 2
    output_text = next((output / "perf_analyzer").glob("*-output.txt")).read_text()
    assert "Request concurrency: 2" in output_text
    document = json.loads(next((output / "perf_analyzer").glob("*-input.json")).read_text())
    tokens = [entry["tokens"]["content"] for entry in document["data"]]
    assert all(0 <= t <= 9999 for row in tokens for t in row) and any(any(row) for row in tokens)


def test_the_open_loop_rate_is_honoured_over_http(
    perf_analyzer: Located, server: ManagedServer, tmp_path: Path
) -> None:
    output = tmp_path / "open"
    run_load(output, Connection(protocol="http"), target=server.http_target, model="sentiment_fp32",
             rate_rps=120.0, arrival="constant", batch_size=2, duration_s=2.0, warmup_s=0.5,
             probe_requests=0, engine="perf_analyzer")  # fmt: skip
    (step,) = results.read_steps(output)[0]
    assert step.load.mode == "open" and step.load.rate_rps == 120.0 and step.errors_by_code == {}
    assert step.requests_per_s == pytest.approx(120.0, rel=0.10)
    assert step.inferences_per_s == pytest.approx(2 * step.requests_per_s)


def test_a_ramp_is_refused_in_one_line_naming_the_engine_and_the_option(
    server: ManagedServer, tmp_path: Path
) -> None:
    with pytest.raises(CampaignConfigError) as refused:
        parse_campaign_config(campaign(ramp=True))
    assert "load.ramp: the perf_analyzer engine" in str(refused.value)
    assert "\n" not in str(refused.value)
    with pytest.raises(UsageError, match="--ramp-steps: the perf_analyzer engine runs one load level"):
        run_load(tmp_path / "ramp", target=server.target, model="sentiment_fp32", users=4, ramp_steps=2,
                 duration_s=1.0, engine="perf_analyzer")  # fmt: skip


def fake_perf_analyzer(folder: Path, script: str) -> Path:
    path = folder / "perf_analyzer"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("echo 'starting'\necho 'error: failed to get model metadata' >&2\nexit 3\n",
         "perf_analyzer exited 3: error: failed to get model metadata"),
        ('for a in "$@"; do last="$a"; done\necho \'{"version": "9.9", "experiments": 7}\' > "$last"\n',
         "profile export"),
        (None, "SERVESCOPE_PERF_ANALYZER="),
    ],
    ids=["crashing", "unreadable-export", "missing"],
)  # fmt: skip
def test_a_failing_perf_analyzer_is_a_failed_step_and_the_campaign_goes_on(
    server: ManagedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str | None, message: str
) -> None:
    binary = fake_perf_analyzer(tmp_path, script) if script else tmp_path / "no-perf_analyzer"
    monkeypatch.setenv(ENV_BINARY, str(binary))
    output = tmp_path / "campaign"
    config = campaign(probe_requests=0)
    del config["server"]  # the module's running server is the target
    run_campaign(parse_campaign_config(config), output, target=server.target,
                 metrics_url=server.metrics_url, progress=lambda _line: None)  # fmt: skip
    steps, _ = results.read_steps(output)
    assert [s.load.users for s in steps] == [1, 4]  # on_error: continue ran the second step too
    for step in steps:
        assert step.completed == 0 and step.note is not None
        assert "load generator failed: perf_analyzer" in step.note and message in step.note, step.note
        assert "Traceback" not in step.note and "\n" not in step.note


def test_servescope_load_stops_with_one_line_when_perf_analyzer_fails(
    server: ManagedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = "echo 'Thread [0] had error: connection refused'\nexit 99\n"
    monkeypatch.setenv(ENV_BINARY, str(fake_perf_analyzer(tmp_path, script)))
    with pytest.raises(CampaignError) as failed:
        run_load(tmp_path / "load", target=server.target, model="sentiment_fp32", users=2, duration_s=1.0,
                 warmup_s=0.5, probe_requests=0, engine="perf_analyzer")  # fmt: skip
    message = str(failed.value)
    assert "perf_analyzer exited 99: Thread [0] had error: connection refused" in message
    assert "\n" not in message and "Traceback" not in message


def test_tls_both_protocols_a_version_a_header_and_grpc_headers_refused(
    perf_analyzer: Located, model_repository: Path, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    running = RunningServer(
        server_options(model_repository, models=("sentiment_fp32",), tls_cert=cert, tls_key=key)
    )
    try:
        https = Connection(protocol="http", tls_ca=str(cert), model_version="1", headers={"x-trace": "a1"})
        output = tmp_path / "https"
        run_load(output, https, target=f"localhost:{running.http_port}", model="sentiment_fp32", users=1,
                 duration_s=1.0, warmup_s=0.3, probe_requests=0, engine="perf_analyzer")  # fmt: skip
        (step,) = results.read_steps(output)[0]
        assert step.errors_by_code == {} and step.completed > 0
        output = tmp_path / "grpc-tls"
        grpc_tls = Connection(tls_ca=str(cert), model_version="1")
        run_load(output, grpc_tls, target=f"localhost:{running.grpc_port}", model="sentiment_fp32", users=1,
                 duration_s=1.0, warmup_s=0.3, probe_requests=0, engine="perf_analyzer")  # fmt: skip
        (step,) = results.read_steps(output)[0]
        assert step.errors_by_code == {} and step.completed > 0
        grpc_headers = Connection(tls_ca=str(cert), headers={"x-trace": "a1"})
        with pytest.raises(CampaignError) as refused:
            run_load(tmp_path / "grpc", grpc_headers, target=f"localhost:{running.grpc_port}",
                     model="sentiment_fp32", users=1, duration_s=1.0, warmup_s=0.3, probe_requests=0,
                     engine="perf_analyzer")  # fmt: skip
        assert (
            "headers ('x-trace') cannot be sent over gRPC: perf_analyzer 2.48 sends -H headers on HTTP only"
            in str(refused.value)
        )
    finally:
        running.close()
