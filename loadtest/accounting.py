"""The machine during a step, honestly: CPU of the server, the generator and everything else, per thread
where it matters, and how long threads waited for a CPU they wanted.

Read at window boundaries (`read()`), so a step's figures are differences of two readings over exactly
its measured interval. Linux-specific parts (schedstat, per-thread times) degrade to None elsewhere.

- cores: process CPU seconds (user + system, children included) / wall seconds.
- other processes: the machine's busy CPU (psutil.cpu_times: all but idle, iowait and steal) minus the
  server, the generator and this driver.
- the server's event-loop threads: the main thread of each server process (grpc.aio runs its loop
  there; with --workers, every worker's); the busiest is what saturates first.
- wait share: /proc/<pid>/task/<tid>/schedstat's run-queue wait. For the server's event loop, per wall
  second: the share of the step it was runnable but not running. For the generator, over all its
  threads (gRPC's event-engine threads do much of its work): waited / (ran + waited), the share of the
  CPU time it asked for that it had to wait for.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servescope.cores import available_cores


def _schedstat(pid: int, tid: int) -> tuple[float, float] | None:
    """(ran, waited on a run queue) of a thread so far, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def _schedstat_wait_s(pid: int, tid: int) -> float | None:
    stat = _schedstat(pid, tid)
    return stat[1] if stat is not None else None


def _process_schedstat(pid: int) -> tuple[float, float] | None:
    """(ran, waited) summed over every thread of a process."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return None
    ran = waited = 0.0
    for tid in tids:
        stat = _schedstat(pid, tid)
        if stat is not None:
            ran, waited = ran + stat[0], waited + stat[1]
    return ran, waited


@dataclass
class Reading:
    taken_s: float
    process_cpu_s: dict[int, float]  # watched process (with its children) -> CPU seconds
    server_threads_s: dict[int, float] = field(default_factory=dict)  # every server thread -> CPU s
    loop_threads_s: dict[int, float] = field(default_factory=dict)  # server main threads -> CPU s
    loop_wait_s: dict[int, float] = field(default_factory=dict)  # server main threads -> run-queue wait
    generator_sched_s: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid -> (ran, waited)
    machine_busy_s: float | None = None
    driver_cpu_s: float = 0.0


@dataclass
class Usage:
    """What two readings say about the interval between them."""

    server_cores: float | None
    generator_cores: float | None
    generator_max_process_percent: float | None
    other_cores: float | None
    server_loop_cores: float | None
    server_busiest_thread_cores: float | None
    server_loop_wait_share: float | None
    generator_wait_share: float | None


class Accounting:
    """Readings of the generator processes and (when it runs here) the server process tree."""

    def __init__(self, generator_pids: list[int], server_pid: int | None) -> None:
        import psutil

        self._psutil = psutil
        self.generators = self._processes(generator_pids)
        self.server = self._processes([server_pid]) if server_pid else []
        self._driver = psutil.Process(os.getpid())
        self.generator_available_cores = available_cores(generator_pids[0]) if generator_pids else None
        self.server_available_cores = available_cores(server_pid) if server_pid else None

    def _processes(self, pids: list[int]) -> list[Any]:
        found = []
        for pid in pids:
            try:
                found.append(self._psutil.Process(pid))
            except self._psutil.Error:
                continue
        return found

    def _family(self, proc: Any) -> list[Any]:
        try:
            return [proc, *proc.children(recursive=True)]
        except self._psutil.Error:
            return []

    def _cpu_s(self, members: list[Any]) -> float:
        total = 0.0
        for member in members:
            try:
                t = member.cpu_times()
                total += t.user + t.system
            except self._psutil.Error:
                continue
        return total

    def read(self) -> Reading:
        psutil = self._psutil
        reading = Reading(time.time(), {})
        for proc in [*self.generators, *self.server]:
            reading.process_cpu_s[proc.pid] = self._cpu_s(self._family(proc))
        for proc in self.generators:
            for member in self._family(proc):
                stat = _process_schedstat(member.pid)
                if stat is not None:
                    reading.generator_sched_s[member.pid] = stat
        for proc in self.server:
            for member in self._family(proc):
                try:
                    threads = member.threads()
                except psutil.Error:
                    continue
                for thread in threads:
                    reading.server_threads_s[thread.id] = thread.user_time + thread.system_time
                    if thread.id == member.pid:
                        reading.loop_threads_s[thread.id] = thread.user_time + thread.system_time
                        wait = _schedstat_wait_s(member.pid, thread.id)
                        if wait is not None:
                            reading.loop_wait_s[thread.id] = wait
        try:
            t = psutil.cpu_times()
            idle = t.idle + getattr(t, "iowait", 0.0) + getattr(t, "steal", 0.0)
            reading.machine_busy_s = sum(t) - idle
            reading.driver_cpu_s = sum(self._driver.cpu_times()[:2])
        except (psutil.Error, OSError):
            reading.machine_busy_s = None
        return reading

    def usage(self, before: Reading, after: Reading) -> Usage:
        wall_s = after.taken_s - before.taken_s
        if wall_s <= 0:
            return Usage(None, None, None, None, None, None, None, None)

        def delta(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
            return {key: a[key] - b[key] for key in a if key in b}

        def cores(values: dict[int, float]) -> float | None:
            return sum(values.values()) / wall_s if values else None

        def busiest(values: dict[int, float]) -> float | None:
            return max(values.values()) / wall_s if values else None

        gen = {pid: v for pid, v in delta(after.process_cpu_s, before.process_cpu_s).items()
               if pid in {p.pid for p in self.generators}}  # fmt: skip
        srv = {pid: v for pid, v in delta(after.process_cpu_s, before.process_cpu_s).items()
               if pid in {p.pid for p in self.server}}  # fmt: skip
        generator_cores, server_cores = cores(gen), cores(srv)
        other = None
        if after.machine_busy_s is not None and before.machine_busy_s is not None:
            busy = (after.machine_busy_s - before.machine_busy_s) / wall_s
            driver = (after.driver_cpu_s - before.driver_cpu_s) / wall_s
            other = max(0.0, busy - (generator_cores or 0.0) - (server_cores or 0.0) - driver)
        return Usage(
            server_cores=server_cores,
            generator_cores=generator_cores,
            generator_max_process_percent=None if not gen else max(gen.values()) / wall_s * 100.0,
            other_cores=other,
            server_loop_cores=busiest(delta(after.loop_threads_s, before.loop_threads_s)),
            server_busiest_thread_cores=busiest(delta(after.server_threads_s, before.server_threads_s)),
            server_loop_wait_share=busiest(delta(after.loop_wait_s, before.loop_wait_s)),
            generator_wait_share=_wait_share(before.generator_sched_s, after.generator_sched_s),
        )


def _wait_share(
    before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]
) -> float | None:
    """Waited / (ran + waited) over the processes present in both readings."""
    ran = waited = 0.0
    for pid, (ran_after, waited_after) in after.items():
        if pid in before:
            ran += ran_after - before[pid][0]
            waited += waited_after - before[pid][1]
    return waited / (ran + waited) if ran + waited > 0 else None
