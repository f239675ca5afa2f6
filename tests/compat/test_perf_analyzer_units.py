"""The pure parts of the perf_analyzer engine: command lines, and reading real exports and outputs.

The files in tests/compat/data/ are real perf_analyzer 2.48.0 output against servescope (small runs
with --request-count), kept byte for byte: their response tensors are raw bytes, not UTF-8.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from loadtest.perf_analyzer import PerfAnalyzerError, Step, Tls, command, failure_line
from loadtest.perf_analyzer_export import read_export, read_summary
from loadtest.samples import CODE_OK, SAMPLE_DTYPE

DATA = Path(__file__).parent / "data"
BINARY = Path("/opt/pa/perf_analyzer")


def step(**overrides: object) -> Step:
    base: dict[str, object] = {"model": "m", "url": "127.0.0.1:1", "export_file": Path("/tmp/x.json")}
    base.update(overrides)
    if "request_rate_per_s" not in base:
        base.setdefault("concurrency", 4)
    return Step(**base)  # type: ignore[arg-type]


def flags(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == name]


def test_closed_loop_command() -> None:
    argv = command(BINARY, step(batch=2, model_version="1", measurement_interval_ms=500))
    assert argv[:7] == [str(BINARY), "-m", "m", "-u", "127.0.0.1:1", "-i", "grpc"]
    assert flags(argv, "--concurrency-range") == ["4"] and "--sync" in argv
    assert flags(argv, "-x") == ["1"] and flags(argv, "-b") == ["2"]
    assert flags(argv, "--measurement-interval") == ["500"]
    assert flags(argv, "--stability-percentage") == ["999"]  # a fixed measurement: 3 windows
    assert flags(argv, "--shared-memory") == ["none"] and flags(argv, "--input-data") == ["zero"]
    assert argv[-2:] == ["--profile-export-file", "/tmp/x.json"]
    assert "--request-rate-range" not in argv and "--streaming" not in argv


def test_streaming_and_async_use_the_async_api() -> None:
    assert {"--streaming", "--async"} <= set(command(BINARY, step(streaming=True)))
    assert "--async" in command(BINARY, step(async_requests=True))


def test_open_loop_command_constant_and_poisson() -> None:
    for distribution in ("constant", "poisson"):
        argv = command(BINARY, step(request_rate_per_s=250.0, distribution=distribution))
        assert flags(argv, "--request-rate-range") == ["250"]
        assert flags(argv, "--request-distribution") == [distribution]
        assert "--concurrency-range" not in argv and "--sync" not in argv


def test_http_input_data_headers_and_request_count() -> None:
    argv = command(
        BINARY,
        step(protocol="http", input_data="/d/in.json", headers=("a-b:c",), request_count=100),
    )
    assert flags(argv, "-i") == ["http"] and flags(argv, "--input-data") == ["/d/in.json"]
    assert flags(argv, "-H") == ["a-b:c"] and flags(argv, "--request-count") == ["100"]
    assert "--stability-percentage" not in argv


def test_tls_flags_per_protocol() -> None:
    tls = Tls(Path("/c/ca.pem"), Path("/c/client.pem"), Path("/c/client.key"))
    grpc = command(BINARY, step(tls=tls))
    assert flags(grpc, "--ssl-grpc-use-ssl") == ["true"]
    assert flags(grpc, "--ssl-grpc-root-certifications-file") == ["/c/ca.pem"]
    assert flags(grpc, "--ssl-grpc-certificate-chain-file") == ["/c/client.pem"]
    assert flags(grpc, "--ssl-grpc-private-key-file") == ["/c/client.key"]
    http = command(BINARY, step(protocol="http", url="https://127.0.0.1:1", tls=Tls(Path("/c/ca.pem"))))
    assert flags(http, "--ssl-https-ca-certificates-file") == ["/c/ca.pem"]
    assert flags(http, "--ssl-https-verify-peer") == ["1"] and "--ssl-https-private-key-file" not in http


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"protocol": "tcp"}, "protocol 'tcp': must be one of"),
        ({"concurrency": None}, "give exactly one of concurrency"),
        ({"concurrency": 2, "request_rate_per_s": 5.0}, "give exactly one of concurrency"),
        ({"concurrency": 0}, "concurrency 0: must be an integer >= 1"),
        ({"request_rate_per_s": -1.0, "concurrency": None}, "request_rate_per_s -1.0: must be > 0"),
        ({"distribution": "bursty"}, "distribution 'bursty'"),
        ({"streaming": True, "protocol": "http"}, "streaming needs protocol 'grpc', not 'http'"),
        ({"batch": 0}, "batch 0: must be an integer >= 1"),
        ({"headers": ("nocolon",)}, "header 'nocolon': must be 'name:value'"),
    ],
)
def test_bad_steps_name_the_field_and_value(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        step(**overrides)


def test_a_real_export_becomes_samples() -> None:
    path = DATA / "export-2.48-grpc-concurrency-b2.json"
    document = json.loads(path.read_bytes().decode("utf-8", errors="replace"))
    requests = document["experiments"][0]["requests"]
    export = read_export(path, batch=2)
    assert export.version == "2.48.0"
    assert export.samples.dtype == SAMPLE_DTYPE and len(export.samples) == len(requests) == 4
    assert (export.samples["code"] == CODE_OK).all() and (export.samples["batch"] == 2).all()
    assert np.isnan(export.samples["delay_s"]).all()
    first = requests[0]
    assert export.samples["end_s"][0] == first["response_timestamps"][-1] / 1e9
    expected_latency_s = (first["response_timestamps"][-1] - first["timestamp"]) / 1e9
    assert math.isclose(export.samples["latency_s"][0], expected_latency_s, rel_tol=1e-9)
    assert (export.samples["latency_s"] > 0).all() and (export.samples["latency_s"] < 1).all()
    (experiment,) = export.experiments
    assert (experiment.mode, experiment.value) == ("concurrency", 1.0)


@pytest.mark.parametrize("name", ["export-2.48-grpc-request-rate.json", "export-2.48-grpc-streaming.json"])
def test_request_rate_and_streaming_exports(name: str) -> None:
    export = read_export(DATA / name, batch=1)
    assert len(export.samples) in (4, 5) and (export.samples["code"] == CODE_OK).all()
    assert export.experiments[0].mode == ("request_rate" if "rate" in name else "concurrency")


def test_a_request_without_a_response_is_a_client_error(tmp_path: Path) -> None:
    document = json.loads((DATA / "export-2.48-grpc-streaming.json").read_bytes().decode(errors="replace"))
    document["experiments"][0]["requests"][1]["response_timestamps"] = []
    path = tmp_path / "e.json"
    path.write_text(json.dumps(document))
    samples = read_export(path, batch=1).samples
    assert samples["code"].tolist()[:2] == [0, -2] and math.isnan(samples["latency_s"][1])


def test_another_version_is_read_when_its_fields_are_there_and_refused_naming_it(tmp_path: Path) -> None:
    document = json.loads((DATA / "export-2.48-grpc-streaming.json").read_bytes().decode(errors="replace"))
    document["version"] = "2.99.0"
    path = tmp_path / "new.json"
    path.write_text(json.dumps(document))
    assert read_export(path, batch=1).version == "2.99.0"
    for request in document["experiments"][0]["requests"]:
        request["send_ns"] = request.pop("timestamp")
    path.write_text(json.dumps(document))
    with pytest.raises(
        PerfAnalyzerError, match=r"of version '2\.99\.0' cannot be read \(read here: 2\.48\.0\)"
    ):
        read_export(path, batch=1)


def test_exports_that_are_missing_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(PerfAnalyzerError, match="wrote no profile export at"):
        read_export(tmp_path / "none.json", batch=1)
    (tmp_path / "cut.json").write_text('{"experiments": [')
    with pytest.raises(PerfAnalyzerError, match="is not JSON"):
        read_export(tmp_path / "cut.json", batch=1)


def test_the_printed_summary_of_a_real_run() -> None:
    summary = read_summary((DATA / "output-2.48-grpc-streaming.txt").read_text())
    assert summary.client_request_count == 2003 and summary.throughput_per_s == 1108.67
    assert (summary.server_inference_count, summary.server_execution_count) == (2003, 517)
    assert summary.server_success_count == 2003


def test_a_failed_run_says_why_in_one_line() -> None:
    output = (DATA / "output-2.48-http-random-data.txt").read_text()
    assert failure_line(output) == (
        "Thread [0] had error: model 'sentiment_fp32': "
        "input 'tokens' holds value -2015609567 below the minimum 0"
    )
    with pytest.raises(PerfAnalyzerError, match="printed no client summary") as caught:
        read_summary(output)
    assert caught.value.lines[-1].startswith("Thread [0] had error")
