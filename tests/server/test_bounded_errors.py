"""Names and payloads of 16 kB to 10 MB: the right status code always reaches the client, and the message
that comes with it stays bounded, with a marker where an echoed value was cut."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from servescope.echo import MESSAGE_LIMIT_CHARS
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

MODEL = "sentiment_fp32"
SIZES = [16 * 1024, 1 << 20, 10 << 20]
BOUND = MESSAGE_LIMIT_CHARS + 64  # the message limit plus the cut marker


def infer_request(model: str = MODEL, version: str = "") -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model, model_version=version)
    message.inputs.add(name="tokens", datatype="INT32", shape=[1, 100])
    message.raw_input_contents.append(np.zeros((1, 100), np.int32).tobytes())
    return message


def call(target: str, message: pb.ModelInferRequest) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(target) as channel:
        try:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=30)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def many_inputs(count: int, name_size: int) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=MODEL)
    for index in range(count):
        message.inputs.add(name=f"{index:05d}" + "n" * name_size, datatype="INT32", shape=[1, 100])
    return message


def long_shape(dims: int) -> pb.ModelInferRequest:
    message = infer_request()
    message.inputs[0].shape[:] = [1] * dims
    return message


def long_datatype(size: int) -> pb.ModelInferRequest:
    message = infer_request()
    message.inputs[0].datatype = "D" * size
    return message


@pytest.mark.parametrize("size", SIZES)
def test_an_unknown_model_name_of_any_size_is_not_found(served, size: int) -> None:
    code, details = call(served.target, infer_request(model="m" * size))
    assert code == grpc.StatusCode.NOT_FOUND
    assert details.startswith("model 'mmm") and f"...[cut: {size} chars in all]" in details
    assert "not found (serving ['sentiment_fp16', 'sentiment_fp32', 'sentiment_int8'])" in details
    assert len(details) < BOUND


OVERSIZED = [
    (infer_request(version="v" * (1 << 20)), "NOT_FOUND", ["has no version 'vvv", "1048576 chars in all"]),
    (
        many_inputs(2000, 16),
        "INVALID_ARGUMENT",
        ["request has 2000 inputs ['00000nnn", "2000 items in all", "expects ['tokens']"],
    ),
    (many_inputs(1, 10 << 20), "INVALID_ARGUMENT", ["unknown input '00000nnn", "10485765 chars in all"]),
    (long_shape(100_000), "INVALID_ARGUMENT", ["input 'tokens' has shape [1, 1, 1,", "100000 items in all"]),
    (long_datatype(1 << 20), "INVALID_ARGUMENT", ["input 'tokens' has datatype 'DDD", "1048576 chars"]),
]


@pytest.mark.parametrize(
    ("message", "code", "fragments"),
    OVERSIZED,
    ids=["version-1MB", "2000-inputs", "input-name-10MB", "shape-100k-dims", "datatype-1MB"],
)
def test_oversized_fields_keep_their_code_and_a_bounded_message(served, message, code, fragments) -> None:
    got, details = call(served.target, message)
    assert got.name == code, details[:300]
    for fragment in fragments:
        assert fragment in details
    assert len(details) < BOUND


def test_stream_errors_are_bounded_too(served) -> None:
    """In-band stream errors carry the same bounded message (tritonclient's stream API)."""
    import queue

    answers: queue.Queue = queue.Queue()
    client = triton.InferenceServerClient(served.target)
    client.start_stream(lambda result, error: answers.put(error))
    try:
        tokens = triton.InferInput("tokens", [1, 100], "INT32")
        tokens.set_data_from_numpy(np.zeros((1, 100), np.int32))
        client.async_stream_infer("s" * (1 << 20), [tokens])
        error = answers.get(timeout=30)
    finally:
        client.stop_stream()
    assert error is not None
    assert "model 'sss" in error.message() and "1048576 chars in all" in error.message()
    assert len(error.message()) < BOUND
