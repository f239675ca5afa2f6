"""Time budgets for the GPU script: one deadline for the whole run, a share of it per section.

A lent GPU machine gives one run a few minutes; every section checks its deadline before each
measured point, so the script ends inside its budget whatever the machine's speed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Budget:
    """A deadline `total_s` seconds after creation; `section(share)` hands out part of what is left."""

    total_s: float
    clock: Callable[[], float] = time.monotonic
    started_s: float = field(init=False)

    def __post_init__(self) -> None:
        if self.total_s <= 0:
            raise ValueError(f"budget total_s must be > 0, got {self.total_s}")
        self.started_s = self.clock()

    def left_s(self) -> float:
        return max(0.0, self.started_s + self.total_s - self.clock())

    def elapsed_s(self) -> float:
        return self.clock() - self.started_s

    def section(self, name: str, seconds: float) -> Section:
        """A section of at most `seconds`, never past the whole run's deadline."""
        return Section(name, min(seconds, self.left_s()), self.clock)


@dataclass
class Section:
    """One section's deadline, with progress lines on stdout."""

    name: str
    budget_s: float
    clock: Callable[[], float] = time.monotonic
    started_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.started_s = self.clock()
        self.say(f"start, budget {self.budget_s:.0f} s")

    def left_s(self) -> float:
        return max(0.0, self.started_s + self.budget_s - self.clock())

    def elapsed_s(self) -> float:
        return self.clock() - self.started_s

    def expired(self) -> bool:
        return self.left_s() <= 0.0

    def say(self, message: str) -> None:
        print(f"[{self.name} {self.elapsed_s():6.1f}s] {message}", flush=True)
        sys.stdout.flush()
