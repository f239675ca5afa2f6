"""REST errors: the HTTP status of every domain error (400, 404, 405, 413, 429, 503, 504) with the gRPC
API's own messages; malformed JSON, wrong lengths and huge headers get a clear 4xx, never a traceback
in the log, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.errors import DeadlineExpired, InvalidInput, ModelNotFound, Overloaded, Unavailable
from servescope.protocol import grpc_service_pb2 as pb
from tests.server.test_errors import INVALID, MODEL, call, request

# The gRPC request fields that REST spells differently; everything else in a message is the same.
WHERE = {"raw_input_contents": "binary data", "contents.int_contents": "data"}


def rest_body(message: pb.ModelInferRequest) -> tuple[bytes, dict[str, str]]:
    """The REST twin of a gRPC request: raw contents as binary data, typed contents as JSON data."""
    inputs, chunks = [], []
    for position, tensor in enumerate(message.inputs):
        entry = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if message.raw_input_contents:
            raw = message.raw_input_contents[position]
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = list(tensor.contents.int_contents)
        inputs.append(entry)
    document: dict = {"inputs": inputs}
    if message.outputs:
        document["outputs"] = [{"name": o.name} for o in message.outputs]
    header = json.dumps(document).encode()
    if not chunks:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(chunks), {"Inference-Header-Content-Length": str(len(header))}


def post(
    url: str, body: bytes, headers: dict[str, str] | None = None, timeout_s: float = 10
) -> tuple[int, str]:
    """(status, the error message or the body)."""
    http_request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(http_request, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
        return exc.code, json.loads(text)["error"]


def infer_url(running, model: str = MODEL, version: str = "") -> str:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return f"http://{running.http_target}{path}"


def raw_exchange(port: int, data: bytes, half_close: bool = False) -> bytes:
    """Send bytes on a fresh connection and read the answer until the server closes or 5 s pass."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and not half_close:
                    head, _, rest = answer.partition(b"\r\n\r\n")
                    length = [
                        line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
                    ]
                    if length and len(rest) >= int(length[0].split(b":")[1]):
                        break
        except TimeoutError:
            pass
    return answer


@pytest.mark.parametrize(("message", "fragments"), [case for case in INVALID if "both" not in case[1][0]])
def test_invalid_input_is_400_with_the_grpc_message(served, message, fragments: list[str]) -> None:
    code, grpc_details = call(served.target, message)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    status, details = post(infer_url(served), *rest_body(message))
    assert status == InvalidInput.http_status == 400
    expected = grpc_details
    for grpc_word, rest_word in WHERE.items():
        expected = expected.replace(grpc_word, rest_word)
    assert details == expected


def test_not_found_is_404_with_the_grpc_message(served) -> None:
    for model, version in (("nope", ""), (MODEL, "2")):
        _, grpc_details = call(served.target, request(model=model, version=version))
        status, details = post(infer_url(served, model, version), *rest_body(request()))
        assert (status, details) == (ModelNotFound.http_status, grpc_details)
    # The model is looked up before the tensors are checked, as over gRPC.
    assert post(infer_url(served, "nope"), b"{}") == (
        404,
        "model 'nope' not found (serving ['sentiment_fp16', 'sentiment_fp32', 'sentiment_int8'])",
    )
    assert post(infer_url(served), b"{}")[1].endswith("request has 0 inputs [], the model expects ['tokens']")
    with urllib.request.urlopen(f"http://{served.http_target}/v2/health/live", timeout=5) as response:
        assert response.status == 200
    for path in ("/v2/models/nope", "/v2/models/nope/config", "/v2/nothing", "/metrics"):
        try:
            urllib.request.urlopen(f"http://{served.http_target}{path}", timeout=5)
            raise AssertionError(f"{path} answered 200")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404, path
            assert json.loads(exc.read())["error"]


def test_wrong_method_is_405(served) -> None:
    status, details = post(f"http://{served.http_target}/v2/models/{MODEL}", b"{}")
    assert (status, details) == (405, "method POST not allowed here (use GET)")
    try:
        urllib.request.urlopen(infer_url(served), timeout=5)
    except urllib.error.HTTPError as exc:
        assert exc.code == 405 and "use POST" in json.loads(exc.read())["error"]


