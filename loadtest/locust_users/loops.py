"""The load modes, apart from the transport: mixed into any transport's user (grpc.py, http.py).

A user class of the locustfile is `class ClosedLoopUser(ClosedLoop, GrpcUser)`: the loop gives the task
and the schedule, the transport gives `call(scheduled_s)` and its process state (`process`).
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import gevent
import gevent.pool
import numpy as np
from locust import constant

from loadtest.locust_users.process import RETRY_S, UNAVAILABLE
from loadtest.samples import CODE_CLIENT_DROPPED

LATE_THRESHOLD_S = 0.005  # an open-loop arrival issued later than this behind schedule counts as late


class ClosedLoop:
    """Closed loop: each user sends its next request as soon as the previous answer arrives."""

    wait_time = constant(0)
    process: Any
    call: Any

    def infer(self) -> None:
        code = self.call()
        if code == UNAVAILABLE or not self.process.requests:
            # The server or the model is unreachable: pause instead of spinning, which would only count
            # failures as fast as this process can and starve the other users of CPU.
            gevent.sleep(RETRY_S)

    tasks: ClassVar[list[Any]] = [
        infer
    ]  # a mixin's tasks: Locust collects a base class's `tasks`, not its @task methods


class OpenLoop:
    """Open loop: requests are issued on an arrival schedule, whether or not earlier ones returned.

    The total rate is split evenly over the open-loop users (one per worker process). Each arrival is
    a new greenlet; when `max_inflight` calls of this user are outstanding the arrival is dropped and
    recorded as CLIENT_DROPPED in the samples and the status file (never as a Locust request: it was not
    sent), so a collapsing server shows up as drops instead of silently slowing the offered load down
    (which would turn the test back into a closed loop). Locust's log says how many at the end.
    """

    wait_time = constant(0)
    process: Any
    call: Any

    def on_start(self) -> None:
        super().on_start()  # type: ignore[misc]
        self.pool = gevent.pool.Pool()
        seed = int(self.process.config.get("seed", 0)) + os.getpid() + id(self) % 1000
        self.rng = np.random.default_rng(seed)

    def on_stop(self) -> None:
        self.pool.kill(block=False)
        super().on_stop()  # type: ignore[misc]

    def arrivals(self) -> None:
        """Issue arrivals on the schedule forever."""
        process = self.process
        config = process.config
        users = max(1, int(config.get("users", 1)))
        cap = int(config.get("max_inflight", 1000))
        poisson = config.get("arrival", "constant") == "poisson"
        next_s = time.perf_counter()
        while True:
            rate = current_target(process, "rate_rps", float(config.get("rate_rps", 1.0))) / users
            next_s += self.rng.exponential(1.0 / rate) if poisson else 1.0 / rate
            delay = next_s - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            elif -delay > LATE_THRESHOLD_S:
                process.status["late"] += 1
            if len(self.pool) >= cap:
                # Not sent, so not a request: no Locust request event (a response time of 0 would pull
                # Locust's percentiles down). Counted in the status file and recorded as CLIENT_DROPPED.
                process.status["dropped"] += 1
                process.record(time.time(), 0.0, CODE_CLIENT_DROPPED, process.batch_size, float("nan"))
                continue
            self.pool.spawn(self.call, next_s)

    tasks: ClassVar[list[Any]] = [arrivals]


def current_target(process: Any, key: str, default: float) -> float:
    """The value of `key` now, following the ramp (step shape) when there is one."""
    ramp = process.config.get("ramp") or []
    elapsed = time.time() - process.test_start_s
    for step in ramp:
        if elapsed < step["until_s"]:
            return float(step[key])
    return float(ramp[-1][key]) if ramp else default
