"""Dynamic batching: requests queue per model and run together, up to max_batch_size samples.

One future per request; a batch concatenates its requests' inputs once, runs, and fans the output rows
back by offset. A failed batch fails only the futures in it. Cancelled requests and requests whose
deadline passed are dropped before a batch is formed, so they are never computed.

When a batch can run (an execution slot is free), the scheduler waits at most `max_queue_delay_us`
after the oldest queued request arrived for company, and closes the batch earlier once it holds the
largest preferred batch size (or max_batch_size) samples. Requests that waited for a slot are already
past their delay and leave with the next free slot. With `adaptive_delay` (the default) the batch also
closes early when the recent arrival rate says the next request will not come before the delay ends
(one client at a time, light load): waiting could only add latency then.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from server.errors import DeadlineExpired, InvalidInput, Overloaded, Unavailable
from servescope import settings

_ARRIVAL_SMOOTHING = 0.1  # weight of the newest gap in the moving average of inter-arrival times
# The fields whose bounds servescope/settings.py defines (a field named apart from its setting: its
# setting), checked in this order.
_CHECKED = (
    ("max_batch_size", settings.MAX_BATCH_SIZE),
    ("max_queue_delay_us", settings.MAX_QUEUE_DELAY_US),
    ("queue_timeout_us", settings.QUEUE_TIMEOUT_US),
    ("max_queue_size", settings.MAX_QUEUE_SIZE),
    ("max_concurrent_batches", settings.INSTANCES),
)


@dataclass(frozen=True, slots=True)
class Computed:
    """What an executor may return instead of bare outputs: the outputs and when the model ran, in
    time.monotonic_ns() taken on the compute thread itself (so the hand-off to that thread and the way
    back to the event loop are told apart from compute)."""

    outputs: Sequence[np.ndarray]
    start_ns: int
    end_ns: int


Execute = Callable[[list[np.ndarray]], Awaitable[Sequence[np.ndarray] | Computed]]


@dataclass(frozen=True)
class BatchSettings:
    """How one model batches. Sizes count samples except max_queue_size, which counts requests."""

    max_batch_size: int
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 0  # 0: unbounded
    max_concurrent_batches: int = 1
    batching: bool = True
    # Close a batch before the delay runs out when, judging by the recent arrival rate, the next request
    # is not expected before the delay would end: waiting would only add latency (e.g. one client).
    adaptive_delay: bool = True
    # Triton's dynamic_batching.default_queue_policy with timeout_action REJECT: a request still queued
    # after queue_timeout_us (0: never) is refused with UNAVAILABLE, never run; with
    # allow_timeout_override a request's own timeout may shorten it (never lengthen it).
    queue_timeout_us: int = 0
    allow_timeout_override: bool = False

    def __post_init__(self) -> None:
        for name, _ in _CHECKED:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {value!r}")
        for name in ("batching", "adaptive_delay", "allow_timeout_override"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name, setting in _CHECKED:
            setting.check(getattr(self, name), name)
        for size in self.preferred_batch_sizes:
            if not isinstance(size, int) or isinstance(size, bool):
                raise TypeError(f"preferred_batch_sizes must hold ints, got {size!r}")
            if not 1 <= size <= self.max_batch_size:
                raise ValueError(
                    f"preferred batch size {size} is outside 1..max_batch_size ({self.max_batch_size})"
                )

    def queue_timeout_s(self, request_timeout_us: int | None) -> float | None:
        """How long a request may wait in the queue: the model's timeout, or the request's own when
        overrides are allowed and it is shorter (Triton: an override may not lengthen it); None: no
        limit. A model without a timeout (0) takes the request's own when overrides are allowed."""
        limits = [self.queue_timeout_us] if self.queue_timeout_us else []
        if self.allow_timeout_override and request_timeout_us and request_timeout_us > 0:
            limits.append(request_timeout_us)
        return min(limits) / 1e6 if limits else None

    @property
    def target_batch_size(self) -> int:
        """The batch size at which a batch closes without waiting out the delay."""
        return max(self.preferred_batch_sizes, default=self.max_batch_size)


