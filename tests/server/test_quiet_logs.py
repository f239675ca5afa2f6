"""Untrusted requests never end in a traceback in the server log: metrics request or header lines over
64 kB are answered 400 / 431 with one warning line, an answer above --max-message-bytes is
RESOURCE_EXHAUSTED with a message, and a stream the client cancels mid-way ends quietly."""

from __future__ import annotations

import asyncio
import logging
import socket

import grpc
import numpy as np
import pytest

from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

MODEL = "sentiment_fp32"


def raw_http(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_oversized_http_lines_are_refused_in_one_log_line(start_server, caplog) -> None:
    running = start_server(models=(MODEL,))
    with caplog.at_level(logging.WARNING):
        long_line = raw_http(running.metrics_port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
        long_header = raw_http(
            running.metrics_port, b"GET /metrics HTTP/1.1\r\nX: " + b"b" * 70_000 + b"\r\n\r\n"
        )
        many = raw_http(running.metrics_port, b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n")
    assert (
        long_line.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        and b"request line longer than 65536" in long_line
    )
    assert long_header.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"header line longer than 65536 bytes" in long_header
    assert many.startswith(b"HTTP/1.1 431 ") and b"more than 100 header lines" in many
    lines = [r for r in caplog.records if r.name == "server.http"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and not lines[0].exc_info
    assert "refused 1 request(s) with 400" in lines[0].getMessage()
    assert problems(caplog) == []
    assert running.http_get("/metrics")[0] == 200


def test_an_answer_above_the_message_limit_is_resource_exhausted_without_a_traceback(
    start_server, caplog
) -> None:
    running = start_server(models=(MODEL,), max_message_bytes=100)
    with caplog.at_level(logging.WARNING), grpc.insecure_channel(running.target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as raised:
                stub.ModelConfig(pb.ModelConfigRequest(name=MODEL), timeout=10)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert raised.value.details().startswith("ModelConfig: the answer takes ")
            assert "bytes, above --max-message-bytes (100)" in raised.value.details()
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    assert problems(caplog) == []


def test_a_stream_cancelled_mid_way_ends_quietly_and_frees_its_slots(start_server, caplog) -> None:
    running = start_server(models=(MODEL,), max_inflight=40, max_queue_delay_us=20_000)
    message = pb.ModelInferRequest(model_name=MODEL)
    message.inputs.add(name="tokens", datatype="INT32", shape=[1, 100])
    message.raw_input_contents.append(np.ones((1, 100), np.int32).tobytes())
    payload = message.SerializeToString()

    async def cancel_streams() -> int:
        answers = 0
        async with grpc.aio.insecure_channel(running.target) as channel:
            for _ in range(5):
                call = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")()
                for _ in range(64):
                    await call.write(payload)
                answers += len(await call.read()) > 0  # at least one answer came, others are on the way
                call.cancel()
        return answers

    with caplog.at_level(logging.WARNING):
        # The client runs on the server's own loop. With a second loop (asyncio.run) that closed first,
        # gRPC's poller handed the cancelled calls' last events to the closed client loop and asyncio
        # logged "Event loop is closed" (1 run in 6 to 4 in 12 here, before the front-end seam too;
        # 0 in 14 this way): a fault of the test's two loops, not of the server.
        assert running.call(cancel_streams()) == 5
        # The cancelled streams' requests left the in-flight count: 40 unary calls are admitted again.
        assert running.wait_for_metric(0, "servescope_inflight_requests", model=MODEL) == 0
        assert running.call(asyncio.sleep(0.2, running.server.admission.inflight)) == 0
    assert problems(caplog) == []
