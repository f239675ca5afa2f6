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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servescope.echo import cut, shown

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


PROTOCOLS = ("grpc", "http")
DISTRIBUTIONS = ("constant", "poisson")
# A fixed measurement: perf_analyzer stops once its last 3 windows agree within this percentage, so a
# figure this large makes every step exactly 3 windows of measurement_interval_ms, stable or not (the
# campaign judges stability itself from the per-request samples).
FIXED_STABILITY_PERCENT = 999
MEASUREMENT_WINDOWS = 3


@dataclass(frozen=True)
class Tls:
    """TLS files for perf_analyzer; HTTP TLS needs an https:// url, gRPC TLS any host:port."""

    root_certificates: Path | None = None  # the CA that signed the server's certificate
    client_certificate: Path | None = None  # mutual TLS: the client's chain and key
    client_key: Path | None = None


@dataclass(frozen=True)
class Step:
    """One perf_analyzer run: a closed loop (concurrency) or an open loop (request_rate_per_s).

    export_file must not exist yet (perf_analyzer refuses to overwrite one).
    """

    model: str
    url: str  # host:port (gRPC) or host:port / https://host:port (HTTP)
    export_file: Path
    protocol: str = "grpc"
    concurrency: int | None = None
    request_rate_per_s: float | None = None
    distribution: str = "constant"
    streaming: bool = False  # gRPC ModelStreamInfer, one stream per concurrent request
    async_requests: bool = False  # closed loop from a few threads instead of one thread per request
    batch: int = 1
    input_data: str = "zero"  # "zero", "random" or a JSON file in perf_analyzer's --input-data layout
    model_version: str | None = None
    measurement_interval_ms: int = 1000
    request_count: int | None = None  # measure exactly this many requests instead of the windows
    shared_memory: str = "none"
    tls: Tls | None = None
    headers: tuple[str, ...] = ()  # "name:value", sent with every request (-H)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"perf_analyzer protocol {shown(self.protocol)}: must be one of {PROTOCOLS}")
        if (self.concurrency is None) == (self.request_rate_per_s is None):
            raise ValueError(
                f"perf_analyzer step: give exactly one of concurrency ({shown(self.concurrency)}) "
                f"and request_rate_per_s ({shown(self.request_rate_per_s)})"
            )
        if self.concurrency is not None and not (isinstance(self.concurrency, int) and self.concurrency >= 1):
            raise ValueError(f"perf_analyzer concurrency {shown(self.concurrency)}: must be an integer >= 1")
        if self.request_rate_per_s is not None and not self.request_rate_per_s > 0:
            rate = shown(self.request_rate_per_s)
            raise ValueError(f"perf_analyzer request_rate_per_s {rate}: must be > 0")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"perf_analyzer distribution {shown(self.distribution)}: must be one of {DISTRIBUTIONS}"
            )
        if self.streaming and self.protocol != "grpc":
            raise ValueError(f"perf_analyzer streaming needs protocol 'grpc', not {shown(self.protocol)}")
        for name in ("batch", "measurement_interval_ms"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"perf_analyzer {name} {shown(value)}: must be an integer >= 1")
        if self.request_count is not None and not (
            isinstance(self.request_count, int) and self.request_count >= 1
        ):
            raise ValueError(f"perf_analyzer request_count {shown(self.request_count)}: must be >= 1")
        for header in self.headers:
            if ":" not in header:
                raise ValueError(f"perf_analyzer header {shown(header)}: must be 'name:value'")


def command(binary: Path, step: Step) -> list[str]:
    """perf_analyzer's argument list for a step (the binary first)."""
    argv = [str(binary), "-m", step.model, "-u", step.url, "-i", step.protocol]
    if step.model_version is not None:
        argv += ["-x", step.model_version]
    if step.concurrency is not None:
        argv += ["--concurrency-range", str(step.concurrency)]
        argv += ["--async"] if step.async_requests or step.streaming else ["--sync"]
    else:
        argv += ["--request-rate-range", f"{step.request_rate_per_s:g}"]
        argv += ["--request-distribution", step.distribution]
    if step.streaming:
        argv.append("--streaming")
    argv += ["-b", str(step.batch), "--input-data", step.input_data, "--shared-memory", step.shared_memory]
    argv += ["--measurement-interval", str(step.measurement_interval_ms)]
    if step.request_count is not None:
        argv += ["--request-count", str(step.request_count)]
    else:
        argv += ["--stability-percentage", str(FIXED_STABILITY_PERCENT)]
    argv += _tls_flags(step)
    for header in step.headers:
        argv += ["-H", header]
    argv += ["--profile-export-file", str(step.export_file)]
    return argv


