"""What a run prints and how it names its generator reports: a campaign's, or `servescope load`'s.

Both commands run the same step loop (steps.py); they differ only in these lines and in the report
names (`servescope load` runs one generator, whose reports are locust/locust.*).
"""

from __future__ import annotations

from pathlib import Path

from loadtest.campaign_config import CampaignConfig, LoadLevel
from loadtest.records import step_summary
from servescope.results import StepRecord
from servescope.settings import ServeFlags


class CampaignNarration:
    """`servescope campaign`: "step i/N ..." lines, one report set per step (locust/step-NNN.*)."""

    def opening(self, cfg: CampaignConfig, total: int) -> str:
        return f"campaign {cfg.name!r}: {total} steps, probing this machine first"

    def label(
        self, index: int, total: int, model: str, batch_size: int, level: LoadLevel,
        setting: ServeFlags | None, ramp: tuple[int, int] | None,
    ) -> str:  # fmt: skip
        label = f"step {index + 1}/{total} {model} batch {batch_size} {level.label()}"
        return label + (f" [{setting.label()}]" if setting is not None else "")

    def before_run(self, label: str, cfg: CampaignConfig, levels: int) -> str | None:
        return f"{label}: warming up {cfg.warmup_s:g} s"

    def after_step(self, index: int, total: int, label: str, record: StepRecord) -> str:
        return f"step {index + 1}/{total} done: {step_summary(record)}"

    def closing(self, cfg: CampaignConfig, done: int, total: int, output: Path) -> str:
        return f"campaign {cfg.name!r}: {done} of {total} steps recorded in {output}"

    def report_prefix(self, index: int) -> str:
        return f"step-{index:03d}"


class LoadNarration(CampaignNarration):
    """`servescope load`: the level is the label ("ramp i/n: ..." in a ramp), reports locust/locust.*."""

    def opening(self, cfg: CampaignConfig, total: int) -> str:
        first = self.label(0, total, cfg.models[0], cfg.client_batch_sizes[0], cfg.load_levels()[0], None,
                           (0, total) if total > 1 else None)  # fmt: skip
        per_level = f" per level, {total} levels" if total > 1 else ""
        return f"{first}: warming up {cfg.warmup_s:g} s, then measuring {cfg.duration_s:g} s{per_level}"

    def label(
        self, index: int, total: int, model: str, batch_size: int, level: LoadLevel,
        setting: ServeFlags | None, ramp: tuple[int, int] | None,
    ) -> str:  # fmt: skip
        label = f"{model} batch {batch_size} {level.label()}"
        return f"ramp {ramp[0] + 1}/{ramp[1]}: {label}" if ramp is not None else label

    def before_run(self, label: str, cfg: CampaignConfig, levels: int) -> str | None:
        return None  # the opening line said it

    def after_step(self, index: int, total: int, label: str, record: StepRecord) -> str:
        return f"{label}: {step_summary(record)}"

    def closing(self, cfg: CampaignConfig, done: int, total: int, output: Path) -> str:
        return f"results in {output}"

    def report_prefix(self, index: int) -> str:
        return "locust"
