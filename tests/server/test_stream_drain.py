"""Draining answers, in-band, every request a ModelStreamInfer stream read before the stream ends: the
requests running finish, those read meanwhile are refused in-band, and the closing status counts them."""

from __future__ import annotations

import asyncio
import re
import time

import grpc
import numpy as np

from servescope.protocol import grpc_service_pb2 as pb

MODEL = "sentiment_fp32"
STREAM_PATH = "/inference.GRPCInferenceService/ModelStreamInfer"
STREAMS = 4
WRITE_EVERY_S = 0.01
QUEUE_DELAY_US = 200_000  # each request runs about this long: the drain has answers to wait for
# A request written this long before its stream's last answer arrived was read by the server in time.
READ_MARGIN_S = 0.1
REFUSED = "server is draining: request refused, it was not run; send it to another server"
# A request the stream read just before the drain began, whose task reaches the data plane just after,
# is refused there instead, in-band too, with the data plane's draining message.
REFUSED_BY_THE_DATA_PLANE = f"model {MODEL!r}: server is draining, request refused"


def payload(request_id: str) -> bytes:
    message = pb.ModelInferRequest(model_name=MODEL, id=request_id)
    message.inputs.add(name="tokens", datatype="INT32", shape=[1, 100])
    message.raw_input_contents.append(np.ones((1, 100), np.int32).tobytes())
    return message.SerializeToString()


async def one_stream(channel: grpc.aio.Channel, number: int, stop: asyncio.Event) -> dict:
    """Write a request every WRITE_EVERY_S until the stream ends; record what was written when and
    every answer."""
    call = channel.stream_stream(STREAM_PATH, lambda b: b, pb.ModelStreamInferResponse.FromString)()
    written: dict[str, float] = {}
    answers: dict[str, tuple[float, str]] = {}

    async def write() -> None:
        for index in range(100_000):
            if stop.is_set() or call.done():
                return
            request_id = f"{number}-{index}"
            try:
                await call.write(payload(request_id))
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                return
            written[request_id] = time.perf_counter()
            await asyncio.sleep(WRITE_EVERY_S)

    writer = asyncio.ensure_future(write())
    code, details = "OK", ""
    try:
        async for answer in call:
            answers[answer.infer_response.id] = (time.perf_counter(), answer.error_message)
    except grpc.aio.AioRpcError as exc:
        code, details = exc.code().name, exc.details() or ""
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    return {"code": code, "details": details, "written": written, "answers": answers}


def test_a_drained_stream_answers_every_request_it_read(start_server) -> None:
    running = start_server(
        models=(MODEL,), max_queue_delay_us=QUEUE_DELAY_US, adaptive_delay=False, stream_max_inflight=64
    )

    async def scenario() -> list[dict]:
        stop = asyncio.Event()
        async with grpc.aio.insecure_channel(running.target) as channel:
            streams = [asyncio.ensure_future(one_stream(channel, n, stop)) for n in range(STREAMS)]
            await asyncio.sleep(0.6)  # every stream has requests running
            loop = asyncio.get_running_loop()
            stopping = loop.run_in_executor(None, lambda: running.call(running.server.stop(10), 40))
            ends = await asyncio.wait_for(asyncio.gather(*streams), 30)
            stop.set()
            assert await stopping is True
            return ends

    ends = asyncio.run(scenario())
    refused = 0
    for number, end in enumerate(ends):
        written, answers = end["written"], end["answers"]
        closed = re.search(r"stream closed after (\d+) answers, one to each request it read", end["details"])
        assert end["code"] == "UNAVAILABLE" and closed, (number, end["code"], end["details"])
        assert int(closed.group(1)) == len(answers) and set(answers) <= set(written), number
        last_answer_s = max(at_s for at_s, _ in answers.values())
        unanswered = [
            request_id
            for request_id, written_s in written.items()
            if request_id not in answers and written_s < last_answer_s - READ_MARGIN_S
        ]
        # Before the fix the drain stopped reading at once: every request written while the running
        # ones finished (about QUEUE_DELAY_US) went unanswered.
        assert unanswered == [], (number, unanswered[:5], len(unanswered))
        for _, message in answers.values():
            assert message in ("", REFUSED, REFUSED_BY_THE_DATA_PLANE), message
        refused += sum(
            1 for _, message in answers.values() if message in (REFUSED, REFUSED_BY_THE_DATA_PLANE)
        )
        assert sum(1 for _, message in answers.values() if message == "") > 0, number
    assert refused > 0  # requests did arrive while the running ones finished, and were refused in-band
    assert running.call(asyncio.sleep(0, running.server.admission.inflight)) == 0
