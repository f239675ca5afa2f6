"""The perf_analyzer load engine (loadtest/engine.py): one perf_analyzer child per step, samples at the end.

perf_analyzer (loadtest/perf_analyzer.py) runs the step's one level for at least the time the step needs
(three measurement windows of a third of it each: its own stability check is turned off, the campaign
judges stability from the samples), then writes its per-request profile export, read here into the
step's samples (loadtest/perf_analyzer_export.py). Its payloads are the campaign's: a perf_analyzer
--input-data JSON written from the payloads Locust would send (token ids in the model's range), or the
campaign's own input_data file. Its report files (command output, export, input data) land in the
step's reports folder. See docs/loadtest.md, "perf_analyzer".
"""

from __future__ import annotations

import json
import math
import shutil
import urllib.request
from pathlib import Path

import grpc
import numpy as np

from loadtest.connection import Connection
from loadtest.engine import GeneratorStatus, StepLoad, ramp_refusal
from loadtest.payload import (
    DATATYPES,
    InputSpec,
    PayloadError,
    build_requests,
    inputs_from_metadata,
    inputs_from_rest_metadata,
)
from loadtest.perf_analyzer import (
    FIXED_STABILITY_PERCENT,
    MEASUREMENT_WINDOWS,
    PerfAnalyzerError,
    Run,
    Step,
    Tls,
    command,
    last_lines,
    locate,
)
from loadtest.perf_analyzer_export import read_export
from loadtest.runner import StepFailed
from servescope.echo import cut, shown
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

NAME = "perf_analyzer"
PAYLOAD_ENTRIES = 256  # distinct samples in the generated --input-data file, cycled by perf_analyzer
START_SLACK_S = 60.0  # its start (metadata, config, connections) and its export, on top of the run
SAMPLES_FILE = "samples-perf_analyzer.bin"
METADATA_TIMEOUT_S = 10.0
assert FIXED_STABILITY_PERCENT > 100  # perf_analyzer measures exactly MEASUREMENT_WINDOWS windows


def model_inputs(load: StepLoad) -> list[InputSpec]:
    """The model's inputs from ModelMetadata, over the step's protocol, TLS, headers and version."""
    connection = load.connection
    if connection.protocol == "http":
        url = connection.base_url(load.target) + connection.model_path(load.model)
        request = urllib.request.Request(url, headers=dict(connection.headers))
        context = connection.ssl_context()
        with urllib.request.urlopen(request, timeout=METADATA_TIMEOUT_S, context=context) as response:
            return inputs_from_rest_metadata(json.loads(response.read()))
    channel = connection.grpc_channel(load.target)
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        answer = stub.ModelMetadata(
            pb.ModelMetadataRequest(name=load.model, version=connection.model_version),
            timeout=METADATA_TIMEOUT_S,
            metadata=connection.metadata(),
        )
    finally:
        channel.close()
    return inputs_from_metadata(answer)


def input_data_document(load: StepLoad, inputs: list[InputSpec]) -> tuple[dict, int]:
    """perf_analyzer's --input-data JSON holding the campaign's generated payloads (one entry per
    sample, without the batch dimension), and the bytes of one request of load.batch_size samples."""
    requests = build_requests(
        load.model,
        inputs,
        batch_size=1,
        count=PAYLOAD_ENTRIES,
        seed=load.seed,
        kind=load.payload,
        ranges=load.value_ranges,
    )
    entries = []
    for request in requests:
        entry = {}
        for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
            array = np.frombuffer(raw, dtype=DATATYPES[tensor.datatype])
            values = array.astype(bool).tolist() if array.dtype.kind == "b" else array.tolist()
            entry[tensor.name] = {"content": values, "shape": list(tensor.shape)[1:]}
        entries.append(entry)
    request_bytes = sum(len(raw) for raw in requests[0].raw_input_contents) * load.batch_size
    return {"data": entries}, request_bytes


def tls_files(connection: Connection) -> Tls | None:
    if not connection.tls:
        return None
    return Tls(
        root_certificates=Path(connection.tls_ca) if connection.tls_ca else None,
        client_certificate=Path(connection.tls_cert) if connection.tls_cert else None,
        client_key=Path(connection.tls_key) if connection.tls_key else None,
    )


