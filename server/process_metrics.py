"""Metrics a multi-worker server's supervisor computes at scrape time: the CPU and memory of the whole
process tree (prometheus_client's process collector covers one process, and custom collectors are not
aggregated in multiprocess mode), and its own restarts and live workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from servescope import metrics as contract


class ProcessTreeCollector(Collector):
    """process_cpu_seconds_total and process_resident_memory_bytes summed over the given processes."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self._pids = pids

    def collect(self) -> Iterator[Any]:
        import psutil

        cpu_s = 0.0
        rss = 0.0
        for pid in self._pids():
            try:
                process = psutil.Process(pid)
                times = process.cpu_times()
                cpu_s += times.user + times.system
                rss += process.memory_info().rss
            except psutil.Error:  # a worker that just exited
                continue
        yield CounterMetricFamily(
            contract.PROCESS_CPU.name.removesuffix("_total"),
            "CPU seconds of the server: the supervisor and its live workers",
            value=cpu_s,
        )
        yield GaugeMetricFamily(
            contract.PROCESS_MEMORY.name, "Resident memory of the supervisor and its live workers", value=rss
        )


class SupervisorCollector(Collector):
    """servescope_worker_restarts_total and servescope_workers from the supervisor's state."""

    def __init__(self, supervisor: Any) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterator[Any]:
        restarts, live = contract.WORKER_RESTARTS, contract.WORKERS_LIVE
        yield CounterMetricFamily(
            restarts.name.removesuffix("_total"), restarts.help, value=self._supervisor.restarts
        )
        yield GaugeMetricFamily(live.name, live.help, value=self._supervisor.ready_workers())