def _tls_flags(step: Step) -> list[str]:
    tls = step.tls
    if tls is None:
        return []
    if step.protocol == "grpc":
        flags = ["--ssl-grpc-use-ssl", "true"]
        files = (
            ("--ssl-grpc-root-certifications-file", tls.root_certificates),
            ("--ssl-grpc-private-key-file", tls.client_key),
            ("--ssl-grpc-certificate-chain-file", tls.client_certificate),
        )
    else:
        flags = ["--ssl-https-verify-peer", "1", "--ssl-https-verify-host", "2"]
        files = (
            ("--ssl-https-ca-certificates-file", tls.root_certificates),
            ("--ssl-https-client-certificate-file", tls.client_certificate),
            ("--ssl-https-private-key-file", tls.client_key),
        )
    for flag, path in files:
        if path is not None:
            flags += [flag, str(path)]
    return flags


@dataclass(frozen=True)
class Finished:
    """A perf_analyzer run that exited 0: its output, its own CPU and wall time."""

    output: str
    cpu_s: float  # user + system CPU of the child (from wait4), for the generator's accounting
    wall_s: float


class Run:
    """A started perf_analyzer child; `pid` is there for the machine accounting while it runs."""

    def __init__(self, located: Located, argv: list[str], output_file: Path) -> None:
        self.argv = argv
        self.output_file = output_file
        self._started_s = time.perf_counter()
        with output_file.open("wb") as sink:
            try:
                self._process = subprocess.Popen(
                    argv, env=located.env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            except OSError as exc:
                raise PerfAnalyzerError(f"perf_analyzer did not start ({argv[0]}): {exc}") from None
        self.pid = self._process.pid
        self._exit: tuple[int, Any] | None = None  # (wait status, rusage) once reaped

    def output(self) -> str:
        return self.output_file.read_bytes().decode("utf-8", errors="replace")

    @property
    def returncode(self) -> int | None:
        """Its exit code once reaped (poll, wait or kill), else None."""
        return self._process.returncode

    def poll(self) -> bool:
        """True while the child runs; once it has exited, reaps it (keeping its rusage for wait())."""
        if self._exit is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self._exit = (status, usage)
                self._process.returncode = os.waitstatus_to_exitcode(status)
        return self._exit is None

    def wait(self, timeout_s: float) -> Finished:
        """Wait for the exit; PerfAnalyzerError (with the last lines) on a timeout or a failure."""
        deadline_s = self._started_s + timeout_s
        while self.poll():
            if time.perf_counter() > deadline_s:
                self.kill()
                raise PerfAnalyzerError(
                    f"perf_analyzer ran past its {timeout_s:g} s timeout and was killed",
                    last_lines(self.output()),
                )
            time.sleep(0.02)
        assert self._exit is not None
        status, usage = self._exit
        code = os.waitstatus_to_exitcode(status)  # reaped with wait4 (for its rusage), not by Popen
        output = self.output()
        if code != 0:
            raise PerfAnalyzerError(
                f"perf_analyzer exited {code}: {failure_line(output)}", last_lines(output)
            )
        return Finished(output, usage.ru_utime + usage.ru_stime, time.perf_counter() - self._started_s)

    def kill(self) -> None:
        """Kill and reap the child if it is still running."""
        if self._exit is None:
            self._process.kill()
            _, status, usage = os.wait4(self.pid, 0)
            self._exit = (status, usage)
            self._process.returncode = os.waitstatus_to_exitcode(status)


def failure_line(output: str) -> str:
    """The line of perf_analyzer's output that says what went wrong (its last line otherwise)."""
    lines = last_lines(output, count=10_000)
    for line in lines:
        lowered = line.lower()
        if "had error:" in lowered or lowered.startswith("error") or "unrecognized option" in lowered:
            return cut(line.strip(), 400)
    for line in lines:
        if line.startswith("Failed"):
            return cut(line.strip(), 400)
    return cut(lines[-1], 400) if lines else "(no output)"


def run(located: Located, step: Step, output_file: Path, timeout_s: float) -> Finished:
    """Run one step to its end (the export lands in step.export_file)."""
    if step.export_file.exists():
        raise PerfAnalyzerError(
            f"perf_analyzer export {step.export_file} exists already (it will not overwrite)"
        )
    started = Run(located, command(located.path, step), output_file)
    try:
        return started.wait(timeout_s)
    except BaseException:  # Ctrl-C or SIGTERM while waiting: never leave the child running
        started.kill()
        raise
