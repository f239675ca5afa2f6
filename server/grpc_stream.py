"""ModelStreamInfer's server side: one stream's reader, its request tasks and its writer.

Split from servicer.py (the unary servicer and the error interceptor), with what both share: the stand-in
for a request whose bytes did not parse, and the message for an answer too large to send.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from server import grpc_codec
from server.admission import Admission
from server.dataplane import DataPlane
from server.errors import InvalidInput, ResponseTooLarge, Unavailable, client_message
from server.stamps import now_ns
from servescope.echo import shown
from servescope.protocol import grpc_service_pb2 as pb


class Malformed:
    """Stands in for a request whose bytes are not a valid protobuf message."""

    def __init__(self, method: str) -> None:
        self.method = method

    def error(self) -> InvalidInput:
        return InvalidInput(f"malformed {self.method} request: not a valid protobuf message")


def check_parsed(request: Any) -> None:
    if isinstance(request, Malformed):
        raise request.error()


def too_large(method: str, response: Any, size: int, limit: int) -> str:
    model = getattr(response, "model_name", "")
    who = f"model {shown(model)}: " if model else f"{method.rsplit('/', 1)[-1]}: "
    return f"{who}the answer takes {size} bytes, above --max-message-bytes ({limit})"


STREAM_REFUSED_MESSAGE = "server is draining: stream refused, nothing was read; reconnect to another server"
STREAM_DRAINED_MESSAGE = (
    "server is draining: stream closed after {} answers, one to each request it read; requests without "
    "an answer were not read and not run"
)
STREAM_REQUEST_REFUSED = "server is draining: request refused, it was not run; send it to another server"


class Stream:
    """One ModelStreamInfer call: a reader that reads while there are free slots, one task per request,
    and the handler's own loop writing the answers, in the order they finish."""

    def __init__(
        self, core: DataPlane, gate: Admission, context: Any, max_inflight: int, max_send_bytes: int
    ) -> None:
        self._core, self._gate, self._context = core, gate, context
        self._max_send_bytes = max_send_bytes
        self._slots = asyncio.Semaphore(max_inflight)  # requests read and not yet answered on the wire
        self._out: asyncio.Queue[tuple[bytes, bool] | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._reading = True
        self._unanswered = 0  # read, answer not yet written
        self._admitted = 0  # of those, counted in the worker's in-flight calls
        self.answered = 0
        self.closed_by_drain = False
        self.client_gone = False

    def close(self) -> None:
        """Draining: run nothing more; what was read is answered, and so is what is read until then.

        The reader is not cancelled: a read cancelled just as its message arrived would lose a request
        the client wrote and gRPC delivered, unanswered. It goes on reading while the stream still has
        requests running, and answers each new one at once with an in-band refusal; the stream ends
        when every request it read has its answer written."""
        self.closed_by_drain = True
        self._out.put_nowait(None)  # the writer looks at its end condition again

    def _finished(self) -> bool:
        """Every request read is answered, and no more will be read (end of input, or a drain with
        nothing left running)."""
        if self._unanswered:
            return False
        return not self._reading or (self.closed_by_drain and self._admitted == 0)

    async def run(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._gate.open_stream(self.close)
        try:
            while not self._finished():
                item = await self._out.get()
                if item is None:
                    continue  # the reader stopped: look at the condition again
                data, admitted = item
                try:
                    await self._context.write(data)
                except Exception:  # the client went away (cancelled, connection lost): nothing to answer
                    self.client_gone = True
                    return
                self.answered += 1
                self._unanswered -= 1
                if admitted:
                    self._admitted -= 1
                    self._gate.done()
                self._slots.release()
        finally:
            self._gate.close_stream(self.close)
            self._reader.cancel()
            for task in list(self._tasks):
                task.cancel()
            self._gate.done(self._admitted)
            self._admitted = 0

    async def _read(self) -> None:
        try:
            while True:
                await self._slots.acquire()
                request = await self._context.read()
                if request is grpc.aio.EOF:
                    return
                self._unanswered += 1
                if self.closed_by_drain:
                    self._out.put_nowait((self._failure(request, Unavailable(STREAM_REQUEST_REFUSED)), False))
                else:
                    self._dispatch(request)
        except asyncio.CancelledError:
            pass  # draining, or the stream ended
        except Exception:  # the client went away while we read
            pass
        finally:
            self._reading = False
            self._out.put_nowait(None)

    def _dispatch(self, request: Any) -> None:
        handler_ns = now_ns()
        if isinstance(request, Malformed):
            self._out.put_nowait((self._failure(request, request.error()), False))
            return
        if not self._gate.admit():
            self._out.put_nowait((self._failure(request, None), False))
            return
        self._admitted += 1
        task = asyncio.get_running_loop().create_task(self._answer(request, (handler_ns, now_ns())))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: pb.ModelInferRequest, entry: tuple[int, int]) -> None:
        try:
            check_parsed(request)
            response = await self._core.infer(
                grpc_codec.infer_request(request, entry), self._context.time_remaining()
            )
            message = pb.ModelStreamInferResponse(infer_response=grpc_codec.infer_response(response))
            data = message.SerializeToString()
            if len(data) > self._max_send_bytes:
                raise ResponseTooLarge(
                    too_large("ModelStreamInfer", response, len(data), self._max_send_bytes)
                )
        except Exception as exc:
            data = self._failure(request, exc)
        self._out.put_nowait((data, True))

    def _failure(self, request: Any, exc: Exception | None) -> bytes:
        """An in-band error answer (exc None: shed by the in-flight cap), with the request's name and id."""
        message = client_message(exc) if exc is not None else self._gate.shed_message()
        failed = pb.ModelInferResponse()
        if not isinstance(request, Malformed):
            failed.model_name, failed.id = request.model_name, request.id
        data = pb.ModelStreamInferResponse(error_message=message, infer_response=failed).SerializeToString()
        if len(data) > self._max_send_bytes:  # a huge name or id: answer without echoing them
            data = pb.ModelStreamInferResponse(error_message=message).SerializeToString()
        return data
