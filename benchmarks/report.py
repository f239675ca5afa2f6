"""What the served benchmarks share around their measurements: the one-line error for a model that is not
in the repository, what every JSON results file starts with (the command, when, the machine) and how it is
written, so that two results files compare field for field."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


def model_missing(prog: str, repository: Path, model: str) -> bool:
    """True, after one line on stderr saying how to make one, when `model` is not in `repository`."""
    if (repository / model / "config.pbtxt").is_file():
        return False
    print(
        f"{prog}: error: {repository / model}: no such model; make a repository "
        "with `servescope export --output models` or pass --model-repository",
        file=sys.stderr,
    )
    return True


def run_header(started: float) -> dict[str, Any]:
    """The command line, the start (`time.time()` seconds, written as UTC) and the machine it ran on."""
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }


def write_report(report: dict[str, Any], output: Path) -> None:
    """The results file, indented JSON, its folder made when missing; says where it went."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {output}")
