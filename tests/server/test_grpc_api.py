"""Every RPC through unmodified tritonclient, outputs equal to in-process ONNX Runtime, health, reflection."""

from __future__ import annotations

import asyncio
import queue
import shutil
import subprocess
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server.model import default_intra_op_threads
from servescope.corpus import pad_sequences, synthetic_reviews
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc
from servescope.repository import read_config

MODELS = ("sentiment_fp16", "sentiment_fp32", "sentiment_int8")


def tokens(count: int, seed: int = 3) -> np.ndarray:
    sequences, _ = synthetic_reviews(count, seed)
    return pad_sequences(sequences)


def in_process(repository: Path, model: str, batch: np.ndarray, threads: int = 0) -> np.ndarray:
    """Plain ONNX Runtime; by default with the server's own thread count (int8 rounding depends on it)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_intra_op_threads(1)
    path = str(repository / model / "1" / "model.onnx")
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    return session.run(["probability"], {"tokens": batch})[0]


def infer_input(batch: np.ndarray, datatype: str = "INT32") -> triton.InferInput:
    tensor = triton.InferInput("tokens", list(batch.shape), datatype)
    tensor.set_data_from_numpy(batch)
    return tensor


def test_health_and_metadata_rpcs(served, model_repository: Path) -> None:
    client = triton.InferenceServerClient(served.target)
    assert client.is_server_live() and client.is_server_ready()
    for model in MODELS:
        assert client.is_model_ready(model) and client.is_model_ready(model, "1")
    metadata = client.get_server_metadata()
    assert metadata.name == "servescope"
    assert {"model_configuration", "statistics"} <= set(metadata.extensions)
    model_metadata = client.get_model_metadata("sentiment_fp32")
    assert model_metadata.versions == ["1"] and model_metadata.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in model_metadata.inputs] == [
        ("tokens", "INT32", [-1, 100])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in model_metadata.outputs] == [
        ("probability", "FP32", [-1, 1])
    ]
    index = client.get_model_repository_index()
    assert [(m.name, m.version, m.state) for m in index.models] == [(m, "1", "READY") for m in MODELS]


def test_model_config_is_the_repositorys(served, model_repository: Path) -> None:
    """What runs is config.pbtxt (no overrides here), plus the settings Triton's fields cannot hold."""
    client = triton.InferenceServerClient(served.target)
    for model in MODELS:
        served_config = json_format.MessageToDict(client.get_model_config(model).config)
        on_disk = read_config(model_repository / model / "config.pbtxt")
        parameters = served_config.pop("parameters")
        assert served_config == json_format.MessageToDict(on_disk)
        threads = default_intra_op_threads(sum(g.count for g in on_disk.instance_group))
        assert parameters == {
            "servescope.adaptive_delay": {"stringValue": "true"},
            "servescope.intra_op_threads": {"stringValue": str(threads)},
            "servescope.workers": {"stringValue": "1"},
        }


@pytest.mark.parametrize("model", MODELS)
def test_outputs_equal_in_process_onnx_runtime(served, model_repository: Path, model: str) -> None:
    client = triton.InferenceServerClient(served.target)
    batch = tokens(5)
    result = client.infer(model, [infer_input(batch)], outputs=[triton.InferRequestedOutput("probability")])
    got = result.as_numpy("probability")
    np.testing.assert_allclose(got, in_process(model_repository, model, batch), rtol=1e-6, atol=1e-7)
    assert result.get_response().model_version == "1"
    if model == "sentiment_int8":
        # int8 dynamic quantization rounds differently with another thread count: close, not equal
        # (seen: up to 0.013 on a fresh test export).
        other = in_process(model_repository, model, batch, threads=default_intra_op_threads(1) + 1)
        np.testing.assert_allclose(got, other, atol=0.05)


