"""A ModelStreamInfer client that sends and never reads cannot make the server buffer without bound:
the server reads the next request of a stream only once an earlier answer was written
(--max-stream-inflight), so gRPC flow control stops the client's writes. Measured on `servescope serve`
as a child process (its RSS, read with psutil)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import numpy as np
import psutil
import pytest

from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

MODEL = "sentiment_fp32"
ATTEMPT_BYTES = 200 << 20  # what the client tries to send, per round
GROWTH_BOUND_BYTES = 100 << 20  # docs/server.md, Reliability
STALL_S = 2.0  # a write that takes this long: the server stopped reading


def request_bytes(batch: int) -> bytes:
    message = pb.ModelInferRequest(model_name=MODEL)
    message.inputs.add(name="tokens", datatype="INT32", shape=[batch, 100])
    message.raw_input_contents.append(np.ones((batch, 100), np.int32).tobytes())
    return message.SerializeToString()


async def non_reading_stream(target: str, payload: bytes, rss, peak: list[int]) -> int:
    """Write payloads until ATTEMPT_BYTES are sent or a write stalls, never reading; bytes sent."""
    sent = 0
    # No BDP probing: the client's receive window stays at its initial 64 kB, as a client that does not
    # read would keep it; with probing on, gRPC grows it to hold several MB of small answers.
    async with grpc.aio.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)]) as channel:
        call = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")()
        try:
            while sent < ATTEMPT_BYTES:
                try:
                    await asyncio.wait_for(call.write(payload), STALL_S)
                except TimeoutError:
                    break
                sent += len(payload)
                if sent % (len(payload) * 64) == 0:
                    peak[0] = max(peak[0], rss())
        finally:
            peak[0] = max(peak[0], rss())
            call.cancel()
    return sent


def settled_rss(process: psutil.Process, seconds: float = 3.0) -> int:
    """The server's RSS once it stopped moving (or after `seconds`)."""
    last = process.memory_info().rss
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = process.memory_info().rss
        if abs(now - last) < (1 << 20):
            return now
        last = now
    return last


@pytest.mark.slow
def test_a_non_reading_stream_client_cannot_grow_server_memory(
    model_repository: Path, tmp_path: Path, serve_cli
) -> None:
    ready_file = tmp_path / "ready.json"
    process = serve_cli.start(model_repository, ready_file, "--workers", "1")
    try:
        ready = serve_cli.wait_ready(process, ready_file)
        target = f"127.0.0.1:{ready['grpc_port']}"
        server = psutil.Process(process.pid)
        payload = request_bytes(64)  # 25.6 kB: 200 MB is about 8000 requests
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            infer = pb.ModelInferRequest.FromString(payload)
            for _ in range(20):  # warm the allocator before taking the baseline
                stub.ModelInfer(infer, timeout=30)
            baseline = settled_rss(server)
            rounds = []
            for _ in range(2):
                peak = [baseline]
                sent = asyncio.run(
                    non_reading_stream(target, payload, lambda: server.memory_info().rss, peak)
                )
                # The server still answers others while a stream waits for its client to read.
                assert stub.ModelInfer(infer, timeout=30).outputs[0].shape == [64, 1]
                rounds.append((sent, peak[0] - baseline, settled_rss(server)))
    finally:
        process.terminate()
        process.wait(timeout=30)
    figures = [(round(s / 1e6, 1), round(g / 2**20, 1), round(a / 2**20)) for s, g, a in rounds]
    print(f"\nbaseline RSS {baseline / 2**20:.0f} MiB; (sent MB, peak growth MiB, settled MiB): {figures}")
    for sent, growth, after in rounds:
        assert sent < ATTEMPT_BYTES, rounds  # the writes stalled: backpressure, not buffering
        assert growth < GROWTH_BOUND_BYTES, rounds
        assert after < baseline * 1.2, (baseline, rounds)