def binary(header: bytes, tail: bytes) -> tuple[bytes, dict[str, str]]:
    """A JSON header followed by binary data, with the extension's length header."""
    return header + tail, {"Inference-Header-Content-Length": str(len(header))}


TOKENS_400 = b'{"inputs": [{"name": "tokens", "datatype": "INT32", "shape": [1, 100], '
BAD_BODIES = [
    (b"{not json", {}, "model 'sentiment_fp32': inference request is not valid JSON"),
    (b"[1, 2]", {}, "the inference request must be a JSON object, found list"),
    (b'{"inputs": {}}', {}, "inputs must be a JSON list, found dict"),
    (b'{"inputs": [{"name": "tokens", "datatype": "INT32", "shape": "1x100", "data": []}]}', {},
     "input 'tokens': shape must be a list of integers, found '1x100'"),
    (b'{"inputs": [{"name": "tokens", "datatype": "INT32", "shape": [1, 100]}]}', {},
     "input 'tokens' needs data (a JSON list) or parameters.binary_data_size"),
    (b'{"inputs": []}', {"Inference-Header-Content-Length": "99"},
     "Inference-Header-Content-Length is 99, outside the body's 14 bytes"),
    (b'{"inputs": []}', {"Inference-Header-Content-Length": "ten"},
     "Inference-Header-Content-Length 'ten' is not a byte count"),
    (*binary(TOKENS_400 + b'"parameters": {"binary_data_size": 400}}]}', b"\0" * 10),
     "binary_data_size 400 runs past the 10 bytes of binary data after the JSON header"),
    (*binary(b'{"inputs": []}', b"\0" * 4),
     "4 bytes of binary data follow the JSON header, the inputs' binary_data_size account for 0"),
    (*binary(TOKENS_400 + b'"data": [1], "parameters": {"binary_data_size": 4}}]}', b"\0" * 4),
     "input 'tokens' has both data and parameters.binary_data_size"),
    (b'{"inputs": [], "parameters": {"timeout": "soon"}}', {},
     "parameters.timeout must be microseconds (an integer), found 'soon'"),
    (b'{"inputs": [], "outputs": [{"name": "probability", "parameters": {"binary_data": 1}}]}', {},
     "output 'probability' parameters.binary_data must be true or false, found 1"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "headers", "fragment"), BAD_BODIES)
def test_malformed_bodies_are_400_naming_the_field(served, body: bytes, headers, fragment: str) -> None:
    status, details = post(infer_url(served), body, headers)
    assert status == 400 and fragment in details, details
    assert details.startswith("model 'sentiment_fp32': ")


def test_http_level_garbage_is_400_one_log_line_and_no_crash(served, caplog) -> None:
    port = served.http_port
    caplog.set_level(logging.DEBUG)
    answers = {
        "bad content length": raw_exchange(
            port, b"POST /v2/models/sentiment_fp32/infer HTTP/1.1\r\nHost: x\r\nContent-Length: ab\r\n\r\n{}"
        ),
        "huge header": raw_exchange(
            port, b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        ),
        "huge request line": raw_exchange(port, b"GET /v2/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        "not http": raw_exchange(
            port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64 + b"\r\n\r\n"
        ),
    }
    for what, answer in answers.items():
        assert answer[: len(b"HTTP/1.1 400 ")] in (b"HTTP/1.1 400 ", b"HTTP/1.0 400 "), (what, answer[:200])
    # A body shorter than its Content-Length, then the client stops sending.
    short = raw_exchange(
        port,
        b'POST /v2/models/sentiment_fp32/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"inputs"',
        half_close=True,
    )
    assert short == b"" or b" 400 " in short.split(b"\r\n")[0], short[:200]
    time.sleep(0.2)
    assert not [r for r in caplog.records if r.exc_info or r.exc_text], [
        r.getMessage() for r in caplog.records if r.exc_info
    ]
    rejected = [r for r in caplog.records if r.name == "servescope.rest.http"]
    assert rejected and all(r.levelno == logging.WARNING for r in rejected)
    assert all("rejected a malformed HTTP request" in r.getMessage() for r in rejected)
    status, _ = post(infer_url(served), *rest_body(request(np.ones((1, 100), np.int32))))
    assert status == 200
    assert served.metric("servescope_requests_total", model=MODEL, code="INTERNAL") is None


