"""Server settings, both ways: the `servescope serve` flags that ask for them, and how a running server's
ModelConfig says what it really runs (results.ServerSettings, the step records' copy).

`ServeFlags` is the one builder of a `servescope serve` command line for a setting; the campaign runner
and the peer benchmark both use it. A server reports the settings it runs in its ModelConfig (RPC
ModelConfig): Triton's fields for batching and instances, and `parameters` (PARAM_*) for what Triton's
config has no field for. `settings_from_config` reads them back the same way for any KServe v2 server
that answers ModelConfig, servescope or not.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from servescope.protocol import model_config_pb2 as mc
from servescope.results import ServerSettings

PARAM_ADAPTIVE_DELAY = "servescope.adaptive_delay"
PARAM_INTRA_OP_THREADS = "servescope.intra_op_threads"
PARAM_WORKERS = "servescope.workers"
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ServeFlags:
    """One server configuration to start; None leaves the server's default (config.pbtxt, or auto)."""

    batching: bool = True
    adaptive_delay: bool = True
    max_batch_size: int | None = None
    max_queue_delay_us: int | None = None
    max_queue_size: int | None = None
    instances: int | None = None
    intra_op_threads: int | None = None
    device: str | None = None
    workers: int | str | None = None  # a number, or "auto"

    def argv(self) -> list[str]:
        """The `servescope serve` flags for this configuration (server/cli.py defines them)."""
        args = []
        if not self.batching:
            args.append("--no-batching")
        if not self.adaptive_delay:
            args.append("--no-adaptive-delay")
        values = {
            "--max-batch-size": self.max_batch_size,
            "--max-queue-delay-us": self.max_queue_delay_us,
            "--max-queue-size": self.max_queue_size,
            "--instances": self.instances,
            "--intra-op-threads": self.intra_op_threads,
            "--device": self.device,
            "--workers": self.workers,
        }
        for flag, value in values.items():
            if value is not None:
                args += [flag, str(value)]
        return args

    def label(self) -> str:
        """A short human description, for progress lines."""
        if not self.batching:
            parts = ["batching off"]
        else:
            parts = ["batching on"]
            if self.max_batch_size is not None:
                parts.append(f"max batch {self.max_batch_size}")
            if self.max_queue_delay_us is not None:
                parts.append(f"delay {self.max_queue_delay_us} us")
            if not self.adaptive_delay:
                parts.append("fixed delay")
        if self.instances is not None:
            parts.append(f"{self.instances} instance(s)")
        if self.intra_op_threads is not None:
            parts.append(f"{self.intra_op_threads} thread(s)")
        if self.device is not None:
            parts.append(self.device)
        if self.workers is not None:
            parts.append(f"{self.workers} worker(s)")
        return ", ".join(parts)

    @classmethod
    def keys(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


def serve_argv(
    executable: list[str],
    repository: str,
    models: list[str],
    flags: ServeFlags,
    *,
    host: str = "127.0.0.1",
    grpc_port: int = 0,
    metrics_port: int = 0,
    http_port: int | None = 0,
    ready_file: str | None = None,
) -> list[str]:
    """A whole `servescope serve` command line. `executable` runs the CLI, e.g. [python, "-m", "cli"].
    `http_port` None serves no REST API (--no-http)."""
    args = [*executable, "serve", "--model-repository", repository, "--host", host]
    args += ["--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port)]
    args += ["--no-http"] if http_port is None else ["--http-port", str(http_port)]
    if ready_file is not None:
        args += ["--ready-file", ready_file]
    for model in models:
        args += ["--model", model]
    return args + flags.argv()


def write_parameters(
    config: mc.ModelConfig, *, adaptive_delay: bool, intra_op_threads: int, workers: int
) -> None:
    """Record in a ModelConfig's parameters what Triton's fields cannot say."""
    config.parameters[PARAM_ADAPTIVE_DELAY].string_value = "true" if adaptive_delay else "false"
    config.parameters[PARAM_INTRA_OP_THREADS].string_value = str(intra_op_threads)
    config.parameters[PARAM_WORKERS].string_value = str(workers)


def _parameter(config: mc.ModelConfig, key: str) -> str | None:
    return config.parameters[key].string_value if key in config.parameters else None


def settings_from_config(config: mc.ModelConfig, server: str, device: str | None = None) -> ServerSettings:
    """The settings a server reports in its ModelConfig. `device` is the fallback where no instance group
    says KIND_CPU or KIND_GPU (KIND_AUTO), e.g. taken from the server's metrics."""
    batching = config.HasField("dynamic_batching")
    dynamic = config.dynamic_batching
    groups = list(config.instance_group)
    kinds = {group.kind for group in groups}
    if mc.ModelInstanceGroup.KIND_GPU in kinds:
        device = "cuda"
    elif mc.ModelInstanceGroup.KIND_CPU in kinds:
        device = "cpu"
    adaptive = _parameter(config, PARAM_ADAPTIVE_DELAY)
    threads = _parameter(config, PARAM_INTRA_OP_THREADS)
    workers = _parameter(config, PARAM_WORKERS)
    return ServerSettings(
        batching=batching,
        max_batch_size=int(config.max_batch_size) or None,
        max_queue_delay_us=int(dynamic.max_queue_delay_microseconds) if batching else None,
        preferred_batch_sizes=[int(size) for size in dynamic.preferred_batch_size] if batching else [],
        max_queue_size=int(dynamic.default_queue_policy.max_queue_size) if batching else None,
        # Triton counts an instance group without a count as one instance.
        instances=sum(int(group.count) or 1 for group in groups) or None,
        device=device,
        adaptive_delay=(adaptive == "true") if batching and adaptive is not None else None,
        intra_op_threads=int(threads) if threads is not None and threads.isdigit() else None,
        workers=int(workers) if workers is not None and workers.isdigit() else None,
        server=server,
    )
