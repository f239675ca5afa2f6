"""Every status code of server/errors.py, messages naming model, field and value; fuzzed requests never
INTERNAL."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

MODEL = "sentiment_fp32"
INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


def identity(data: bytes) -> bytes:
    return data


def request(
    tokens: np.ndarray | None = None,
    *,
    model: str = MODEL,
    name: str = "tokens",
    datatype: str = "INT32",
    shape: list[int] | None = None,
    raw: bytes | None = None,
    version: str = "",
) -> pb.ModelInferRequest:
    tokens = np.zeros((1, 100), np.int32) if tokens is None else tokens
    message = pb.ModelInferRequest(model_name=model, model_version=version)
    message.inputs.add(name=name, datatype=datatype, shape=list(tokens.shape) if shape is None else shape)
    message.raw_input_contents.append(tokens.tobytes() if raw is None else raw)
    return message


def call(target: str, message: pb.ModelInferRequest, timeout_s: float = 10) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(target) as channel:
        try:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=timeout_s)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def too_big() -> pb.ModelInferRequest:
    tokens = np.zeros((1, 100), np.int32)
    tokens[0, 7] = 10000
    return request(tokens)


def unknown_output() -> pb.ModelInferRequest:
    message = request()
    message.outputs.add(name="logits")
    return message


def both_contents() -> pb.ModelInferRequest:
    message = request()
    message.inputs[0].contents.int_contents.extend([0] * 100)
    return message


def int8_overflow() -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=MODEL)
    tensor = message.inputs.add(name="tokens", datatype="INT8", shape=[1, 100])
    tensor.contents.int_contents.extend([300] * 100)
    return message


DATATYPES = ["INT32", "INT64", "INT8", "INT16", "UINT16", "FP32", "FP16", "BOOL", "UINT8", "BYTES", "?", ""]

INVALID = [
    (request(name="words"), ["'sentiment_fp32'", "unknown input 'words'", "['tokens']"]),
    (request(datatype="FP32"), ["'sentiment_fp32'", "input 'tokens' has datatype 'FP32'", "'INT32'"]),
    (request(np.zeros((1, 99), np.int32)), ["'sentiment_fp32'", "input 'tokens' has shape [1, 99]"]),
    (request(raw=b"\0" * 399), ["'sentiment_fp32'", "raw_input_contents holds 399 bytes", "needs 400"]),
    (too_big(), ["'sentiment_fp32'", "input 'tokens' holds value 10000 above the maximum 9999"]),
    (request(np.full((1, 100), -3, np.int32)), ["input 'tokens' holds value -3 below the minimum 0"]),
    (request(np.zeros((65, 100), np.int32)), ["input 'tokens' has batch size 65", "max_batch_size (64)"]),
    (pb.ModelInferRequest(model_name=MODEL), ["request has 0 inputs []", "expects ['tokens']"]),
    (unknown_output(), ["unknown requested output 'logits'", "['probability']"]),
    (both_contents(), ["input 'tokens' has both contents and raw_input_contents"]),
    (int8_overflow(), ["input 'tokens': contents.int_contents do not fit INT8"]),
]


@pytest.mark.parametrize(("message", "fragments"), INVALID)
def test_invalid_argument_names_model_field_and_value(served, message, fragments: list[str]) -> None:
    code, details = call(served.target, message)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    for fragment in fragments:
        assert fragment in details


def test_not_found_for_unknown_model_or_version(served) -> None:
    code, details = call(served.target, request(model="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "model 'nope' not found" in details
    code, details = call(served.target, request(version="2"))
    assert code == grpc.StatusCode.NOT_FOUND and "model 'sentiment_fp32' has no version '2'" in details
    with grpc.insecure_channel(served.target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_undecodable_bytes_are_invalid_argument(served) -> None:
    with grpc.insecure_channel(served.target) as channel:
        raw_infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer", lambda b: b, lambda b: b
        )
        with pytest.raises(grpc.RpcError) as raised:
            raw_infer(b"\xff\xff\xff\xff", timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "malformed ModelInfer request: not a valid protobuf message"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    model=st.sampled_from([MODEL, "sentiment_int8", "nope", ""]),
    inputs=st.lists(
        st.tuples(
            st.sampled_from(["tokens", "x", ""]),
            st.sampled_from(DATATYPES),
            st.lists(st.integers(min_value=-5, max_value=300), max_size=4),
        ),
        max_size=2,
    ),
    raw=st.lists(st.binary(max_size=900), max_size=3),
    typed=st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1), max_size=120),
    garbage=st.binary(max_size=64),
)
def test_malformed_requests_never_answer_internal(served, model, inputs, raw, typed, garbage) -> None:
    message = pb.ModelInferRequest(model_name=model)
    for name, datatype, shape in inputs:
        tensor = message.inputs.add(name=name, datatype=datatype, shape=shape)
        if typed and not raw:
            tensor.contents.int_contents.extend(typed)
    message.raw_input_contents.extend(raw)
    code, details = call(served.target, message)
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), details
    with grpc.insecure_channel(served.target) as channel:
        raw_infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer", lambda b: b, lambda b: b
        )
        try:
            raw_infer(garbage, timeout=5)
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), exc.details()


def test_still_serving_after_the_fuzzing(served) -> None:
    assert call(served.target, request(np.ones((2, 100), np.int32))) == (grpc.StatusCode.OK, "")
    assert served.metric("servescope_requests_total", model=MODEL, code="INTERNAL") is None


def test_oversized_message_is_resource_exhausted(start_server) -> None:
    running = start_server(models=(MODEL,), max_message_bytes=10_000)
    code, _ = call(running.target, request(np.zeros((64, 100), np.int32)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert call(running.target, request(np.zeros((4, 100), np.int32)))[0] == grpc.StatusCode.OK


def test_expired_deadline_is_dropped_before_compute(start_server) -> None:
    running = start_server(models=(MODEL,), max_queue_delay_us=400_000)
    code, _ = call(running.target, request(), timeout_s=0.1)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    # The batcher drops it when it looks at the queue again, once the delay runs out.
    rejected = "servescope_requests_rejected_total"
    assert running.wait_for_metric(1, rejected, model=MODEL, reason="deadline") == 1
    assert running.metric("servescope_requests_total", model=MODEL, code="DEADLINE_EXCEEDED") == 1
    assert running.metric("servescope_inferences_total", model=MODEL) == 0
    assert running.metric("servescope_batches_total", model=MODEL) == 0


def test_draining_refuses_new_requests_and_finishes_accepted_ones(start_server) -> None:
    running = start_server(models=(MODEL,), max_queue_delay_us=500_000)
    results: list[tuple[grpc.StatusCode, str]] = []
    accepted = threading.Thread(target=lambda: results.append(call(running.target, request())))
    accepted.start()
    # The request sits in the queue, waiting out the delay.
    assert running.wait_for_metric(1, "servescope_queue_depth", model=MODEL) == 1
    stopping = asyncio.run_coroutine_threadsafe(running.server.stop(5), running.loop)
    time.sleep(0.05)
    code, details = call(running.target, request())
    assert code == grpc.StatusCode.UNAVAILABLE and "model 'sentiment_fp32': server is draining" in details
    assert running.http_get("/readyz")[0] == 503
    accepted.join(10)
    assert results == [(grpc.StatusCode.OK, "")]
    assert stopping.result(10) is True


def test_a_flooded_small_queue_sheds_load_and_stays_healthy(start_server) -> None:
    running = start_server(models=(MODEL,), max_queue_size=2, max_queue_delay_us=0, batching=False)
    message = request(np.ones((8, 100), np.int32)).SerializeToString()

    async def flood() -> list[grpc.StatusCode]:
        async with grpc.aio.insecure_channel(running.target) as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer", lambda b: b, lambda b: b
            )

            async def one() -> grpc.StatusCode:
                try:
                    await infer(message, timeout=30)
                    return grpc.StatusCode.OK
                except grpc.aio.AioRpcError as exc:
                    assert (
                        "queue full" in (exc.details() or "")
                        or exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED
                    )
                    return exc.code()

            return await asyncio.gather(*(one() for _ in range(40)))

    codes = asyncio.run(flood())
    shed = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert shed > 0 and codes.count(grpc.StatusCode.OK) == 40 - shed
    assert running.metric("servescope_requests_rejected_total", model=MODEL, reason="queue_full") == shed
    assert call(running.target, request())[0] == grpc.StatusCode.OK
    assert running.http_get("/readyz")[0] == 200
