"""Start one headless Locust test (a single process, or a master and N local workers) as subprocesses."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest import procs
from loadtest.engine import StepLoad
from loadtest.user_classes import USER_CLASSES

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
SHAPEFILE = Path(__file__).resolve().parent / "shape_steps.py"


@dataclass
class LocustSettings:
    """What the locustfile needs (sent as --servescope-config) plus how Locust itself is run."""

    load: StepLoad
    ramp: list[dict[str, float]] = field(default_factory=list)  # the step shape (locust_engine.py)

    @property
    def samples_dir(self) -> Path:
        return self.load.samples_dir

    @property
    def workers(self) -> int:
        return self.load.workers

    @property
    def mode(self) -> str:
        return self.load.level.mode

    def user_class(self) -> str:
        """The locustfile's user class for the mode and the protocol."""
        return USER_CLASSES[(self.load.connection.protocol, self.mode)]

    def locust_users(self) -> int:
        """Locust users: N for closed loop; open loop: one rate-sharing user per worker process."""
        if self.mode == "closed":
            return int(self.load.level.users or 1)
        return max(1, self.workers)

    def config_json(self) -> str:
        load = self.load
        config: dict[str, Any] = {
            "target": load.target,
            "model": load.model,
            "samples_dir": str(load.samples_dir),
            "mode": self.mode,
            "users": self.locust_users(),
            "rate_rps": load.level.rate_rps,
            "arrival": load.arrival,
            "batch_size": load.batch_size,
            "payload": load.payload,
            "seed": load.seed,
            "timeout_s": load.timeout_s,
            "max_inflight": load.max_inflight,
            "value_ranges": load.value_ranges,
            "connections": load.connections,
            "ramp": self.ramp,
            "input_data": load.input_data,
            **load.connection.to_config(),
        }
        return json.dumps(config)


class LocustRun:
    """A running Locust test. `stop()` ends it the way Ctrl-C would (stats, CSV, HTML written)."""

    def __init__(self, settings: LocustSettings, out_dir: Path, prefix: str, run_time_s: float) -> None:
        self.settings = settings
        self.out_dir = out_dir
        self.prefix = prefix
        out_dir.mkdir(parents=True, exist_ok=True)
        settings.samples_dir.mkdir(parents=True, exist_ok=True)
        user_class = settings.user_class()
        users = settings.locust_users()
        files = str(LOCUSTFILE)
        if settings.ramp and settings.mode == "closed":
            files += "," + str(SHAPEFILE)
        common = ["-m", "locust", "-f", files, "--servescope-config", settings.config_json()]
        main = [
            procs.python(),
            *common,
            "--headless",
            "--users",
            str(users),
            "--spawn-rate",
            str(max(users, 1)),
            "--run-time",
            f"{max(1, round(run_time_s))}s",
            "--stop-timeout",
            "0",  # the measurement is over: in-flight calls need not finish
            "--exit-code-on-error",
            "0",
            "--only-summary",
            "--csv",
            str(out_dir / prefix),
            "--html",
            str(out_dir / f"{prefix}.html"),
            "--json-file",
            str(out_dir / prefix),
            "--loglevel",
            "WARNING",
        ]
        self.workers: list[subprocess.Popen[bytes]] = []
        log = out_dir / f"{prefix}.log"
        if settings.workers > 0:
            port = procs.free_port()
            main += [
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(port),
                "--expect-workers",
                str(settings.workers),
                user_class,
            ]
            self.main = procs.spawn(main, log)
            try:
                self._spawn_workers(common, port, user_class, out_dir, prefix)
            except BaseException:
                procs.stop_all(self.processes, grace_s=2.0)
                raise
        else:
            self.main = procs.spawn([*main, user_class], log)
        self.started_s = time.time()

    def _spawn_workers(
        self, common: list[str], port: int, user_class: str, out_dir: Path, prefix: str
    ) -> None:
        for i in range(self.settings.workers):
            worker = [
                procs.python(),
                *common,
                "--worker",
                "--master-host",
                "127.0.0.1",
                "--master-port",
                str(port),
                "--loglevel",
                "WARNING",
                user_class,
            ]
            self.workers.append(procs.spawn(worker, out_dir / f"{prefix}-worker{i}.log"))

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [self.main, *self.workers]

    def alive(self) -> bool:
        return self.main.poll() is None

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGINT to the main process (Locust writes its reports and tells workers to quit), then force."""
        if self.main.poll() is None:
            procs.signal_group(self.main, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.main.wait(timeout=grace_s)
        for worker in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=3.0)
        procs.stop_all(self.processes, grace_s=2.0)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.out_dir / f"{self.prefix}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])
