"""The load-engine seam against a real server: an engine whose samples arrive only when it ends (as
perf_analyzer's per-request export does) gets the same windows, stability and server counts as a
streaming one."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from loadtest.engine import LoadLevel, StepLoad, engine
from loadtest.locust_engine import LocustEngineRun
from loadtest.runner import StepTiming, run_ramp
from loadtest.server_proc import ManagedServer

pytestmark = pytest.mark.slow


class AtTheEndRun(LocustEngineRun):
    """A real Locust run whose samples are held back in a folder of their own until finish()."""

    streams_samples = False

    def __init__(self, load: StepLoad, run_time_s: float, public: Path) -> None:
        super().__init__(load, run_time_s)
        self.public = public

    def finish(self) -> None:
        super().finish()
        self.public.mkdir(parents=True, exist_ok=True)
        for path in self.load.samples_dir.glob("samples-*.bin"):
            if not (self.public / path.name).exists():
                shutil.copy(path, self.public / path.name)


class AtTheEndEngine:
    name = "at-the-end"

    def start(self, load: StepLoad, run_time_s: float) -> AtTheEndRun:
        hidden = dataclasses.replace(load, samples_dir=load.samples_dir.with_name("hidden"))
        return AtTheEndRun(hidden, run_time_s, load.samples_dir)


def test_samples_at_the_end_are_counted_in_the_same_windows(
    running_server: ManagedServer, tmp_path: Path
) -> None:
    load = StepLoad(
        target=running_server.target,
        model="sentiment_fp32",
        levels=[LoadLevel("closed", users=1), LoadLevel("closed", users=2)],
        samples_dir=tmp_path / "raw" / "samples",
        reports_dir=tmp_path / "reports",
        report_prefix="end",
    )
    timing = StepTiming(warmup_s=0.5, window_s=0.5, max_step_s=2.0, stable_windows=2, stability_percent=50.0)
    lines: list[str] = []
    outcomes = run_ramp(AtTheEndEngine(), load, timing, metrics_url=running_server.metrics_url,
                        progress=lines.append, labels=["one", "two"])  # fmt: skip
    assert len(outcomes) == 2
    for label, outcome in zip(["one", "two"], outcomes, strict=True):
        # Every window up to max_step_s was taken live and counted once the samples came. The warm-up
        # ran from the engine's start, so the first windows may still be empty (Locust takes a second or
        # two to start here); an empty window is never stable, so it is never the step's interval.
        assert len(outcome.windows) == 4 and outcome.windows[-1].completed > 0
        assert sum(f"{label}: window {k} measured" in line for line in lines for k in range(1, 5)) == 4
        assert outcome.measured.completed > 0 and outcome.measured.errors_by_code == {}
        assert outcome.measured.duration_s == pytest.approx(1.0, abs=0.1)  # stable_windows windows
        assert outcome.server is not None
        served = outcome.server.requests_by_code["OK"]
        assert abs(served - outcome.measured.completed) <= outcome.measured.throughput_rps, served
        assert outcome.cpu.generator_cores is not None and outcome.cpu.generator_cores > 0
    assert outcomes[1].started_at_s > outcomes[0].started_at_s


def test_a_streaming_engine_and_the_registry_agree(running_server: ManagedServer, tmp_path: Path) -> None:
    load = StepLoad(
        target=running_server.target,
        model="sentiment_fp32",
        levels=[LoadLevel("closed", users=2)],
        samples_dir=tmp_path / "samples",
        reports_dir=tmp_path / "reports",
        report_prefix="stream",
    )
    timing = StepTiming(warmup_s=0.5, window_s=0.5, max_step_s=1.5, fixed=True)
    (outcome,) = run_ramp(engine("locust"), load, timing, progress=lambda _line: None)
    assert len(outcome.windows) == 3 and outcome.measured.completed == sum(
        w.completed for w in outcome.windows
    )
    assert (tmp_path / "reports" / "stream.json").is_file()
