"""The request timeline (servescope/timeline.py) over every protocol, asked for by unmodified tritonclient.

Each answer that asked carries every stamp, in order, on this host's clock, between the client's own send
and receive; an answer that did not ask carries none; a garbage ask is ignored, never an error.
"""

from __future__ import annotations

import os
import queue
import time
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from google.protobuf import json_format

from servescope import timeline
from servescope.corpus import pad_sequences, synthetic_reviews

MODEL = "sentiment_fp32"


def tokens(count: int) -> np.ndarray:
    sequences, _ = synthetic_reviews(count, 5)
    return pad_sequences(sequences)


def grpc_parameters(response: Any) -> dict[str, object]:
    """A ModelInferResponse's parameters as plain values (what parse_stamps takes)."""
    out: dict[str, object] = {}
    for key, value in response.parameters.items():
        choice = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, choice)
    return out


def check(params: dict[str, object], sent_ns: int, received_ns: int, batch: int) -> timeline.ServerStamps:
    stamps, why = timeline.parse_stamps(params)
    assert stamps is not None, why
    assert stamps.clock == timeline.clock_id()  # same host: one clock
    assert sent_ns <= stamps.ns["handler"] and stamps.ns["returned"] <= received_ns
    assert stamps.worker == os.getpid()  # the test's server runs in this process
    assert stamps.batch_size is not None and stamps.batch_size >= batch
    parts = stamps.parts_ns()
    assert set(parts) == {part.name for part in timeline.SERVER_PARTS}
    assert all(value >= 0 for value in parts.values())
    assert parts["compute"] > 0  # the model ran between those two stamps, on its own thread
    return stamps


def test_grpc_unary_returns_the_stamps_only_when_asked(served) -> None:
    client = triton_grpc.InferenceServerClient(served.target)
    batch = tokens(2)
    tensor = triton_grpc.InferInput("tokens", list(batch.shape), "INT32")
    tensor.set_data_from_numpy(batch)
    sent_ns = time.monotonic_ns()
    result = client.infer(MODEL, [tensor], parameters={timeline.ASK: True})
    received_ns = time.monotonic_ns()
    stamps = check(grpc_parameters(result.get_response()), sent_ns, received_ns, batch=2)
    assert stamps.ns["handler"] - sent_ns < 5e9
    assert result.as_numpy("probability").shape == (2, 1)

    plain = client.infer(MODEL, [tensor])
    assert dict(plain.get_response().parameters) == {}
    # Not a bool: ignored, answered as usual, nothing stamped.
    odd = client.infer(MODEL, [tensor], parameters={timeline.ASK: "yes please"})
    assert dict(odd.get_response().parameters) == {}
    assert odd.as_numpy("probability").shape == (2, 1)


def test_grpc_stream_returns_the_stamps(served) -> None:
    answers: queue.Queue[tuple[Any, Any, int]] = queue.Queue()
    client = triton_grpc.InferenceServerClient(served.target)
    client.start_stream(lambda result, error: answers.put((result, error, time.monotonic_ns())))
    try:
        batch = tokens(1)
        tensor = triton_grpc.InferInput("tokens", list(batch.shape), "INT32")
        tensor.set_data_from_numpy(batch)
        sent = []
        for index in range(3):
            sent.append(time.monotonic_ns())
            client.async_stream_infer(MODEL, [tensor], request_id=str(index), parameters={timeline.ASK: True})
        for _ in range(3):
            result, error, received_ns = answers.get(timeout=30)
            assert error is None
            response = result.get_response()
            check(grpc_parameters(response), sent[int(response.id)], received_ns, batch=1)
    finally:
        client.stop_stream()


@pytest.mark.parametrize("binary", [False, True])
def test_rest_returns_the_stamps(served, binary: bool) -> None:
    client = triton_http.InferenceServerClient(served.http_target)
    batch = tokens(3)
    tensor = triton_http.InferInput("tokens", list(batch.shape), "INT32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    output = triton_http.InferRequestedOutput("probability", binary_data=binary)
    sent_ns = time.monotonic_ns()
    result = client.infer(MODEL, [tensor], outputs=[output], parameters={timeline.ASK: True})
    received_ns = time.monotonic_ns()
    check(result.get_response()["parameters"], sent_ns, received_ns, batch=3)
    assert result.as_numpy("probability").shape == (3, 1)
    plain = client.infer(MODEL, [tensor], outputs=[output], parameters={timeline.ASK: 1})
    assert "parameters" not in plain.get_response()  # 1 is not true: ignored


def test_a_stamped_answer_survives_a_json_round_trip(served) -> None:
    """The stamps are int64 parameters: json_format (what a KServe client logs) keeps them exact."""
    client = triton_grpc.InferenceServerClient(served.target)
    batch = tokens(1)
    tensor = triton_grpc.InferInput("tokens", list(batch.shape), "INT32")
    tensor.set_data_from_numpy(batch)
    response = client.infer(MODEL, [tensor], parameters={timeline.ASK: True}).get_response()
    document = json_format.MessageToDict(response)
    handler = document["parameters"][timeline.PREFIX + "handler"]["int64Param"]
    assert int(handler) == response.parameters[timeline.PREFIX + "handler"].int64_param
