"""KServe v2 REST through unmodified tritonclient.http: every endpoint, outputs equal to in-process ONNX
Runtime, the same answers as the gRPC API (test_grpc_api.py is its twin), curl-style plain JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton

from server.model import default_intra_op_threads
from server.rest_codec import message_json
from servescope.repository import read_config
from tests.server.test_grpc_api import MODELS, in_process, tokens


def infer_input(batch: np.ndarray, datatype: str = "INT32", binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("tokens", list(batch.shape), datatype)
    tensor.set_data_from_numpy(batch, binary_data=binary)
    return tensor


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_health_and_metadata_endpoints(served) -> None:
    client = triton.InferenceServerClient(served.http_target)
    assert client.is_server_live() and client.is_server_ready()
    for model in MODELS:
        assert client.is_model_ready(model) and client.is_model_ready(model, "1")
    assert not client.is_model_ready("sentiment_fp32", "2")
    metadata = client.get_server_metadata()
    grpc_client = triton_grpc.InferenceServerClient(served.target)
    grpc_metadata = grpc_client.get_server_metadata()
    assert metadata == {
        "name": "servescope",
        "version": grpc_metadata.version,
        "extensions": list(grpc_metadata.extensions),
    }
    assert client.get_model_metadata("sentiment_fp32") == {
        "name": "sentiment_fp32",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "tokens", "datatype": "INT32", "shape": [-1, 100]}],
        "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1, 1]}],
    }
    assert client.get_model_metadata("sentiment_fp32", "1")["name"] == "sentiment_fp32"
    index = client.get_model_repository_index()
    assert [(m["name"], m["version"], m["state"]) for m in index] == [(m, "1", "READY") for m in MODELS]


def test_model_config_is_the_repositorys_as_grpc_says(served, model_repository: Path) -> None:
    client = triton.InferenceServerClient(served.http_target)
    grpc_client = triton_grpc.InferenceServerClient(served.target)
    for model in MODELS:
        config = client.get_model_config(model)
        assert config == message_json(grpc_client.get_model_config(model).config)
        on_disk = message_json(read_config(model_repository / model / "config.pbtxt"))
        parameters = config.pop("parameters")
        assert config == on_disk
        assert isinstance(config["max_batch_size"], int)  # numbers, as Triton writes them, not strings
        threads = default_intra_op_threads(sum(g["count"] for g in on_disk["instance_group"]))
        assert parameters["servescope.intra_op_threads"] == {"string_value": str(threads)}


@pytest.mark.parametrize("model", MODELS)
def test_outputs_equal_in_process_onnx_runtime(served, model_repository: Path, model: str) -> None:
    client = triton.InferenceServerClient(served.http_target)
    batch = tokens(5)
    expected = in_process(model_repository, model, batch)
    tolerance = {"atol": 0.05} if model == "sentiment_int8" else {"rtol": 1e-6, "atol": 1e-7}
    for binary_in in (True, False):
        for binary_out in (True, False):
            result = client.infer(
                model,
                [infer_input(batch, binary=binary_in)],
                outputs=[triton.InferRequestedOutput("probability", binary_data=binary_out)],
                request_id=f"{binary_in}-{binary_out}",
            )
            np.testing.assert_allclose(result.as_numpy("probability"), expected, **tolerance)
            response = result.get_response()
            assert (response["model_name"], response["model_version"]) == (model, "1")
            assert response["id"] == f"{binary_in}-{binary_out}"
            output = result.get_output("probability")
            assert ("data" in output) is not binary_out and output["shape"] == [5, 1]


def test_int64_version_path_and_every_output_by_default(served, model_repository: Path) -> None:
    batch = tokens(3, seed=4)
    expected = in_process(model_repository, "sentiment_fp32", batch)
    client = triton.InferenceServerClient(served.http_target)
    result = client.infer("sentiment_fp32", [infer_input(batch.astype(np.int64), "INT64")], model_version="1")
    # No outputs named: tritonclient asks binary_data_output, and every output comes back.
    np.testing.assert_allclose(result.as_numpy("probability"), expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(triton.InferenceServerException) as raised:
        client.infer("sentiment_fp32", [infer_input(batch)], model_version="2")
    assert raised.value.status() == "404"
    assert "model 'sentiment_fp32' has no version '2'" in raised.value.message()


def test_plain_json_as_curl_sends_it(served, model_repository: Path) -> None:
    """Nested `data`, no binary extension, a JSON response with a flat `data` list."""
    batch = tokens(2, seed=6)
    body = json.dumps(
        {"id": "curl", "inputs": [{"name": "tokens", "shape": [2, 100], "datatype": "INT32",
                                   "data": batch.tolist()}]}
    ).encode()  # fmt: skip
    url = f"http://{served.http_target}/v2/models/sentiment_fp32/infer"
    status, headers, raw = post(url, body, {"Content-Type": "application/json"})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    answer = json.loads(raw)
    (output,) = answer["outputs"]
    assert (answer["id"], output["name"], output["datatype"], output["shape"]) == (
        "curl", "probability", "FP32", [2, 1],
    )  # fmt: skip
    got = np.asarray(output["data"], dtype=np.float32).reshape(2, 1)
    np.testing.assert_allclose(
        got, in_process(model_repository, "sentiment_fp32", batch), rtol=1e-6, atol=1e-7
    )


def test_compressed_request_and_response(served, model_repository: Path) -> None:
    batch = tokens(2, seed=7)
    client = triton.InferenceServerClient(served.http_target)
    for algorithm in ("gzip", "deflate"):
        result = client.infer(
            "sentiment_fp32",
            [infer_input(batch)],
            request_compression_algorithm=algorithm,
            response_compression_algorithm=algorithm,
        )
        np.testing.assert_allclose(
            result.as_numpy("probability"),
            in_process(model_repository, "sentiment_fp32", batch),
            rtol=1e-6,
            atol=1e-7,
        )


def test_async_infer_over_several_connections(served, model_repository: Path) -> None:
    batches = [tokens(2, seed=s) for s in range(6)]
    expected = [in_process(model_repository, "sentiment_fp32", b) for b in batches]
    client = triton.InferenceServerClient(served.http_target, concurrency=3)
    pending = [
        client.async_infer("sentiment_fp32", [infer_input(b)], request_id=str(i))
        for i, b in enumerate(batches)
    ]
    for i, call in enumerate(pending):
        result = call.get_result(timeout=10)
        assert result.get_response()["id"] == str(i)
        np.testing.assert_allclose(result.as_numpy("probability"), expected[i], rtol=1e-6, atol=1e-7)
    client.close()


def test_tritonclient_http_aio(served, model_repository: Path) -> None:
    import asyncio

    import tritonclient.http.aio as triton_aio

    batch = tokens(4, seed=5)

    async def call() -> np.ndarray:
        client = triton_aio.InferenceServerClient(served.http_target)
        try:
            assert await client.is_server_ready()
            tensor = triton_aio.InferInput("tokens", list(batch.shape), "INT32")
            tensor.set_data_from_numpy(batch)
            result = await client.infer("sentiment_fp32", [tensor])
            return result.as_numpy("probability")
        finally:
            await client.close()

    np.testing.assert_allclose(
        asyncio.run(call()), in_process(model_repository, "sentiment_fp32", batch), rtol=1e-6, atol=1e-7
    )


def test_statistics_equal_grpcs(start_server) -> None:
    running = start_server(models=("sentiment_fp32",), max_queue_delay_us=0)
    client = triton.InferenceServerClient(running.http_target)
    for size in (1, 3, 5):  # one after the other: each its own execution
        client.infer("sentiment_fp32", [infer_input(tokens(size))])
    stats = client.get_inference_statistics("sentiment_fp32")
    grpc_stats = triton_grpc.InferenceServerClient(running.target).get_inference_statistics("sentiment_fp32")
    assert stats == message_json(grpc_stats)
    (model,) = stats["model_stats"]
    assert (model["name"], model["version"]) == ("sentiment_fp32", "1")
    assert model["inference_count"] == 9 and model["execution_count"] == 3
    assert model["inference_stats"]["success"]["count"] == 3
    assert {(b["batch_size"], b["compute_infer"]["count"]) for b in model["batch_stats"]} == {
        (1, 1), (3, 1), (5, 1),
    }  # fmt: skip
    assert [s["name"] for s in client.get_inference_statistics()["model_stats"]] == ["sentiment_fp32"]
    with pytest.raises(triton.InferenceServerException, match="not found") as raised:
        client.get_inference_statistics("nope")
    assert raised.value.status() == "404"
    # REST requests are served by the same data plane: counted in the same metrics as gRPC's.
    assert running.metric("servescope_requests_total", model="sentiment_fp32", code="OK") == 3
    assert running.metric("servescope_inferences_total", model="sentiment_fp32") == 9


def test_https(start_server, tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    running = start_server(models=("sentiment_fp32",), tls_cert=cert, tls_key=key)
    client = triton.InferenceServerClient(
        f"localhost:{running.http_port}", ssl=True, ssl_options={"ca_certs": str(cert)}
    )
    assert client.is_server_ready()
    result = client.infer("sentiment_fp32", [infer_input(tokens(1))])
    assert result.as_numpy("probability").shape == (1, 1)