def test_int64_tokens_and_typed_contents_are_accepted(served, model_repository: Path) -> None:
    batch = tokens(3, seed=4)
    expected = in_process(model_repository, "sentiment_fp32", batch)
    client = triton.InferenceServerClient(served.target)
    as_int64 = client.infer("sentiment_fp32", [infer_input(batch.astype(np.int64), "INT64")])
    np.testing.assert_allclose(as_int64.as_numpy("probability"), expected, rtol=1e-6, atol=1e-7)
    with grpc.insecure_channel(served.target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for datatype, field in (("INT32", "int_contents"), ("INT64", "int64_contents")):
            request = pb.ModelInferRequest(model_name="sentiment_fp32", id="typed")
            tensor = request.inputs.add(name="tokens", datatype=datatype, shape=list(batch.shape))
            getattr(tensor.contents, field).extend(batch.ravel().tolist())
            response = stub.ModelInfer(request)
            assert response.id == "typed" and response.outputs[0].datatype == "FP32"
            got = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(
                response.outputs[0].shape
            )
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_async_infer_and_stream_infer(served, model_repository: Path) -> None:
    # fp32: int8's dynamic quantization scales depend on the whole batch, so its rows can differ slightly
    # between a batch of 2 and a server-side batch of 8.
    client = triton.InferenceServerClient(served.target)
    batches = [tokens(2, seed=s) for s in range(4)]
    expected = [in_process(model_repository, "sentiment_fp32", b) for b in batches]
    answers: queue.Queue = queue.Queue()
    for i, batch in enumerate(batches):
        client.async_infer(
            "sentiment_fp32",
            [infer_input(batch)],
            callback=lambda result, error: answers.put((result, error)),
            request_id=str(i),
        )
    got = [answers.get(timeout=10) for _ in batches]
    assert all(error is None for _, error in got)
    for result, _ in got:
        i = int(result.get_response().id)
        np.testing.assert_allclose(result.as_numpy("probability"), expected[i], rtol=1e-6, atol=1e-7)

    streamed: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: streamed.put((result, error)))
    try:
        for i, batch in enumerate(batches):
            client.async_stream_infer("sentiment_fp32", [infer_input(batch)], request_id=str(i))
        client.async_stream_infer("no_such_model", [infer_input(batches[0])], request_id="bad")
        results = [streamed.get(timeout=10) for _ in range(len(batches) + 1)]
    finally:
        client.stop_stream()
    good = {r.get_response().id: r.as_numpy("probability") for r, e in results if e is None}
    errors = [e for _, e in results if e is not None]
    assert sorted(good) == ["0", "1", "2", "3"]
    for i, value in good.items():
        np.testing.assert_allclose(value, expected[int(i)], rtol=1e-6, atol=1e-7)
    assert len(errors) == 1 and "model 'no_such_model' not found" in errors[0].message()


def test_tritonclient_aio(served, model_repository: Path) -> None:
    batch = tokens(4, seed=5)

    async def call() -> np.ndarray:
        client = triton_aio.InferenceServerClient(served.target)
        try:
            assert await client.is_server_ready()
            result = await client.infer("sentiment_fp32", [infer_input(batch)])
            return result.as_numpy("probability")
        finally:
            await client.close()

    got = asyncio.run(call())
    np.testing.assert_allclose(
        got, in_process(model_repository, "sentiment_fp32", batch), rtol=1e-6, atol=1e-7
    )


def test_statistics_follow_triton_semantics(start_server) -> None:
    running = start_server(models=("sentiment_fp32",), max_queue_delay_us=0)
    client = triton.InferenceServerClient(running.target)
    for size in (1, 3, 5):  # one after the other: each its own execution
        client.infer("sentiment_fp32", [infer_input(tokens(size))])
    stats = client.get_inference_statistics("sentiment_fp32").model_stats[0]
    assert (stats.name, stats.version) == ("sentiment_fp32", "1")
    assert stats.inference_count == 9 and stats.execution_count == 3
    infer = stats.inference_stats
    assert infer.success.count == 3 and infer.fail.count == 0 and infer.queue.count == 3
    assert (
        infer.compute_infer.count == 3
        and infer.compute_infer.ns > 0
        and infer.success.ns > infer.compute_infer.ns
    )
    assert {(b.batch_size, b.compute_infer.count) for b in stats.batch_stats} == {(1, 1), (3, 1), (5, 1)}
    assert stats.last_inference > 1_600_000_000_000
    with pytest.raises(triton.InferenceServerException, match="not found"):
        client.get_inference_statistics("nope")
    assert [s.name for s in client.get_inference_statistics("").model_stats] == ["sentiment_fp32"]


