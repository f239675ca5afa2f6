"""The Locust load engine (loadtest/engine.py): headless Locust in subprocesses, samples streamed.

The locustfile's processes flush their samples every 0.2 s and write their own status (late and dropped
arrivals, CPU warnings, setup errors) to status-*.json beside them; Locust's reports (CSV, HTML, JSON,
logs) land in the step's reports folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from loadtest.engine import GeneratorStatus, StepLoad
from loadtest.locust_run import LocustRun, LocustSettings

# Locust's own --run-time on top of what the step needs: the runner waits up to 60 s for the first
# answer (Locust's start and the server's), then finish() ends the run; this is only a backstop.
RUN_TIME_SLACK_S = 90.0


def ramp_schedule(load: StepLoad) -> list[dict[str, float]]:
    """The locustfile's ramp: level i holds until (i + 1) * ramp_phase_s from the start."""
    if load.ramp_phase_s is None or len(load.levels) < 2:
        return []
    return [
        {"until_s": (i + 1) * load.ramp_phase_s, "users": level.users or 1, "rate_rps": level.rate_rps or 0.0}
        for i, level in enumerate(load.levels)
    ]


def locust_settings(load: StepLoad) -> LocustSettings:
    """What the locustfile and the Locust command line need for this load."""
    return LocustSettings(load, ramp_schedule(load))


def read_status(samples_dir: Path) -> GeneratorStatus:
    """The sum of every Locust process's status-*.json (counters from its start)."""
    status = GeneratorStatus()
    for path in samples_dir.glob("status-*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        status.cpu_warning_times += [float(t) for t in data.get("cpu_warning_times", [])]
        status.late += int(data.get("late", 0))
        status.dropped += int(data.get("dropped", 0))
        status.request_bytes = data.get("request_bytes") or status.request_bytes
        if data.get("setup_error"):
            status.setup_errors.add(data["setup_error"])
    return status


class LocustEngineRun:
    """One running Locust test (a process, or a master and its workers)."""

    streams_samples = True

    def __init__(self, load: StepLoad, run_time_s: float) -> None:
        self.load = load
        self.locust = LocustRun(
            locust_settings(load), load.reports_dir, load.report_prefix, run_time_s + RUN_TIME_SLACK_S
        )

    def pids(self) -> list[int]:
        return [process.pid for process in self.locust.processes]

    def alive(self) -> bool:
        return self.locust.alive()

    def exit_code(self) -> int | None:
        return self.locust.main.returncode

    def status(self) -> GeneratorStatus:
        return read_status(self.load.samples_dir)

    def log_tail(self, lines: int = 5) -> str:
        return self.locust.log_tail(lines)

    def finish(self) -> None:
        self.locust.stop()


class LocustEngine:
    name = "locust"

    def start(self, load: StepLoad, run_time_s: float) -> LocustEngineRun:
        if load.samples_dir.exists():
            shutil.rmtree(load.samples_dir)
        return LocustEngineRun(load, run_time_s)


ENGINE = LocustEngine()