def step_of(load: StepLoad, export_file: Path, input_data: str, run_time_s: float) -> Step:
    """The perf_analyzer run for the step's one level, measuring for at least run_time_s."""
    connection, level = load.connection, load.level
    if connection.headers and connection.protocol == "grpc":
        names = ", ".join(shown(name) for name in connection.headers)
        raise StepFailed(
            f"{NAME}: headers ({names}) cannot be sent over gRPC: perf_analyzer 2.48 sends -H headers on "
            "HTTP only; use protocol http, or the locust engine"
        )
    https = connection.protocol == "http" and connection.tls
    return Step(
        model=load.model,
        url=("https://" if https else "") + load.target,
        export_file=export_file,
        protocol=connection.protocol,
        concurrency=level.users if level.mode == "closed" else None,
        request_rate_per_s=level.rate_rps if level.mode == "open" else None,
        distribution=load.arrival,
        streaming=connection.streaming,
        batch=load.batch_size,
        input_data=input_data,
        model_version=connection.model_version or None,
        measurement_interval_ms=max(1, math.ceil(run_time_s * 1000 / MEASUREMENT_WINDOWS)),
        tls=tls_files(connection),
        headers=tuple(f"{name}:{value}" for name, value in connection.headers.items()),
    )


def one_line(exc: PerfAnalyzerError, lines: int = 5) -> str:
    """The error for a step record and a progress line: its cause, then its last output lines."""
    cause = str(exc.args[0])
    head = cause if cause.startswith(NAME) else f"{NAME}: {cause}"
    tail = [cut(line.strip(), 200) for line in exc.lines[-lines:]]
    return head + (f" (its last lines: {' | '.join(tail)})" if tail else "")


class PerfAnalyzerEngineRun:
    """One running perf_analyzer child; its samples are written to samples_dir by finish()."""

    streams_samples = False

    def __init__(self, load: StepLoad, run: Run, step: Step, run_time_s: float, request_bytes: int | None):
        self.load = load
        self.run = run
        self.step = step
        self.timeout_s = run_time_s + START_SLACK_S
        self._status = GeneratorStatus(request_bytes=request_bytes)
        self._finished = False

    def pids(self) -> list[int]:
        return [self.run.pid]

    def alive(self) -> bool:
        return self.run.poll()

    def exit_code(self) -> int | None:
        return self.run.returncode

    def status(self) -> GeneratorStatus:
        return self._status

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(last_lines(self.run.output(), lines)) or "(no output)"

    def finish(self) -> None:
        """Wait for perf_analyzer's end and write its samples; StepFailed (once) with its last lines."""
        if self._finished:
            return
        self._finished = True
        try:
            self.run.wait(self.timeout_s)
            export = read_export(self.step.export_file, self.step.batch)
        except PerfAnalyzerError as exc:
            raise StepFailed(one_line(exc)) from None
        except BaseException:  # Ctrl-C or SIGTERM while waiting: never leave the child running
            self.run.kill()
            raise
        self.load.samples_dir.mkdir(parents=True, exist_ok=True)
        (self.load.samples_dir / SAMPLES_FILE).write_bytes(export.samples.tobytes())


class PerfAnalyzerEngine:
    name = NAME

    def start(self, load: StepLoad, run_time_s: float) -> PerfAnalyzerEngineRun:
        if len(load.levels) > 1:
            raise StepFailed(ramp_refusal(NAME, "load.ramp") or "")
        if load.samples_dir.exists():
            shutil.rmtree(load.samples_dir)
        load.reports_dir.mkdir(parents=True, exist_ok=True)
        prefix = load.reports_dir / load.report_prefix
        try:
            located = locate()
            input_data, request_bytes = self._input_data(load, Path(f"{prefix}-input.json"))
            step = step_of(load, Path(f"{prefix}-export.json"), input_data, run_time_s)
            step.export_file.unlink(missing_ok=True)  # perf_analyzer will not overwrite one
            run = Run(located, command(located.path, step), Path(f"{prefix}-output.txt"))
        except PerfAnalyzerError as exc:
            raise StepFailed(one_line(exc)) from None
        except (PayloadError, ValueError) as exc:
            raise StepFailed(f"{NAME}: {exc}") from None
        return PerfAnalyzerEngineRun(load, run, step, run_time_s, request_bytes)

    @staticmethod
    def _input_data(load: StepLoad, path: Path) -> tuple[str, int | None]:
        """The --input-data argument: the campaign's file, else one written from generated payloads."""
        if load.input_data:
            return str(load.input_data), None
        try:
            inputs = model_inputs(load)
        except grpc.RpcError as exc:
            detail = f"{exc.code().name}: {cut(exc.details() or '', 300)}"
            raise StepFailed(f"{NAME}: ModelMetadata for {shown(load.model)} failed: {detail}") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:  # URLError, HTTPError, a bad answer
            detail = f"{type(exc).__name__}: {cut(str(exc), 300)}"
            raise StepFailed(f"{NAME}: ModelMetadata for {shown(load.model)} failed: {detail}") from None
        document, request_bytes = input_data_document(load, inputs)
        path.write_text(json.dumps(document, separators=(",", ":")))
        return str(path), request_bytes


ENGINE = PerfAnalyzerEngine()
