"""The in-flight cap of a worker (--max-inflight): inference calls beyond it are shed at once with
RESOURCE_EXHAUSTED, before they are read, and counted; stream requests beyond it get the same answer
in-band; the cap never keeps accepted work from finishing."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from server.admission import Admission
from servescope.protocol import grpc_service_pb2 as pb

MODEL = "sentiment_fp32"
INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
STREAM_PATH = "/inference.GRPCInferenceService/ModelStreamInfer"


def payload(request_id: str = "") -> bytes:
    message = pb.ModelInferRequest(model_name=MODEL, id=request_id)
    message.inputs.add(name="tokens", datatype="INT32", shape=[1, 100])
    message.raw_input_contents.append(np.ones((1, 100), np.int32).tobytes())
    return message.SerializeToString()


def test_admission_counts_in_sheds_and_counts_out() -> None:
    shed: list[int] = []
    gate = Admission(2, lambda: shed.append(1))
    assert gate.admit() and gate.admit() and gate.full()
    assert not gate.admit() and len(shed) == 1
    assert gate.shed_message().startswith("server overloaded: 2 inference calls in flight in this worker")
    gate.done()
    assert gate.admit() and gate.inflight == 2
    unlimited = Admission(0)
    assert all(unlimited.admit() for _ in range(10_000)) and not unlimited.full()
    with pytest.raises(ValueError, match="max_inflight must be >= 0"):
        Admission(-1)


def test_calls_beyond_the_cap_are_shed_at_once_and_counted(start_server) -> None:
    # Each admitted request waits out a 300 ms queue delay, so 4 admitted calls hold the cap.
    running = start_server(models=(MODEL,), max_inflight=4, max_queue_delay_us=300_000, adaptive_delay=False)

    async def burst() -> tuple[list[tuple[str, str]], list[pb.ModelStreamInferResponse]]:
        async with grpc.aio.insecure_channel(running.target) as channel:
            infer = channel.unary_unary(INFER_PATH, lambda b: b, lambda b: b)

            async def one() -> tuple[str, str]:
                try:
                    await infer(payload(), timeout=30)
                    return "OK", ""
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name, exc.details() or ""

            first = [asyncio.ensure_future(one()) for _ in range(4)]
            await asyncio.sleep(0.15)  # the four are admitted and queued
            more = await asyncio.gather(*(one() for _ in range(12)))
            stream = channel.stream_stream(STREAM_PATH, lambda b: b, pb.ModelStreamInferResponse.FromString)()
            await stream.write(payload("s1"))
            answer = await stream.read()  # shed in-band while the four are in flight
            await stream.done_writing()
            rest = []
            while (more_answer := await stream.read()) is not grpc.aio.EOF:
                rest.append(more_answer)
            return [*await asyncio.gather(*first), *more], [answer, *rest]

    outcomes, stream_answers = asyncio.run(burst())
    codes = [code for code, _ in outcomes]
    assert codes[:4] == ["OK"] * 4 and codes[4:] == ["RESOURCE_EXHAUSTED"] * 12, outcomes
    assert all(
        "server overloaded: 4 inference calls in flight" in d and "--max-inflight 4" in d
        for _, d in outcomes[4:]
    )
    assert len(stream_answers) == 1 and stream_answers[0].infer_response.id == "s1"
    assert "server overloaded: 4 inference calls in flight" in stream_answers[0].error_message
    assert running.metric("servescope_calls_shed_total", worker="0") == 13
    # Shed calls never reached the data plane: only the four admitted ones were counted there.
    assert running.metric("servescope_requests_total", model=MODEL, code="OK") == 4
    assert running.metric("servescope_requests_total", model=MODEL, code="RESOURCE_EXHAUSTED") is None
    assert running.call(asyncio.sleep(0, running.server.admission.inflight)) == 0


def test_the_default_cap_is_what_the_models_hold(start_server) -> None:
    """--max-inflight auto: each model's queue (1024 where unbounded) plus a batch per instance, plus 64,
    so the models' own queue policy refuses first and the cap only bounds what is left."""
    from server.app import auto_max_inflight
    from server.batcher import BatchSettings

    settings = [
        BatchSettings(max_batch_size=64, max_queue_size=8),
        BatchSettings(8, max_concurrent_batches=2),
    ]
    assert auto_max_inflight(settings) == (8 + 64) + (1024 + 16) + 64
    running = start_server(models=(MODEL,), max_queue_size=8)
    assert running.server.admission.max_inflight == 8 + 64 + 64
    unlimited = start_server(models=(MODEL,), max_inflight=0)
    assert not unlimited.server.admission.full() and unlimited.server.admission.max_inflight > 1 << 60