def test_grpc_health_and_reflection(served) -> None:
    with grpc.insecure_channel(served.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            assert (
                health.Check(health_pb2.HealthCheckRequest(service=service)).status
                == health_pb2.HealthCheckResponse.SERVING
            )
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(reflection.ServerReflectionInfo(iter([request])))
        names = {s.name for s in response.list_services_response.service}
        assert "inference.GRPCInferenceService" in names and "grpc.health.v1.Health" in names
        for symbol in ("inference.GRPCInferenceService", "grpc.health.v1.Health", "inference.ModelConfig"):
            request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
            response = next(reflection.ServerReflectionInfo(iter([request])))
            assert response.file_descriptor_response.file_descriptor_proto, symbol


def test_http_probes_and_unknown_paths(served) -> None:
    assert served.http_get("/healthz") == (200, "ok\n")
    assert served.http_get("/readyz") == (200, "ready\n")
    status, body = served.http_get("/nope")
    assert status == 404 and "/metrics" in body


def test_tls(start_server, tmp_path: Path) -> None:
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
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(f"localhost:{running.grpc_port}", credentials) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    target = f"localhost:{running.grpc_port}"
    client = triton.InferenceServerClient(target, ssl=True, root_certificates=str(cert))
    assert client.is_server_live()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _signed_pair(folder: Path, name: str, ca: tuple[Path, Path], san: str | None = None) -> tuple[Path, Path]:
    """A key and a certificate for CN=name signed by the CA (cert, key)."""
    cert, key, request_file = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key),
             "-out", str(request_file))  # fmt: skip
    extra = folder / f"{name}.ext"
    extra.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", str(request_file), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "1", "-extfile", str(extra), "-out", str(cert))  # fmt: skip
    return cert, key


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return cert, key


def test_mutual_tls_accepts_only_clients_with_a_certificate_from_the_ca(start_server, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    ca, other_ca = _ca(tmp_path, "client-ca"), _ca(tmp_path, "other-ca")
    server_cert, server_key = _signed_pair(tmp_path, "server", ca, san="DNS:localhost,IP:127.0.0.1")
    client_cert, client_key = _signed_pair(tmp_path, "client", ca)
    stranger_cert, stranger_key = _signed_pair(tmp_path, "stranger", other_ca)
    running = start_server(
        models=("sentiment_fp32",), tls_cert=server_cert, tls_key=server_key, tls_client_ca=ca[0]
    )
    target = f"localhost:{running.grpc_port}"

    def ready(cert: Path | None, key: Path | None) -> tuple[str, str]:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca[0].read_bytes(),
            private_key=key.read_bytes() if key else None,
            certificate_chain=cert.read_bytes() if cert else None,
        )
        with grpc.secure_channel(target, credentials) as channel:
            try:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                return "OK", str(stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready)
            except grpc.RpcError as exc:
                return exc.code().name, exc.details() or ""

    assert ready(client_cert, client_key) == ("OK", "True")
    assert ready(None, None)[0] == "UNAVAILABLE"  # no client certificate: the handshake fails
    assert ready(stranger_cert, stranger_key)[0] == "UNAVAILABLE"  # signed by another CA
    client = triton.InferenceServerClient(
        target, ssl=True, root_certificates=str(ca[0]), private_key=str(client_key),
        certificate_chain=str(client_cert),
    )  # fmt: skip
    assert client.is_model_ready("sentiment_fp32")
    with grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}") as plain:
        with pytest.raises(grpc.RpcError) as raised:
            pb_grpc.GRPCInferenceServiceStub(plain).ServerReady(pb.ServerReadyRequest(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_metrics_host_binds_the_metrics_port_alone(start_server) -> None:
    import argparse

    from server.cli import add_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    running = start_server(models=("sentiment_fp32",), host="0.0.0.0", metrics_host="127.0.0.1")
    assert running.server._http._server.sockets[0].getsockname()[0] == "127.0.0.1"
    with grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}") as channel:
        assert pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert running.http_get("/healthz") == (200, "ok\n")
    args = parser.parse_args(["--model-repository", ".", "--metrics-host", "127.0.0.1", "--workers", "1"])
    assert options_from_args(args).metrics_host == "127.0.0.1"
    default = options_from_args(parser.parse_args(["--model-repository", ".", "--workers", "1"]))
    assert default.metrics_host is None
