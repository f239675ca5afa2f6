"""What the verdict rules and the recommendations look at: the series (Context) and its peak step with the
figures every rule reads (Situation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from analysis.batch_curve import BatchCurve
from analysis.batching import BatchFit, BatchingAnalysis
from analysis.consistency import Flag
from analysis.curves import Curve, Objective, Point
from analysis.decompose import Decomposition
from analysis.fmt import ms
from analysis.quantization import Comparison
from analysis.steps import batch_size_mean, describe_load, latency_at, offered_load
from analysis.thresholds import HOST_BUSY
from analysis.utilization import Correlation, UtilizationPoint
from servescope.results import SERVER_REMOTE, StepRecord, TransportProbe


@dataclass
class Context:
    """Everything the rules look at for one series."""

    curve: Curve
    steps: list[StepRecord]
    decompositions: dict[int, Decomposition]
    flags: list[Flag]
    batching: BatchingAnalysis
    utilization: dict[int, UtilizationPoint]
    comparisons: list[Comparison]
    objective: Objective
    correlation: Correlation | None = None  # utilization vs throughput over the model's steps
    loopback: bool = True  # the load generator reached the server on this machine's loopback
    batch_curves: dict[str, BatchCurve] = field(default_factory=dict)  # by model
    transport: TransportProbe | None = None  # campaign.json: what a request costs over each transport


class Situation:
    """The series at its peak step (its highest offered load), where a bottleneck shows most."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.peak = max(ctx.steps, key=lambda s: (offered_load(s), s.step_index))
        self.parts = ctx.decompositions[self.peak.step_index]
        self.util = ctx.utilization[self.peak.step_index]
        self.objective = ctx.objective
        self.fit: BatchFit | None = ctx.batching.fits.get(self.peak.model)
        self.batch_curve: BatchCurve | None = ctx.batch_curves.get(self.peak.model)

    @property
    def at(self) -> str:
        """How reasons name the peak step."""
        peak = self.peak
        return f"step {peak.step_index} ({describe_load(peak)}, the highest load of this series)"

    @cached_property
    def latency_s(self) -> float:
        """The objective's percentile at the peak step."""
        return latency_at(self.peak, self.objective.percentile)

    def share(self, component: str) -> float:
        """A component's share of the mean latency at the peak (0 when the server was not scraped)."""
        return self.parts.share(component) or 0.0

    @property
    def shares(self) -> str:
        return (
            f"queueing {self.share('queueing_s'):.0%}, batch window {self.share('batching_delay_s'):.0%}, "
            f"compute {self.share('compute_s'):.0%}, rest {self.share('rest_s'):.0%} of the "
            f"{ms(self.parts.client_mean_s)} mean latency"
        )

    @property
    def mean_batch(self) -> float:
        return batch_size_mean(self.peak) or 0.0

    @property
    def requests_per_batch(self) -> float:
        """Requests (not samples) per executed batch: client batches do not count as company."""
        return self.mean_batch / max(self.peak.client_batch_size, 1)

    @property
    def device(self) -> str:
        return self.peak.server_settings.device or "cpu"

    @property
    def cores(self) -> str:
        util = self.util
        if self.peak.cpu.server_process == SERVER_REMOTE:
            return "the server is remote: its CPU is not measured here"
        if util.server_cores is None or not util.machine_cores:
            return "host CPU not recorded"
        return (
            f"server {util.server_cores:.2f} + generator {util.generator_cores or 0:.2f} "
            f"of {util.machine_cores} cores"
        )

    @property
    def knee(self) -> Point | None:
        curve = self.ctx.curve
        return next((p for p in curve.points if p.step_index == curve.knee_step_index), None)

    # ---- the machine and the server's own load at the peak --------------------------------------------

    @property
    def workers(self) -> int:
        return self.peak.server_settings.workers or 1

    @property
    def slots(self) -> int:
        """Concurrent batch executions of the whole server: instances x workers."""
        return (self.peak.server_settings.instances or 1) * self.workers

    @property
    def uncontended_compute(self) -> str | None:
        """Why busy compute slots are no limit at this load, or None: a closed loop of no more users than
        compute slots never asks a slot for two requests at once, so the slots' busy share is the users'
        own cycle (mostly compute), not a queue; only said with the machine accounting's evidence that
        the server's process tree left CPU unused (its CPU measured on this machine)."""
        load, cpu, cores = self.peak.load, self.peak.cpu, self.available_cores
        if load.mode != "closed" or not load.users or load.users > self.slots:
            return None
        if cpu.server_process == SERVER_REMOTE or cpu.server_cores is None or not cores:
            return None
        if cpu.server_cores >= HOST_BUSY * cores:
            return None
        users = f"{load.users} user{'s' if load.users != 1 else ''}"
        return (
            f"{users} on {self.slots} compute slot{'s' if self.slots != 1 else ''} never asked a slot for "
            f"two requests at once: the slots' busy share is the users' own cycle, not a queue; the "
            f"server used {cpu.server_cores:.2f} of {cores} cores"
        )

    @property
    def available_cores(self) -> int | None:
        cpu = self.peak.cpu
        return cpu.server_available_cores or cpu.machine_cores or self.util.machine_cores

    @property
    def compute_busy(self) -> float | None:
        """Share of the step the compute slots were executing batches."""
        server, peak = self.peak.server, self.peak
        if server is None or server.compute_mean_s is None or peak.duration_s <= 0:
            return None
        return server.compute_mean_s * server.batches / (peak.duration_s * self.slots)

    @property
    def loop_cores(self) -> float | None:
        """The busiest event-loop thread, in cores (measured when the campaign ran the server)."""
        return self.peak.cpu.server_loop_cores

    @property
    def loop_demand(self) -> float | None:
        """The busiest event loop's demand for CPU, in cores: the time it ran plus the time it was
        runnable but waited for a CPU. Near 1 the loop is saturated, whether or not it got the CPU."""
        cpu = self.peak.cpu
        if cpu.server_loop_cores is None:
            return None
        return cpu.server_loop_cores + (cpu.server_loop_wait_share or 0.0)

    @property
    def loop_lag_s(self) -> float | None:
        """The busiest worker's mean event-loop timer lateness (from the server's metrics)."""
        server = self.peak.server
        if server is None or not server.loop_lag_count:
            return None
        lags = [server.loop_lag_s_sum.get(w, 0.0) / n for w, n in server.loop_lag_count.items() if n > 0]
        return max(lags, default=None)

    @property
    def request_bytes(self) -> int | None:
        return self.peak.client.request_bytes if self.peak.client is not None else None

    @property
    def generator_delay_s(self) -> float | None:
        return self.peak.client.delay_mean_s if self.peak.client is not None else None

    def per_request_cores(self, cores: float | None) -> float | None:
        """CPU seconds per answered request for a figure in cores."""
        rps = self.peak.requests_per_s
        return cores / rps if cores is not None and rps > 0 else None

    @property
    def machine_rps(self) -> float | None:
        """Requests/s the available cores allow at today's CPU per request (server, and the generator when
        it shares the machine): the ceiling no server setting can lift."""
        return self.machine_rps_saving(0.0)

    def machine_rps_saving(self, saved_s: float) -> float | None:
        """machine_rps once a change saves `saved_s` CPU seconds per request (compute that batching
        shares among a batch's requests, say); never below today's CPU outside compute."""
        cpu = self.peak.cpu
        per = self.per_request_cores(cpu.server_cores)
        if per is None or not self.available_cores:
            return None
        if self.ctx.loopback:
            per += self.per_request_cores(cpu.generator_cores) or 0.0
        per -= min(max(saved_s, 0.0), per / 2)
        return self.available_cores / per if per > 0 else None
