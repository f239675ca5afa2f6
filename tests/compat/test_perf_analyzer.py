"""Unmodified NVIDIA perf_analyzer 2.48 against a real servescope server (docs/loadtest.md, "perf_analyzer").

Every mode a Triton user runs: gRPC sync, async and streaming, HTTP, request-rate (open loop),
`--input-data` JSON, `-x` version, `--shared-memory none`; its timestamps are wall-clock; its server-side
figures (from ModelStatistics) agree with servescope's /metrics. Short measurement windows keep the
file well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from loadtest.perf_analyzer import Located, PerfAnalyzerError, Run, Step, Tls, command, run
from loadtest.perf_analyzer_export import read_export, read_summary
from loadtest.samples import CODE_OK
from tests.server.conftest import RunningServer, server_options

pytestmark = pytest.mark.slow
MODEL = "sentiment_fp32"
WINDOW_MS = 300
TIMEOUT_S = 60


def measure(perf_analyzer: Located, tmp_path: Path, **fields: Any) -> tuple[Any, Any, float, float]:
    """Run one step; returns its export, its printed summary and the wall clock around it."""
    fields.setdefault("concurrency", None if "request_rate_per_s" in fields else 2)
    fields.setdefault("measurement_interval_ms", WINDOW_MS)
    name = f"run-{len(list(tmp_path.glob('run-*.json')))}"
    step = Step(model=MODEL, export_file=tmp_path / f"{name}.json", **fields)
    before_s = time.time()
    finished = run(perf_analyzer, step, tmp_path / f"{name}.txt", timeout_s=TIMEOUT_S)
    after_s = time.time()
    return read_export(step.export_file, step.batch), read_summary(finished.output), before_s, after_s


def assert_answered(export: Any, before_s: float, after_s: float) -> None:
    samples = export.samples
    assert len(samples) > 0 and (samples["code"] == CODE_OK).all()
    assert (samples["latency_s"] > 0).all() and (samples["latency_s"] < 5).all()
    # the export's clock is the wall clock (time.time): every answer lies inside the run
    assert before_s <= samples["end_s"].min() and samples["end_s"].max() <= after_s
    assert before_s <= (samples["end_s"] - samples["latency_s"]).min()


@pytest.mark.parametrize(
    "mode",
    [{}, {"async_requests": True}, {"streaming": True}],
    ids=["grpc-sync", "grpc-async", "grpc-stream"],
)
def test_grpc_closed_loop(
    perf_analyzer: Located, served: RunningServer, tmp_path: Path, mode: dict[str, bool]
) -> None:
    export, summary, before_s, after_s = measure(perf_analyzer, tmp_path, url=served.target, **mode)
    assert_answered(export, before_s, after_s)
    assert export.version == "2.48.0" and export.experiments[0].mode == "concurrency"
    assert summary.client_request_count > 0 and summary.server_success_count is not None


def test_http_with_a_json_input_file(perf_analyzer: Located, served: RunningServer, tmp_path: Path) -> None:
    data = tmp_path / "input.json"
    rows = [{"tokens": [(7 * i + j) % 10000 for j in range(100)]} for i in range(4)]
    data.write_text(json.dumps({"data": rows}))
    export, summary, before_s, after_s = measure(
        perf_analyzer, tmp_path, url=served.http_target, protocol="http", input_data=str(data), concurrency=1
    )
    assert_answered(export, before_s, after_s)
    assert summary.throughput_per_s > 0


def test_random_token_data_gets_servescopes_range_error(
    perf_analyzer: Located, served: RunningServer, tmp_path: Path
) -> None:
    with pytest.raises(PerfAnalyzerError) as caught:
        measure(perf_analyzer, tmp_path, url=served.http_target, protocol="http", input_data="random")
    message = str(caught.value).splitlines()[0]
    assert message.startswith("perf_analyzer exited 99: Thread [")
    assert re.search(
        r"had error: model 'sentiment_fp32': input 'tokens' holds value -?\d+ "
        r"(below the minimum 0|above the maximum 9999)",
        message,
    ), message


@pytest.mark.parametrize("distribution", ["constant", "poisson"])
def test_request_rate_mode(
    perf_analyzer: Located, served: RunningServer, tmp_path: Path, distribution: str
) -> None:
    rate_per_s = 100.0
    export, _, before_s, after_s = measure(
        perf_analyzer, tmp_path, url=served.target, request_rate_per_s=rate_per_s, distribution=distribution
    )
    assert_answered(export, before_s, after_s)
    (experiment,) = export.experiments
    assert (experiment.mode, experiment.value) == ("request_rate", rate_per_s)
    # open loop: the sends follow the schedule, whatever the answers do
    sent_s = export.samples["end_s"] - export.samples["latency_s"]
    windows_s = experiment.window_boundaries_s[-1] - experiment.window_boundaries_s[0]
    in_windows = (
        (sent_s >= experiment.window_boundaries_s[0]) & (sent_s < experiment.window_boundaries_s[-1])
    ).sum()
    assert 0.7 * rate_per_s * windows_s <= in_windows <= 1.3 * rate_per_s * windows_s


def test_model_version(perf_analyzer: Located, served: RunningServer, tmp_path: Path) -> None:
    export, _, before_s, after_s = measure(perf_analyzer, tmp_path, url=served.target, model_version="1")
    assert_answered(export, before_s, after_s)
    with pytest.raises(PerfAnalyzerError) as caught:
        measure(perf_analyzer, tmp_path, url=served.target, model_version="7")
    assert str(caught.value).splitlines()[0] == (
        "perf_analyzer exited 99: error: failed to get model metadata: "
        "model 'sentiment_fp32' has no version '7' (serving version '1')"
    )


def test_server_side_counts_agree_with_servescopes_metrics(
    perf_analyzer: Located, served: RunningServer, tmp_path: Path
) -> None:
    requests, batch, concurrency = 300, 2, 4
    labels = {"model": MODEL}
    ok_before = served.metric("servescope_requests_total", code="OK", **labels) or 0.0
    inferences_before = served.metric("servescope_inferences_total", **labels) or 0.0
    export, summary, _, _ = measure(
        perf_analyzer,
        tmp_path,
        url=served.target,
        batch=batch,
        concurrency=concurrency,
        request_count=requests,
        shared_memory="none",
    )
    # every request perf_analyzer sent is in its export, and servescope counted each one, with its batch
    assert len(export.samples) == summary.client_request_count == requests
    ok = served.wait_for_metric(ok_before + requests, "servescope_requests_total", code="OK", **labels)
    assert ok == ok_before + requests
    inferences = served.metric("servescope_inferences_total", **labels)
    assert inferences == inferences_before + requests * batch
    # its server-side section (ModelStatistics deltas it took around the measurement)
    assert summary.server_inference_count == summary.server_success_count * batch
    assert summary.server_success_count is not None
    assert abs(summary.server_success_count - requests) <= concurrency
    assert summary.server_execution_count is not None
    assert 0 < summary.server_execution_count <= summary.server_success_count


def test_its_cpu_is_measured_and_a_crash_or_a_timeout_is_an_error(
    perf_analyzer: Located, served: RunningServer, tmp_path: Path
) -> None:
    step = Step(
        model=MODEL, url=served.target, export_file=tmp_path / "a.json", concurrency=1, request_count=50
    )
    finished = run(perf_analyzer, step, tmp_path / "a.txt", timeout_s=TIMEOUT_S)
    assert 0 < finished.cpu_s < finished.wall_s * 16

    long = Step(model=MODEL, url=served.target, export_file=tmp_path / "b.json", concurrency=1)
    started = Run(perf_analyzer, command(perf_analyzer.path, long), tmp_path / "b.txt")
    assert psutil.Process(started.pid).name() == "perf_analyzer"
    with pytest.raises(PerfAnalyzerError, match=r"ran past its 0\.5 s timeout and was killed"):
        started.wait(timeout_s=0.5)
    assert not psutil.pid_exists(started.pid) or psutil.Process(started.pid).status() == psutil.STATUS_ZOMBIE
    crashing = Step(model=MODEL, url=served.target, export_file=tmp_path / "d.json", concurrency=1)
    started = Run(perf_analyzer, command(perf_analyzer.path, crashing), tmp_path / "d.txt")
    time.sleep(0.5)
    os.kill(started.pid, signal.SIGSEGV)
    with pytest.raises(PerfAnalyzerError, match=r"^perf_analyzer exited -11: ") as caught:
        started.wait(timeout_s=TIMEOUT_S)
    assert caught.value.lines  # what it had printed before it died
    with pytest.raises(PerfAnalyzerError, match="exists already"):
        run(perf_analyzer, step, tmp_path / "c.txt", timeout_s=TIMEOUT_S)


def test_tls_over_grpc_and_https(perf_analyzer: Located, model_repository: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    running = RunningServer(server_options(model_repository, models=(MODEL,), tls_cert=cert, tls_key=key))
    try:
        for protocol, url in (
            ("grpc", f"localhost:{running.grpc_port}"),
            ("http", f"https://localhost:{running.http_port}"),
        ):
            export, summary, before_s, after_s = measure(
                perf_analyzer,
                tmp_path,
                url=url,
                protocol=protocol,
                tls=Tls(cert),
                request_count=20,
                concurrency=1,
            )
            assert_answered(export, before_s, after_s)
            assert len(export.samples) == summary.client_request_count == 20
    finally:
        running.close()
