"""The load-engine seam against a real server: an engine whose samples arrive only when it ends (as
perf_analyzer's per-request export does) gets the same windows, stability and server counts as a
streaming one."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import pytest

from loadtest.engine import ENGINES, LoadLevel, StepLoad, engine
from loadtest.locust_engine import LocustEngineRun
from loadtest.runner import StepTiming, run_ramp
from loadtest.server_proc import ManagedServer
from servescope import results
from tests.loadtest.load_command import run_load

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
    """Registered under "at-the-end" by the test that needs it (ENGINE below is what the registry reads)."""

    name = "at-the-end"

    def start(self, load: StepLoad, run_time_s: float) -> AtTheEndRun:
        """Returns once the load is on (its first answer), as an engine whose generator says so would."""
        hidden = dataclasses.replace(
            load, samples_dir=load.samples_dir.parent / f"{load.samples_dir.name}-hidden"
        )
        run = AtTheEndRun(hidden, run_time_s, load.samples_dir)
        deadline_s = time.monotonic() + 60.0
        while not any(p.stat().st_size for p in hidden.samples_dir.glob("samples-*.bin")):
            if not run.alive() or time.monotonic() > deadline_s:
                break  # the runner reports what the generator left
            time.sleep(0.05)
        return run


ENGINE = AtTheEndEngine()


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
        # Every window up to max_step_s was taken live and counted once the samples came.
        assert len(outcome.windows) == 4 and all(w.completed > 0 for w in outcome.windows)
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


def test_a_registered_engine_runs_servescope_load(
    running_server: ManagedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipe for a new engine: its module's ENGINE, one line in ENGINES; `--engine` takes it."""
    monkeypatch.setitem(ENGINES, "at-the-end", "tests.loadtest.test_engines")
    output = tmp_path / "load"
    run_load(output, target=running_server.target, model="sentiment_fp32", users=2, duration_s=1.5,
             warmup_s=0.5, probe_requests=0, metrics_url=running_server.metrics_url,
             engine="at-the-end")  # fmt: skip
    info = results.read_campaign(output)
    (step,) = results.read_steps(output)[0]
    assert info.config["load"]["engine"] == "at-the-end"
    assert step.completed > 0 and step.errors_by_code == {} and len(step.windows) == 3
    assert step.server is not None
    assert abs(step.server.requests_by_code["OK"] - step.completed) <= step.requests_per_s
    assert (output / "at-the-end" / "locust.json").is_file()  # the engine's own reports, under its name