def test_body_over_the_limit_is_413(start_server) -> None:
    running = start_server(models=(MODEL,), max_message_bytes=10_000)
    status, details = post(infer_url(running), *rest_body(request(np.zeros((64, 100), np.int32))))
    assert (status, details) == (
        413,
        "request body larger than the limit of 10000 bytes (--max-message-bytes)",
    )
    assert post(infer_url(running), *rest_body(request(np.zeros((4, 100), np.int32))))[0] == 200


def test_expired_deadline_is_504_and_never_computed(start_server) -> None:
    running = start_server(models=(MODEL,), max_queue_delay_us=400_000)
    body, headers = rest_body(request())
    document_end = int(headers["Inference-Header-Content-Length"])
    document = json.loads(body[:document_end])
    document["parameters"] = {"timeout": 100_000}  # microseconds, as Triton's REST API takes it
    header = json.dumps(document).encode()
    status, details = post(
        infer_url(running),
        header + body[document_end:],
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == DeadlineExpired.http_status == 504
    assert details.startswith("model 'sentiment_fp32': deadline passed after")
    assert running.metric("servescope_requests_total", model=MODEL, code="DEADLINE_EXCEEDED") == 1
    assert running.metric("servescope_inferences_total", model=MODEL) == 0


def test_draining_is_503_and_accepted_requests_finish(start_server) -> None:
    running = start_server(models=(MODEL,), max_queue_delay_us=500_000)
    body, headers = rest_body(request())
    results: list[tuple[int, str]] = []
    accepted = threading.Thread(target=lambda: results.append(post(infer_url(running), body, headers)))
    accepted.start()
    assert running.wait_for_metric(1, "servescope_queue_depth", model=MODEL) == 1
    stopping = asyncio.run_coroutine_threadsafe(running.server.stop(5), running.loop)
    time.sleep(0.05)
    status, details = post(infer_url(running), body, headers)
    assert status == Unavailable.http_status == 503
    assert details == "model 'sentiment_fp32': server is draining, request refused"
    try:
        urllib.request.urlopen(f"http://{running.http_target}/v2/health/ready", timeout=5)
        raise AssertionError("ready while draining")
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
    accepted.join(10)
    assert [status for status, _ in results] == [200]
    assert stopping.result(10) is True


def test_a_flooded_small_queue_answers_429(start_server) -> None:
    import aiohttp

    running = start_server(models=(MODEL,), max_queue_size=2, max_queue_delay_us=0, batching=False)
    body, headers = rest_body(request(np.ones((8, 100), np.int32)))

    async def flood() -> list[tuple[int, str]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=40)) as session:

            async def one() -> tuple[int, str]:
                async with session.post(infer_url(running), data=body, headers=headers) as response:
                    text = await response.text()
                    return response.status, "" if response.status == 200 else json.loads(text)["error"]

            return await asyncio.gather(*(one() for _ in range(40)))

    answers = asyncio.run(flood())
    shed = [details for status, details in answers if status == Overloaded.http_status == 429]
    assert shed and len(shed) + sum(1 for status, _ in answers if status == 200) == 40
    assert all("queue full" in details for details in shed)
    assert running.metric("servescope_requests_rejected_total", model=MODEL, reason="queue_full") == len(shed)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["name", "datatype", "shape", "data", "parameters", "binary_data_size", "tokens", "INT32"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    document=st.dictionaries(
        st.sampled_from(["inputs", "outputs", "parameters", "id"]),
        JSON_VALUES | st.lists(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=5), max_size=2),
        max_size=4,
    ),
    tail=st.binary(max_size=40),
    declared=st.none() | st.integers(-3, 300),
)
def test_fuzzed_bodies_never_answer_500(served, document, tail: bytes, declared: int | None) -> None:
    header = json.dumps(document).encode()
    headers = {} if declared is None else {"Inference-Header-Content-Length": str(declared)}
    status, details = post(infer_url(served), header + tail, headers)
    assert status in (200, 400), details
