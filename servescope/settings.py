"""Server settings, both ways: the `servescope serve` flags that ask for them, and how a running server's
ModelConfig says what it really runs (results.ServerSettings, the step records' copy).

Each server setting is defined once, in `SETTINGS` (name, flag, environment variable, bounds, default,
help, unit); server/cli.py's flags, the config.pbtxt merge (server/app.py), the batcher's checks
(server/batcher.py), `ServeFlags.argv` and the flags recommendations print (analysis/) are derived from
it, so a renamed flag is renamed everywhere. `ServeFlags` is the one builder of a `servescope serve`
command line for a setting; the campaign runner and the peer benchmark both use it. A server reports
the settings it runs in its ModelConfig (RPC ModelConfig): Triton's fields for batching and instances,
and `parameters` (PARAM_*) for what Triton's config has no field for. `settings_from_config` reads them
back the same way for any KServe v2 server that answers ModelConfig, servescope or not.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from servescope.echo import shown
from servescope.protocol import model_config_pb2 as mc
from servescope.results import ServerSettings

PARAM_ADAPTIVE_DELAY = "servescope.adaptive_delay"
PARAM_INTRA_OP_THREADS = "servescope.intra_op_threads"
PARAM_WORKERS = "servescope.workers"
DEVICES = ("auto", "cpu", "cuda")
ENV_PREFIX = "SERVESCOPE_"


@dataclass(frozen=True)
class Setting:
    """One `servescope serve` setting. `name` is its ServeFlags / ServerOptions field; a `switch` is a
    bool that is on unless its flag (--no-...) is given; others take an integer in low..high, "auto"
    where `auto`, or one of `choices`. `default` is the built-in default as the flag spells it; None
    takes `config_field` from the model's config.pbtxt."""

    name: str
    flag: str
    help: str
    default: str | None = None
    unit: str = ""
    low: int | None = None
    high: int | None = None
    zero_means: str = ""  # what 0 means, where it is special ("unbounded", "no timeout")
    auto: bool = False
    choices: tuple[str, ...] = ()
    switch: bool = False
    config_field: str = ""  # the config.pbtxt field it overrides (dotted path), if any
    metavar: str | None = None

    @property
    def env(self) -> str:
        """The environment variable that sets the flag's default."""
        return ENV_PREFIX + self.flag.removeprefix("--").upper().replace("-", "_")

    def help_text(self) -> str:
        """The flag's argparse help: what it does, its unit and its default. "%(default).0s" shows
        nothing; it only keeps argparse's ArgumentDefaultsHelpFormatter from adding "(default: None)"
        where config.pbtxt decides (or "(default: True)" for a --no-... switch)."""
        if self.switch:
            return self.help + "%(default).0s"
        unit = f"{self.unit}; " if self.unit else ""
        default = (
            "%(default)s" if self.default is not None else f"config.pbtxt {self.config_field}%(default).0s"
        )
        return f"{self.help} ({unit}default: {default})"

    def parse(self, text: str) -> int | str:
        """The flag's value from its text (argparse's `type`): ValueError naming what is wrong."""
        if self.choices or (self.auto and text == "auto"):
            return text
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{shown(text)} is not an integer{' or auto' if self.auto else ''}") from None
        if self.low is not None and value < self.low:
            raise ValueError(
                f"{value} is not a positive integer" if self.low == 1 else f"{value} is negative"
            )
        return value

    def check(self, value: Any, name: str | None = None) -> None:
        """Refuse a value outside the bounds: ValueError "<name> must be in low..high, got <value>"."""
        name = name or self.name
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {value!r}")
        zero = f" (0: {self.zero_means})" if self.zero_means else ""
        if self.high is None and self.low is not None and value < self.low:
            raise ValueError(f"{name} must be >= {self.low}{zero}, got {value}")
        if self.high is not None and not (self.low or 0) <= value <= self.high:
            raise ValueError(f"{name} must be in {self.low or 0}..{self.high}{zero}, got {value}")

    def argv_for(self, value: Any) -> list[str]:
        """The command-line words that ask for `value` ([] for None or a switch left on)."""
        if self.switch:
            return [] if value in (True, None) else [self.flag]
        return [] if value is None else [self.flag, str(value)]

    def flag_for(self, value: Any) -> str:
        """The command-line form, e.g. "--max-queue-delay-us 600"."""
        return " ".join(self.argv_for(value))


