"""Admission of inference calls at the front door of one worker: the in-flight cap and the drain phases.

Nothing is buffered without bound: at most `max_inflight` inference calls (unary ModelInfer calls,
stream requests read but not yet answered, REST infer calls) are inside a worker at once; one more is
shed at once with RESOURCE_EXHAUSTED (REST: 429), before its bytes are even parsed, and counted
(servescope_calls_shed_total). Every front end reaches it through its FrontDoor (frontend.py), asking
`admit()` and calling `done()`; both are a comparison and an addition, so a call pays nothing
measurable for them.

Draining, in the order app.Server.stop runs the phases (docs/server.md, Reliability):
1. `refuse_streams()`: open streams run nothing more, answer every request they read (in-band refusals
   for those read from now on), and end with UNAVAILABLE; the
   data plane answers new unary calls UNAVAILABLE ("server is draining").
2. `hold()`: the last moment before gRPC stops. A call that arrives now waits (`held`), so that every
   client that retries at once is blocked on a call of its own when gRPC's shutdown starts: a call that
   reaches gRPC after that is cancelled by gRPC core (CANCELLED, which clients do not retry), while a
   held call is answered, UNAVAILABLE, once the shutdown has told the clients to go away.
3. `release()`: the held calls get their UNAVAILABLE.
No protocol here: this module imports neither gRPC nor protobuf.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

SHED_MESSAGE = (
    "server overloaded: {inflight} inference calls in flight in this worker (--max-inflight {cap}), "
    "call shed before it was read; retry later"
)
SHUTTING_DOWN_MESSAGE = "server is shutting down: call refused, it was not run; retry on another server"


class Admission:
    """The in-flight count and cap of one worker, and its drain state."""

    def __init__(self, max_inflight: int, on_shed: Callable[[], None] = lambda: None) -> None:
        """Args:
        max_inflight: inference calls in flight before new ones are shed; 0: no cap.
        on_shed: called once per shed call (a counter's inc).
        """
        if max_inflight < 0:
            raise ValueError(f"max_inflight must be >= 0 (0: no cap), got {max_inflight}")
        self.max_inflight = max_inflight or (1 << 62)
        self.inflight = 0
        self.calls_seen = 0  # every call that reached the front door (the drain asks: are clients calling?)
        self.holding = False
        self.held_calls = 0  # calls held in the last phase of a drain, in all
        self._on_shed = on_shed
        self._released: asyncio.Event | None = None
        self._stream_closers: set[Callable[[], None]] = set()
        self._streams_gone: asyncio.Event | None = None
        self.refusing_streams = False

    # ---- the in-flight cap (hot path) ------------------------------------------------------------

    def full(self) -> bool:
        return self.inflight >= self.max_inflight

    def admit(self) -> bool:
        """Count one inference call in, or shed it (False, counted) when the cap is reached."""
        if self.inflight >= self.max_inflight:
            self.shed()
            return False
        self.inflight += 1
        return True

    def done(self, count: int = 1) -> None:
        self.inflight -= count

    def shed(self) -> None:
        """Count one call shed without being admitted."""
        self._on_shed()

    def shed_message(self) -> str:
        return SHED_MESSAGE.format(inflight=self.inflight, cap=self.max_inflight)

    # ---- streams -----------------------------------------------------------------------------------

    def open_stream(self, close: Callable[[], None]) -> None:
        """A stream started; `close` makes it run nothing more (called once when draining begins)."""
        self._stream_closers.add(close)
        if self.refusing_streams:
            close()

    def close_stream(self, close: Callable[[], None]) -> None:
        self._stream_closers.discard(close)
        if not self._stream_closers and self._streams_gone is not None:
            self._streams_gone.set()

    @property
    def open_streams(self) -> int:
        return len(self._stream_closers)

    def refuse_streams(self) -> None:
        """Draining: every open stream runs nothing more, answers what it read and ends."""
        self.refusing_streams = True
        for close in list(self._stream_closers):
            close()

    async def streams_closed(self, timeout_s: float) -> bool:
        """Wait (at most timeout_s) until every stream has ended; True when none is left."""
        if not self._stream_closers:
            return True
        self._streams_gone = asyncio.Event()
        try:
            await asyncio.wait_for(self._streams_gone.wait(), max(0.0, timeout_s))
        except TimeoutError:
            return False
        return True

    # ---- the last phase of a drain -----------------------------------------------------------------

    def hold(self) -> None:
        """From now on, calls wait in `held()` until `release()`."""
        self._released = asyncio.Event()
        self.holding = True

    async def held(self) -> None:
        """Wait until release() (the caller then refuses the call with UNAVAILABLE)."""
        self.held_calls += 1
        if self._released is not None:
            await self._released.wait()

    def release(self) -> None:
        if self._released is not None:
            self._released.set()