@dataclass(frozen=True, slots=True)
class BatchTimes:
    """When one batch's window opened, it began executing, and its compute ran (time.monotonic_ns(); the
    request timeline's stamps, servescope/timeline.py). Four clock reads per batch, always taken."""

    window_open_ns: int
    start_ns: int
    compute_start_ns: int
    compute_end_ns: int


@dataclass(frozen=True)
class BatchOutcome:
    """What one request gets back: its own output rows and where its time went."""

    outputs: list[np.ndarray]
    queue_s: float
    compute_s: float
    batch_size: int
    enqueued_ns: int = 0  # time.monotonic_ns() when it was queued
    times: BatchTimes = BatchTimes(0, 0, 0, 0)


@dataclass(frozen=True)
class BatchReport:
    """One executed batch, for metrics and statistics."""

    batch_size: int
    request_count: int
    compute_s: float
    ok: bool


@dataclass
class _Pending:
    inputs: Sequence[np.ndarray]
    samples: int
    future: asyncio.Future[BatchOutcome]
    enqueued_s: float
    deadline_s: float | None
    expires_s: float | None = None  # the queue timeout (BatchSettings.queue_timeout_us), same clock
    enqueued_ns: int = 0  # time.monotonic_ns(), for the request timeline

    @property
    def row_shape(self) -> tuple[tuple[int, ...], ...]:
        return tuple(array.shape[1:] for array in self.inputs)


def _expired(pending: _Pending, now_s: float) -> bool:
    """Its client deadline or its queue timeout has passed."""
    return (pending.deadline_s is not None and pending.deadline_s <= now_s) or (
        pending.expires_s is not None and pending.expires_s <= now_s
    )