# The settings. Their upper bounds hold for config.pbtxt values too (refused at start-up): a lone request
# waits at most the queue delay, so a delay of years would never run it; a queue timeout over an hour is
# a mistake, not a policy.
# fmt: off
BATCHING = Setting("batching", "--no-batching", "run every request as its own batch (for comparisons)",
                   switch=True)
ADAPTIVE_DELAY = Setting(
    "adaptive_delay", "--no-adaptive-delay", "always wait out --max-queue-delay-us for company, as Triton "
    "does, even when the arrival rate says no other request will come in time", switch=True)
MAX_BATCH_SIZE = Setting(
    "max_batch_size", "--max-batch-size", "most samples in one executed batch", unit="samples", low=1,
    high=65536, config_field="max_batch_size")
MAX_QUEUE_DELAY_US = Setting(
    "max_queue_delay_us", "--max-queue-delay-us", "how long a request may wait for company once a batch "
    "could run", unit="microseconds", low=0, high=10_000_000,
    config_field="dynamic_batching.max_queue_delay_microseconds")
MAX_QUEUE_SIZE = Setting(
    "max_queue_size", "--max-queue-size", "requests queued per model before RESOURCE_EXHAUSTED, 0 unbounded",
    unit="requests", low=0, zero_means="unbounded",
    config_field="dynamic_batching.default_queue_policy.max_queue_size")
QUEUE_TIMEOUT_US = Setting(
    "queue_timeout_us", "--queue-timeout-us", "a request still queued this long is refused UNAVAILABLE and "
    "never run (every model; 0: no timeout)", unit="microseconds", low=0, high=3_600_000_000,
    zero_means="no timeout",
    config_field="dynamic_batching.default_queue_policy.default_timeout_microseconds")
INSTANCES = Setting(
    "instances", "--instances", "concurrent batch executions per model", unit="executions", low=1,
    high=64, config_field="instance_group count")
INTRA_OP_THREADS = Setting(
    "intra_op_threads", "--intra-op-threads", "ONNX Runtime threads per execution (0: half the CPU cores / "
    "(instances x workers), 1 to 4)", default="0", unit="threads", low=0)
DEVICE = Setting("device", "--device", "auto: CUDA when NVML finds a GPU and the CUDA provider comes up, "
                 "else CPU", default="auto", choices=DEVICES)
WORKERS = Setting(
    "workers", "--workers", "server processes sharing the gRPC port, each with its own event loop, batchers "
    "and sessions (auto: one per two available cores, 1 to 8; at most 2 on a GPU)", default="auto",
    unit="processes", low=1, auto=True, metavar="N|auto")
# fmt: on

# Every setting defined here, in the order ServeFlags.argv writes them.
SETTINGS: tuple[Setting, ...] = (
    BATCHING, ADAPTIVE_DELAY, MAX_BATCH_SIZE, MAX_QUEUE_DELAY_US, MAX_QUEUE_SIZE, QUEUE_TIMEOUT_US,
    INSTANCES, INTRA_OP_THREADS, DEVICE, WORKERS,
)  # fmt: skip
BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


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
        """The `servescope serve` flags for this configuration (SETTINGS spells them)."""
        return serve_flags_argv(dataclasses.asdict(self))

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


def serve_flags_argv(values: dict[str, Any]) -> list[str]:
    """The `servescope serve` flags for settings by name (ServeFlags or Change names), in SETTINGS order.
    KeyError for a name that is no setting."""
    unknown = set(values) - set(BY_NAME)
    if unknown:
        raise KeyError(f"not a server setting: {', '.join(sorted(unknown))}")
    return [
        word
        for setting in SETTINGS
        if setting.name in values
        for word in setting.argv_for(values[setting.name])
    ]


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
