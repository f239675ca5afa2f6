"""NVIDIA perf_analyzer as a load engine: find the binary, build its command line, run it.

perf_analyzer is Triton's C++ load generator. It comes from the tritonclient 2.48.0 wheel, unpacked
with the two libraries it loads into `<venv>/lib/perf_analyzer/` by
deploy/perf_analyzer/ensure-perf-analyzer.sh (`make perf-analyzer`; `make test` runs it too), or
from a user's own build named by SERVESCOPE_PERF_ANALYZER. `locate()` returns the binary with the
environment its child needs (LD_LIBRARY_PATH set here, never by the user); its per-request export is
read by loadtest/perf_analyzer_export.py. See docs/loadtest.md, "perf_analyzer".
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_BINARY = "SERVESCOPE_PERF_ANALYZER"
BINARY_NAME = "perf_analyzer"
INSTALL_COMMAND = "make perf-analyzer (or: bash deploy/perf_analyzer/ensure-perf-analyzer.sh .venv)"
_LAST_LINES = 12  # lines of perf_analyzer's output an error carries


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer is missing, failed, or printed what cannot be read; `lines` is its last output."""

    def __init__(self, message: str, lines: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.lines = lines

    def __str__(self) -> str:
        head = super().__str__()
        return head if not self.lines else head + "\n" + "\n".join("  | " + line for line in self.lines)


class PerfAnalyzerMissing(PerfAnalyzerError):
    """No perf_analyzer binary where servescope looks; the message says how to install one."""


@dataclass(frozen=True)
class Located:
    """A perf_analyzer binary and the environment to start it with."""

    path: Path
    env: dict[str, str]


def default_folder(prefix: str | None = None) -> Path:
    """Where the install script puts the binary: <venv>/lib/perf_analyzer (the running venv's)."""
    return Path(prefix if prefix is not None else sys.prefix) / "lib" / BINARY_NAME


def locate(environ: Mapping[str, str] | None = None, prefix: str | None = None) -> Located:
    """The binary named by SERVESCOPE_PERF_ANALYZER, else the venv's; PerfAnalyzerMissing otherwise.

    The child's LD_LIBRARY_PATH gets the binary's own folder first: that is where the install script
    puts libcudart.so.12 and libb64.so.0d, and a user's own build keeps working with its libraries
    wherever the caller's LD_LIBRARY_PATH already pointed.
    """
    environ = dict(os.environ if environ is None else environ)
    named = environ.get(ENV_BINARY, "").strip()
    if named:
        path = Path(named).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise PerfAnalyzerMissing(f"{ENV_BINARY}={named}: no executable file there")
    else:
        path = default_folder(prefix) / BINARY_NAME
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise PerfAnalyzerMissing(
                f"perf_analyzer not found at {path}; install it with: {INSTALL_COMMAND}, "
                f"or set {ENV_BINARY}=/path/to/perf_analyzer"
            )
    library_path = [str(path.resolve().parent), environ.get("LD_LIBRARY_PATH", "")]
    environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, library_path))
    return Located(path=path, env=environ)


def last_lines(text: str, count: int = _LAST_LINES) -> tuple[str, ...]:
    """The last non-blank lines of an output, for an error message."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return tuple(lines[-count:])


def version(located: Located, timeout_s: float = 30) -> str:
    """The line `perf_analyzer --version` prints ("Perf Analyzer Version 2.48.0 ..."); checks it starts."""
    try:
        done = subprocess.run(
            [str(located.path), "--version"],
            env=located.env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PerfAnalyzerError(f"{located.path} --version did not run: {exc}") from None
    output = done.stdout + done.stderr
    for line in output.splitlines():
        if line.startswith("Perf Analyzer Version"):
            return line.strip()
    raise PerfAnalyzerError(
        f"{located.path} --version exited {done.returncode} without a version line", last_lines(output)
    )
