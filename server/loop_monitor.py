"""A worker's own load: how late its event loop runs a periodic timer, and how much CPU it uses.

A grpc.aio front end that cannot keep up runs every callback late, this timer included, so the lag
histogram tells a saturated event loop from a slow network or client; the CPU counter (all of the
process's threads, ONNX Runtime's included) says how much of a core the worker used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


class LoopMonitor:
    """Observes the lag of a timer due every `tick_s` and the process's CPU time, until stopped."""

    def __init__(
        self,
        lag: Any,
        cpu_seconds: Any,
        tick_s: float,
        *,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        if tick_s <= 0:
            raise ValueError(f"tick_s must be > 0, got {tick_s!r}")
        self._lag = lag
        self._cpu = cpu_seconds
        self._tick_s = tick_s
        self._cpu_clock = cpu_clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._count_cpu()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_cpu_s = self._cpu_clock()
        while True:
            due_s = loop.time() + self._tick_s
            await asyncio.sleep(self._tick_s)
            self._lag.observe(max(0.0, loop.time() - due_s))
            self._count_cpu()

    def _count_cpu(self) -> None:
        last = getattr(self, "_last_cpu_s", None)
        now = self._cpu_clock()
        if last is not None and now > last:
            self._cpu.inc(now - last)
        self._last_cpu_s = now
