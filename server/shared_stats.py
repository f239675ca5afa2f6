"""Triton-style ModelStatistics for the whole server when it runs as several worker processes.

Each worker writes its statistics to `stats-<worker>-<pid>.json` in the server's shared folder (the one
prometheus_client's multiprocess mode uses), at most every PUBLISH_INTERVAL_S and when it stops. A
ModelStatistics call, whichever worker answers it, sums every file with its own live figures, so
statistics add up across workers like counters do (a dead worker's last file still counts). Another
worker's figures can be up to PUBLISH_INTERVAL_S old.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from server.served import Duration, ModelStats

log = logging.getLogger(__name__)

PUBLISH_INTERVAL_S = 0.25
_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def _duration_json(duration: Duration) -> dict[str, int]:
    return {"count": duration.count, "ns": duration.ns}


def _to_json(stats: ModelStats) -> dict[str, Any]:
    # Not dataclasses.asdict: it cannot copy the defaultdict of batch_infer.
    data: dict[str, Any] = {name: _duration_json(getattr(stats, name)) for name in _DURATIONS}
    data.update(
        name=stats.name,
        version=stats.version,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        last_inference_ms=stats.last_inference_ms,
        batch_infer={str(size): _duration_json(d) for size, d in stats.batch_infer.items()},
    )
    return data


def _from_json(data: dict[str, Any]) -> ModelStats:
    stats = ModelStats(str(data["name"]), str(data["version"]))
    for name in _DURATIONS:
        setattr(stats, name, Duration(int(data[name]["count"]), int(data[name]["ns"])))
    stats.inference_count = int(data["inference_count"])
    stats.execution_count = int(data["execution_count"])
    stats.last_inference_ms = int(data["last_inference_ms"])
    for size, duration in data["batch_infer"].items():
        stats.batch_infer[int(size)] = Duration(int(duration["count"]), int(duration["ns"]))
    return stats


def _add(into: ModelStats, other: ModelStats) -> None:
    for name in _DURATIONS:
        mine, theirs = getattr(into, name), getattr(other, name)
        mine.count += theirs.count
        mine.ns += theirs.ns
    into.inference_count += other.inference_count
    into.execution_count += other.execution_count
    into.last_inference_ms = max(into.last_inference_ms, other.last_inference_ms)
    for size, duration in other.batch_infer.items():
        entry = into.batch_infer[size]  # a defaultdict: a new batch size starts at zero
        entry.count += duration.count
        entry.ns += duration.ns


class SharedStats:
    """One worker's side: publish its statistics, and read the whole server's."""

    def __init__(self, folder: Path, worker: int) -> None:
        self.folder = folder
        self.path = folder / f"stats-{worker}-{os.getpid()}.json"
        self._task: asyncio.Task[None] | None = None

    def publish(self, own: list[ModelStats]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps([_to_json(s) for s in own]))
        tmp.replace(self.path)

    def start(self, own: Any) -> None:
        """Publish `own()` (this worker's live statistics) every PUBLISH_INTERVAL_S."""

        async def run() -> None:
            while True:
                await asyncio.sleep(PUBLISH_INTERVAL_S)
                try:
                    self.publish(own())
                except Exception as exc:  # a full disk must not stop the server, nor this task
                    log.warning("cannot publish statistics to %s: %s", self.path, exc)

        self._task = asyncio.get_running_loop().create_task(run(), name="shared-stats")

    async def stop(self, own: list[ModelStats]) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(OSError):
            self.publish(own)

    def whole_server(self, own: list[ModelStats]) -> list[ModelStats]:
        """Every worker's statistics added up, in the order of `own` (this worker's live ones)."""
        totals: dict[str, ModelStats] = {}
        for stats in own:
            total = ModelStats(stats.name, stats.version)
            _add(total, stats)
            totals[stats.name] = total
        for path in sorted(self.folder.glob("stats-*.json")):
            if path == self.path:
                continue
            try:
                others = [_from_json(item) for item in json.loads(path.read_text())]
            except (OSError, ValueError, KeyError, TypeError) as exc:  # a file being replaced
                log.debug("skipping statistics file %s: %s", path, exc)
                continue
            for stats in others:
                if stats.name in totals:
                    _add(totals[stats.name], stats)
        return [totals[stats.name] for stats in own]
