"""GPUs as NVML sees them: a count for device choice, and gauges refreshed on every scrape.

Every NVML call is guarded: no NVML library, no driver or no GPU all mean "no GPU", never an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from servescope import metrics as contract

log = logging.getLogger(__name__)


def _nvml():  # the pynvml module, or None when NVML cannot start
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # NVML missing or no driver: the normal case on a CPU-only machine
        return None
    return pynvml


def gpu_count() -> int:
    """How many GPUs NVML finds; 0 when NVML is missing or finds none."""
    nvml = _nvml()
    if nvml is None:
        return 0
    try:
        return int(nvml.nvmlDeviceGetCount())
    except Exception:
        return 0


class GpuCollector(Collector):
    """servescope_gpu_* gauges read from NVML at scrape time; yields nothing without a GPU."""

    def __init__(self) -> None:
        self._nvml = _nvml()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nvml = self._nvml
        if nvml is None:
            return

        def family(metric: contract.Metric) -> GaugeMetricFamily:
            return GaugeMetricFamily(metric.name, metric.help, labels=list(metric.labels))

        utilization, used, total, power = (family(m) for m in contract.GPU_METRICS)
        try:
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                label = [str(index)]
                utilization.add_metric(label, nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                used.add_metric(label, float(memory.used))
                total.add_metric(label, float(memory.total))
                power.add_metric(label, nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        except Exception as exc:  # a GPU that vanished or a driver hiccup must not break /metrics
            log.warning("NVML read failed: %s", exc)
        yield from (utilization, used, total, power)
