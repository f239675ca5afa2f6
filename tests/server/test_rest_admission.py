"""REST infer passes the same admission as gRPC: REST calls count in the worker's in-flight calls, and one
over --max-inflight is answered 429 with gRPC's message before its body is read, counted, not logged."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import aiohttp
import numpy as np
import pytest

MODEL = "sentiment_fp32"
INFER = f"/v2/models/{MODEL}/infer"


def body() -> bytes:
    tokens = np.ones((1, 100), np.int32).tolist()
    return json.dumps(
        {"inputs": [{"name": "tokens", "datatype": "INT32", "shape": [1, 100], "data": tokens}]}
    ).encode()


def test_rest_calls_count_in_flight_and_beyond_the_cap_are_shed_unread(
    start_server, caplog: pytest.LogCaptureFixture
) -> None:
    # Each admitted request waits out a 300 ms queue delay, so 4 admitted calls hold the cap.
    running = start_server(models=(MODEL,), max_inflight=4, max_queue_delay_us=300_000, adaptive_delay=False)
    url = f"http://{running.http_target}{INFER}"

    async def burst() -> tuple[list[tuple[int, dict]], int, tuple[int, bytes]]:
        async with aiohttp.ClientSession() as session:

            async def one() -> tuple[int, dict]:
                async with session.post(url, data=body()) as response:
                    return response.status, await response.json(content_type=None)

            first = [asyncio.ensure_future(one()) for _ in range(4)]
            await asyncio.sleep(0.15)  # the four are admitted and queued
            inflight = running.call(asyncio.sleep(0, running.server.admission.inflight))
            more = await asyncio.gather(*(one() for _ in range(12)))
            unread = await asyncio.get_running_loop().run_in_executor(None, unsent_body_answer, running)
            return [*await asyncio.gather(*first), *more], inflight, unread

    with caplog.at_level(logging.INFO):
        caplog.clear()
        outcomes, inflight, (unread_status, unread_text) = asyncio.run(burst())
        shed_logs = [r for r in caplog.records if r.name.startswith(("server", "servescope", "aiohttp"))]
    assert inflight == 4  # the REST calls are the worker's in-flight calls
    assert [status for status, _ in outcomes] == [200] * 4 + [429] * 12, outcomes
    assert all(document["outputs"][0]["shape"] == [1, 1] for _, document in outcomes[:4])
    for _, document in outcomes[4:]:
        assert document["error"].startswith("server overloaded: 4 inference calls in flight in this worker")
        assert "--max-inflight 4" in document["error"]
    # Answered at once though the body announced was never sent: the server did not wait to read it.
    assert unread_status == 429 and b"server overloaded" in unread_text
    assert shed_logs == [], [r.getMessage() for r in shed_logs]
    assert running.metric("servescope_calls_shed_total", worker="0") == 13
    # Shed calls never reached the data plane.
    assert running.metric("servescope_requests_total", model=MODEL, code="OK") == 4
    assert running.metric("servescope_requests_total", model=MODEL, code="RESOURCE_EXHAUSTED") is None
    assert running.call(asyncio.sleep(0, running.server.admission.inflight)) == 0


def unsent_body_answer(running) -> tuple[int, bytes]:
    """POST an infer call whose headers announce a 10 MB body, send none of it, and read the answer
    (the four admitted calls still hold the cap)."""
    with socket.create_connection(("127.0.0.1", running.http_port), timeout=5) as sock:
        sock.sendall(
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10_000_000}\r\n\r\n".encode()
        )
        started_s = time.perf_counter()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        assert time.perf_counter() - started_s < 5
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]
