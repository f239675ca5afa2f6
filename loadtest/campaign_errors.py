"""The two ways a campaign ends early, shared by the campaign runner and its step loop."""

from __future__ import annotations

from pathlib import Path


class CampaignError(RuntimeError):
    """The campaign cannot start or go on (bad repository, output in the way, server will not start)."""


class CampaignInterrupted(Exception):
    """Ctrl-C or SIGTERM: finished steps are on disk and campaign.json says interrupted."""

    def __init__(self, folder: Path, done: int, total: int) -> None:
        super().__init__(f"interrupted after {done} of {total} steps; finished steps are in {folder}")
        self.folder, self.done, self.total = folder, done, total
