"""`servescope load` over every transport against a real server: REST (FastHttpUser), gRPC streaming with
perf_analyzer input data and headers, TLS for both protocols, HTTP errors recorded by gRPC code name,
and the transport probe in campaign.json."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtest.campaign import CampaignError
from loadtest.connection import Connection
from loadtest.procs import REPO_ROOT, child_env
from loadtest.server_proc import ManagedServer
from servescope import results
from servescope.corpus import pad_sequences, synthetic_reviews
from tests.loadtest.load_command import run_load

pytestmark = pytest.mark.slow
MODEL = "sentiment_fp32"


def load(
    target: str, output: Path, connection: Connection, **extra
) -> tuple[results.CampaignInfo, results.StepRecord]:
    options = {
        "users": 2,
        "rate_rps": None,
        "duration_s": 1.5,
        "warmup_s": 0.5,
        "probe_requests": 30,
        **extra,
    }
    run_load(output, connection, target=target, model=MODEL, **options)
    steps, skipped = results.read_steps(output)
    assert skipped == [] and len(steps) == 1
    return results.read_campaign(output), steps[0]


def test_rest_load_counts_match_the_server(running_server: ManagedServer, tmp_path: Path) -> None:
    assert running_server.http_target is not None
    info, step = load(
        running_server.http_target, tmp_path / "rest", Connection(protocol="http"),
        metrics_url=running_server.metrics_url,
    )  # fmt: skip
    assert step.errors_by_code == {} and step.completed > 20
    assert step.server is not None
    served = step.server.requests_by_code["OK"]
    assert abs(served - step.completed) <= step.requests_per_s, (served, step.completed)
    # The settings come from GET /v2 and GET .../config, as over gRPC.
    assert step.server_settings.server == "servescope" and step.server_settings.max_batch_size == 64
    assert info.target["protocol"] == "http" and info.target["http"] == running_server.http_target
    assert info.transport is not None and set(info.transport.p50_s) == {"http"}
    assert info.transport.used == "http" and 0 < info.transport.p50_s["http"] < 1
    stats = json.loads((tmp_path / "rest" / "locust" / "locust.json").read_text())
    assert [(s["method"], s["name"], s["num_failures"]) for s in stats] == [("POST", MODEL, 0)]


def test_streaming_with_input_data_and_headers(running_server: ManagedServer, tmp_path: Path) -> None:
    sequences, _ = synthetic_reviews(3, seed=2)
    rows = pad_sequences(sequences)
    data = tmp_path / "input.json"
    data.write_text(json.dumps({"data": [{"tokens": row.tolist()} for row in rows]}))
    connection = Connection(streaming=True, headers={"X-Tenant": "blue"})
    info, step = load(
        running_server.target, tmp_path / "stream", connection, batch_size=2, input_data=str(data),
        metrics_url=running_server.metrics_url,
    )  # fmt: skip
    assert step.errors_by_code == {} and step.completed > 20
    assert step.server is not None and step.server.inferences == pytest.approx(
        2 * step.server.requests_by_code["OK"]
    )
    assert info.target["streaming"] is True and info.config["load"]["headers"] == {
        "X-Tenant": "(not recorded)"
    }
    assert info.transport is not None and set(info.transport.p50_s) == {"grpc", "grpc_stream"}
    assert info.transport.used == "grpc_stream"
    stats = json.loads((tmp_path / "stream" / "locust" / "locust.json").read_text())
    assert [(s["method"], s["num_failures"]) for s in stats] == [("grpc-stream", 0)]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_errors_are_recorded_by_grpc_code_name(
    running_server: ManagedServer, tmp_path: Path, protocol
) -> None:
    connection = Connection(protocol=protocol, model_version="2")
    output = tmp_path / protocol
    with pytest.raises(CampaignError, match=r"no request to 'sentiment_fp32'.*NOT_FOUND"):
        load(running_server.target_for(protocol), output, connection, probe_requests=0, duration_s=1.0)
    (step,) = results.read_steps(output)[0]
    assert set(step.errors_by_code) == {"NOT_FOUND"} and step.completed == 0
    assert "has no version '2'" in (step.note or "")


@pytest.fixture(scope="module")
def tls_server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key, ready = folder / "cert.pem", folder / "key.pem", folder / "ready.json"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--model-repository", str(model_repository), "--model", MODEL,
         "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
         "--workers", "1", "--tls-cert", str(cert), "--tls-key", str(key), "--ready-file", str(ready)],
        cwd=REPO_ROOT, env=child_env(), stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, "TLS server did not start"
            time.sleep(0.1)
        yield cert, json.loads(ready.read_text())
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tls(tls_server, tmp_path: Path, protocol: str) -> None:
    cert, ports = tls_server
    port = ports["http_port"] if protocol == "http" else ports["grpc_port"]
    connection = Connection(protocol=protocol, tls_ca=str(cert))
    info, step = load(f"localhost:{port}", tmp_path / protocol, connection, users=1, duration_s=1.0)
    assert step.errors_by_code == {} and step.completed > 10
    assert step.server_settings.server == "servescope"  # asked over TLS too
    assert info.transport is not None and info.transport.used == protocol