class Batcher:
    """The queue and scheduler of one model.

    Args:
        name: the model name, used in error messages.
        execute: runs one batch (a list of input arrays, batch dim first) off the event loop and returns
            the outputs, batch dim first.
        settings: batching settings.
        on_batch: called once per executed batch.
        on_drop: called with "cancelled" or "deadline" for each request dropped before compute (a queue
            timeout counts as "deadline").
        on_depth: called with the number of queued requests whenever it changes (a gauge's set).
        clock: seconds, monotonic; a parameter so that tests can reason about time.
    """

    def __init__(
        self,
        name: str,
        execute: Execute,
        settings: BatchSettings,
        *,
        on_batch: Callable[[BatchReport], None] | None = None,
        on_drop: Callable[[str], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.name = name
        self.settings = settings
        self._execute = execute
        self._on_batch = on_batch or (lambda report: None)
        self._on_drop = on_drop or (lambda reason: None)
        self._on_depth = on_depth or (lambda depth: None)
        self._clock = clock
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_samples = 0
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.max_concurrent_batches)
        self._running: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._closed = False
        self._last_arrival_s: float | None = None
        self._interarrival_s: float | None = None  # moving average of the time between arrivals

    @property
    def queue_depth(self) -> int:
        """Requests waiting in the queue (not yet in a running batch)."""
        return len(self._queue)

    async def submit(
        self,
        inputs: Sequence[np.ndarray],
        deadline_s: float | None = None,
        timeout_us: int | None = None,
    ) -> BatchOutcome:
        """Queue one request (every input with the same batch dim first) and wait for its outputs.

        Args:
            timeout_us: the request's own queue timeout (used when the settings allow an override).

        Raises:
            Overloaded: the queue is full; the request was not queued.
            DeadlineExpired: `deadline_s` (on this batcher's clock) passed before compute.
            Unavailable: it waited in the queue past its queue timeout; it was not run.
            InvalidInput: the request holds more samples than max_batch_size.
        """
        if self._closed:
            raise Unavailable(f"model {self.name!r} is shutting down")
        samples = int(inputs[0].shape[0]) if inputs and inputs[0].ndim else 1
        if not 1 <= samples <= self.settings.max_batch_size:
            raise InvalidInput(
                f"model {self.name!r}: batch size {samples} is outside 1..max_batch_size "
                f"({self.settings.max_batch_size})"
            )
        limit = self.settings.max_queue_size
        if limit and len(self._queue) >= limit:
            raise Overloaded(
                f"model {self.name!r}: queue full ({len(self._queue)} requests, max_queue_size {limit})"
            )
        if self._scheduler is None:
            self._scheduler = asyncio.get_running_loop().create_task(self._schedule())
        future: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
        now_s = self._clock()
        if self._last_arrival_s is not None:
            # Capped, so that one long idle spell does not hide a burst that follows for long.
            gap_s = min(now_s - self._last_arrival_s, 2e-6 * self.settings.max_queue_delay_us)
            average = self._interarrival_s
            self._interarrival_s = (
                gap_s if average is None else average + _ARRIVAL_SMOOTHING * (gap_s - average)
            )
        self._last_arrival_s = now_s
        timeout_s = self.settings.queue_timeout_s(timeout_us)
        expires_s = None if timeout_s is None else now_s + timeout_s
        self._queue.append(
            _Pending(inputs, samples, future, now_s, deadline_s, expires_s, time.monotonic_ns())
        )
        self._queued_samples += samples
        self._on_depth(len(self._queue))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Stop scheduling; queued requests fail with Unavailable, running batches finish."""
        self._closed = True
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(Unavailable(f"model {self.name!r} is shutting down"))
        self._queued_samples = 0
        self._on_depth(0)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _schedule(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._acquire_slot()
            window_open_ns = time.monotonic_ns()
            try:
                batch = await self._collect()
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch, window_open_ns))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _timeouts_apply(self) -> bool:
        return bool(self.settings.queue_timeout_us or self.settings.allow_timeout_override)

    def _until_next_timeout_s(self) -> float | None:
        """Seconds until the first queued request's queue timeout passes; None when none has one."""
        if not self._timeouts_apply():
            return None
        expiries = [p.expires_s for p in self._queue if p.expires_s is not None]
        return max(0.0, min(expiries) - self._clock()) if expiries else None

    async def _acquire_slot(self) -> None:
        """Wait for a free execution slot, refusing queued requests whose queue timeout passes meanwhile
        (they are answered at their timeout, not when a slot frees)."""
        while True:
            wait_s = self._until_next_timeout_s()
            if wait_s is None:
                await self._slots.acquire()
                return
            try:
                await asyncio.wait_for(self._slots.acquire(), wait_s)
                return
            except TimeoutError:
                self._drop_dead()

    async def _collect(self) -> list[_Pending]:
        """Wait (at most the queue delay of the oldest request) for a batch worth running, and take it."""
        settings = self.settings
        delay_s = settings.max_queue_delay_us / 1e6
        target = settings.target_batch_size
        loop = asyncio.get_running_loop()
        while True:
            self._drop_dead()
            if not self._queue:
                return []
            if not settings.batching:
                return [self._pop()]
            if self._queued_samples >= target:
                break
            remaining_s = self._queue[0].enqueued_s + delay_s - self._clock()
            if remaining_s <= 0 or self._no_company_expected(remaining_s):
                break
            self._wakeup.clear()
            timeout_s = self._until_next_timeout_s()  # wake for a queue timeout before the delay ends
            wait_s = remaining_s if timeout_s is None else min(remaining_s, timeout_s)
            timer = loop.call_later(wait_s, self._wakeup.set)
            try:
                await self._wakeup.wait()
            finally:
                timer.cancel()
        batch = [self._pop()]
        total = batch[0].samples
        # Requests combine when the batch has room and their non-batch dims match (variable dims).
        shape = batch[0].row_shape
        while (
            self._queue
            and total + self._queue[0].samples <= settings.max_batch_size
            and self._queue[0].row_shape == shape
        ):
            total += self._queue[0].samples
            batch.append(self._pop())
        return batch

    def _no_company_expected(self, remaining_s: float) -> bool:
        """True when the next arrival, at the recent rate, would come after the delay runs out."""
        if not self.settings.adaptive_delay or self._interarrival_s is None or self._last_arrival_s is None:
            return False
        next_arrival_s = self._last_arrival_s + self._interarrival_s
        return next_arrival_s > self._clock() + remaining_s

    def _pop(self) -> _Pending:
        pending = self._queue.popleft()
        self._queued_samples -= pending.samples
        self._on_depth(len(self._queue))
        return pending

    def _drop_dead(self) -> None:
        """Remove cancelled requests and fail those whose deadline or queue timeout has passed."""
        now = self._clock()
        if not any(p.future.done() or _expired(p, now) for p in self._queue):
            return
        alive: collections.deque[_Pending] = collections.deque()
        for pending in self._queue:
            # The deadline comes first: gRPC cancels a call whose deadline passed, and that is a deadline.
            if pending.deadline_s is not None and pending.deadline_s <= now:
                self._queued_samples -= pending.samples
                if not pending.future.done():
                    waited_s = now - pending.enqueued_s
                    pending.future.set_exception(
                        DeadlineExpired(
                            f"model {self.name!r}: deadline passed after {waited_s:.6f} s in the queue, "
                            "request dropped before compute"
                        )
                    )
                self._on_drop("deadline")
            elif pending.future.done():
                self._queued_samples -= pending.samples
                self._on_drop("cancelled")
            elif pending.expires_s is not None and pending.expires_s <= now:
                self._queued_samples -= pending.samples
                limit_us = round((pending.expires_s - pending.enqueued_s) * 1e6)
                pending.future.set_exception(
                    Unavailable(
                        f"model {self.name!r}: request waited {now - pending.enqueued_s:.6f} s in the queue, "
                        f"past its queue timeout of {limit_us} us (default_queue_policy, timeout_action "
                        "REJECT): refused, it was not run"
                    )
                )
                self._on_drop("deadline")
            else:
                alive.append(pending)
        self._queue = alive
        self._on_depth(len(alive))

    async def _run(self, batch: list[_Pending], window_open_ns: int = 0) -> None:
        start_s = self._clock()
        start_ns = time.monotonic_ns()
        total = sum(p.samples for p in batch)
        released = False
        try:
            if len(batch) == 1:
                inputs = list(batch[0].inputs)
            else:
                inputs = [np.concatenate([p.inputs[i] for p in batch]) for i in range(len(batch[0].inputs))]
            returned = await self._execute(inputs)
            compute_s = self._clock() - start_s
            if isinstance(returned, Computed):
                outputs, times = (
                    returned.outputs,
                    BatchTimes(window_open_ns, start_ns, returned.start_ns, returned.end_ns),
                )
            else:  # an executor that does not say when it ran: the loop's view of it
                outputs, times = returned, BatchTimes(window_open_ns, start_ns, start_ns, time.monotonic_ns())
            for output in outputs:
                if output.shape[:1] != (total,):
                    raise RuntimeError(
                        f"model {self.name!r}: output with shape {output.shape} for a batch of {total}"
                    )
            self._slots.release()
            released = True
        except BaseException as exc:
            compute_s = self._clock() - start_s
            failure = (
                exc if isinstance(exc, Exception) else Unavailable(f"model {self.name!r} is shutting down")
            )
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(failure)
            self._on_batch(BatchReport(total, len(batch), compute_s, ok=False))
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            if not released:
                self._slots.release()
        offset = 0
        for pending in batch:
            end = offset + pending.samples
            if not pending.future.done():
                pending.future.set_result(
                    BatchOutcome(
                        outputs=[output[offset:end] for output in outputs],
                        queue_s=start_s - pending.enqueued_s,
                        compute_s=compute_s,
                        batch_size=total,
                        enqueued_ns=pending.enqueued_ns,
                        times=times,
                    )
                )
            offset = end
        self._on_batch(BatchReport(total, len(batch), compute_s, ok=True))
