"""Campaign files (YAML): strict validation into a CampaignConfig, before any load is sent.

Every unknown key, wrong type, out-of-range value or empty sweep is rejected with a message that
names the key (dotted path) and the value, cut to a bounded length (servescope.echo): a campaign file
is untrusted input, and rendering an alias bomb's expansion whole took minutes and gigabytes. The file
is read bounded (MAX_FILE_BYTES) and must be UTF-8 YAML nested at most as deep as Python's recursion
allows. The file format, with defaults, is documented in docs/loadtest.md and shown by
loadtest/campaigns/demo.yaml.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.connection import PROTOCOLS, Connection, ConnectionSettingsError
from loadtest.engine import DEFAULT_ENGINE, ENGINES, LoadLevel, ramp_refusal
from loadtest.payload import PAYLOAD_KINDS
from servescope.echo import one_line, shown
from servescope.settings import BY_NAME, ServeFlags
from servescope.textfile import FileTooLarge, read_bounded_utf8

PERCENTILES = ("p50", "p90", "p95", "p99", "p999")
ON_ERROR = ("continue", "stop")
ARRIVALS = ("constant", "poisson")
REDACTED = "(not recorded)"
MAX_FILE_BYTES = 1 << 20  # a campaign file is a few kB


class CampaignConfigError(ValueError):
    """A campaign file is invalid; the message names the file, the key and the value."""


@dataclass
class CampaignConfig:
    name: str
    models: list[str]
    client_batch_sizes: list[int]
    concurrency: list[int]
    rates_rps: list[float]
    arrival: str
    max_inflight: int
    connections: int
    workers: int
    servers: list[ServeFlags]
    warmup_s: float
    duration_s: float  # the shortest measurement: `stable_windows` windows of duration_s / stable_windows
    max_duration_s: float
    stability_percent: float
    stable_windows: int
    objective_percentile: str
    objective_latency_s: float
    on_error: str
    payload: str
    timeout_s: float
    seed: int
    connection: Connection = field(default_factory=Connection)  # protocol, streaming, TLS, version, headers
    input_data: str | None = None  # perf_analyzer JSON input file: the payloads (instead of `payload`)
    probe_requests: int = 200  # transport probe before the steps, requests per transport (0: none)
    ramp: bool = False  # the load levels of a model and batch size in one generator run, rising
    engine: str = DEFAULT_ENGINE  # the load engine (loadtest/engine.py ENGINES)
    raw: dict[str, Any] = field(default_factory=dict)  # the resolved file content, for campaign.json

    @property
    def window_s(self) -> float:
        return self.duration_s / self.stable_windows

    def load_levels(self) -> list[LoadLevel]:
        return [LoadLevel("closed", users=u) for u in self.concurrency] + [
            LoadLevel("open", rate_rps=r) for r in self.rates_rps
        ]

    def step_count(self, server_settings: int | None = None) -> int:
        servers = len(self.servers) if server_settings is None else server_settings
        return servers * len(self.models) * len(self.client_batch_sizes) * len(self.load_levels())

    def objective(self) -> dict[str, Any]:
        return {"percentile": self.objective_percentile, "latency_s": self.objective_latency_s}


# key -> (default or REQUIRED). Nested sections are dicts of the same form.
REQUIRED = object()
_SCHEMA: dict[str, Any] = {
    "name": "campaign",
    "models": REQUIRED,
    "client_batch_sizes": [1],
    "load": {
        "concurrency": [],
        "rates_rps": [],
        "arrival": "poisson",
        "max_inflight": 1000,
        "connections": 8,
        "workers": 0,
        "protocol": "grpc",
        "streaming": False,
        "tls_ca": None,
        "tls_cert": None,
        "tls_key": None,
        "model_version": "",
        "headers": {},
        "probe_requests": 200,
        "ramp": False,
        "engine": DEFAULT_ENGINE,
    },
    "server": [{"batching": True}],
    "step": {
        "warmup_s": 2.0,
        "duration_s": 6.0,
        "max_duration_s": 20.0,
        "stability_percent": 10.0,
        "stable_windows": 3,
    },
    "objective": {"percentile": "p99", "latency_ms": 50.0},
    "on_error": "continue",
    "payload": "auto",
    "input_data": None,
    "timeout_s": 30.0,
    "seed": 0,
}
_SERVER_KEYS = ServeFlags.keys()


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: Any, why: str) -> CampaignConfigError:
        return CampaignConfigError(f"{self.source}: {key}: {shown(value)} {why}")

    def mapping(self, key: str, value: Any, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, value, "must be a mapping")
        for k in value:
            if k not in allowed:
                name = k if isinstance(k, str) and len(k) <= 80 and k.isprintable() else shown(k)
                where = f"{key}.{name}" if key else name
                raise self.fail(where, value[k], f"is not a known key (known: {', '.join(sorted(allowed))})")
        return value

    def integer(self, key: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, value, "must be an integer")
        if value < minimum:
            raise self.fail(key, value, f"must be at least {minimum}")
        return value

    def number(self, key: str, value: Any, positive: bool = True, minimum: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, value, "must be a number")
        if not math.isfinite(value):
            raise self.fail(key, value, "must be a finite number")
        if positive and value <= 0:
            raise self.fail(key, value, "must be greater than 0")
        if not positive and value < minimum:
            raise self.fail(key, value, f"must be at least {minimum:g}")
        return float(value)

    def string(self, key: str, value: Any, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, value, "must be a non-empty string")
        if choices is not None and value not in choices:
            raise self.fail(key, value, f"must be one of {', '.join(choices)}")
        return value

    def path(self, key: str, value: Any, base: Path | None) -> str | None:
        """An optional file path (relative: to the campaign file's folder) that must exist."""
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, value, "must be a file path")
        path = Path(value)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            raise self.fail(key, value, f"is not a file ({path})")
        return str(path)

    def headers(self, key: str, value: Any) -> dict[str, str]:
        if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
            raise self.fail(key, value, "must be a mapping of header names to values")
        for name, text in value.items():
            if isinstance(text, bool) or not isinstance(text, str | int | float):
                raise self.fail(f"{key}.{name}", text, "must be a string")
        return {name: str(text) for name, text in value.items()}

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, value, "must be true or false")
        return value

    def sweep(self, key: str, value: Any, item: Any, allow_empty: bool = False) -> list[Any]:
        """A list sweep (a scalar is taken as a list of one), without duplicates."""
        values = value if isinstance(value, list) else [value]
        if not values and not allow_empty:
            raise self.fail(key, value, "must be a non-empty list")
        checked = [item(f"{key}[{i}]", v) for i, v in enumerate(values)]
        if len(set(map(repr, checked))) != len(checked):
            raise self.fail(key, value, "has duplicate values")
        return checked


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if "." in key:
            head, rest = key.split(".", 1)
            value = {rest: value}
            key = head
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_campaign_config(
    data: Any,
    source: str = "campaign",
    overrides: dict[str, Any] | None = None,
    base_dir: Path | None = None,
) -> CampaignConfig:
    """Validate parsed YAML (plus overrides, dotted keys allowed: {"step.duration_s": 1.5}).

    Relative file paths (input_data, load.tls_*) are taken from base_dir (the campaign file's folder).
    """
    c = _Checker(source)
    resolved = _resolve(c, data, overrides)
    load, step, objective = resolved["load"], resolved["step"], resolved["objective"]
    models = c.sweep("models", resolved["models"], c.string)
    batch_sizes = c.sweep(
        "client_batch_sizes", resolved["client_batch_sizes"], lambda k, v: c.integer(k, v, 1)
    )
    concurrency = c.sweep(
        "load.concurrency", load["concurrency"], lambda k, v: c.integer(k, v, 1), allow_empty=True
    )
    rates = c.sweep("load.rates_rps", load["rates_rps"], lambda k, v: c.number(k, v), allow_empty=True)
    if not concurrency and not rates:
        raise c.fail("load", load, "needs a non-empty load.concurrency or load.rates_rps")
    ramp = c.boolean("load.ramp", load["ramp"])
    if ramp and concurrency and rates:
        raise c.fail("load.ramp", ramp, "needs one of load.concurrency or load.rates_rps, not both")
    engine_name = c.string("load.engine", load["engine"], tuple(ENGINES))
    refusal = ramp_refusal(engine_name, f"{c.source}: load.ramp") if ramp else None
    if refusal:
        raise CampaignConfigError(refusal)
    servers = c.sweep("server", resolved["server"], lambda k, v: _server_setting(c, k, v))
    warmup_s, duration_s, max_duration_s = _step_timing(c, step)
    latency_ms = c.number("objective.latency_ms", objective["latency_ms"])
    connection = _connection(c, load, base_dir)
    config = CampaignConfig(
        name=c.string("name", resolved["name"]),
        models=models,
        client_batch_sizes=batch_sizes,
        concurrency=concurrency,
        rates_rps=rates,
        arrival=c.string("load.arrival", load["arrival"], ARRIVALS),
        max_inflight=c.integer("load.max_inflight", load["max_inflight"], 1),
        connections=c.integer("load.connections", load["connections"], 1),
        workers=c.integer("load.workers", load["workers"], 0),
        servers=servers,
        warmup_s=warmup_s,
        duration_s=duration_s,
        max_duration_s=max_duration_s,
        stability_percent=c.number("step.stability_percent", step["stability_percent"]),
        stable_windows=c.integer("step.stable_windows", step["stable_windows"], 1),
        objective_percentile=c.string("objective.percentile", objective["percentile"], PERCENTILES),
        objective_latency_s=latency_ms / 1000.0,
        on_error=c.string("on_error", resolved["on_error"], ON_ERROR),
        payload=c.string("payload", resolved["payload"], PAYLOAD_KINDS),
        timeout_s=c.number("timeout_s", resolved["timeout_s"]),
        seed=c.integer("seed", resolved["seed"], 0),
        connection=connection,
        input_data=c.path("input_data", resolved["input_data"], base_dir),
        probe_requests=c.integer("load.probe_requests", load["probe_requests"], 0),
        ramp=ramp,
        engine=engine_name,
        raw=resolved,
    )
    resolved["server"] = [dataclasses.asdict(s) for s in servers]
    # Header values may be credentials: campaign.json records their names only.
    resolved["load"]["headers"] = {name: REDACTED for name in connection.headers}
    return config


def _resolve(c: _Checker, data: Any, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The campaign's document with the overrides merged in and every default filled, keys checked."""
    if data is None:
        data = {}
    c.mapping("", data, set(_SCHEMA))
    if overrides:
        data = _merge(data, overrides)
        c.mapping("", data, set(_SCHEMA))
    if "models" not in data:
        raise c.fail("models", None, "is required (the model names to compare)")
    resolved: dict[str, Any] = {}
    for key, default in _SCHEMA.items():
        if isinstance(default, dict):
            section = c.mapping(key, data.get(key, {}), set(default))
            resolved[key] = {**default, **section}
        else:
            resolved[key] = data.get(key, default)
    return resolved


def _step_timing(c: _Checker, step: dict[str, Any]) -> tuple[float, float, float]:
    """step.warmup_s, step.duration_s and step.max_duration_s, the last at least the second."""
    warmup_s = c.number("step.warmup_s", step["warmup_s"], positive=False)
    duration_s = c.number("step.duration_s", step["duration_s"])
    max_duration_s = c.number("step.max_duration_s", step["max_duration_s"])
    if max_duration_s < duration_s:
        raise c.fail(
            "step.max_duration_s", max_duration_s, f"must be at least step.duration_s ({duration_s:g})"
        )
    return warmup_s, duration_s, max_duration_s


def _connection(c: _Checker, load: dict[str, Any], base_dir: Path | None) -> Connection:
    connection = Connection(
        protocol=c.string("load.protocol", load["protocol"], PROTOCOLS),
        streaming=c.boolean("load.streaming", load["streaming"]),
        tls_ca=c.path("load.tls_ca", load["tls_ca"], base_dir),
        tls_cert=c.path("load.tls_cert", load["tls_cert"], base_dir),
        tls_key=c.path("load.tls_key", load["tls_key"], base_dir),
        model_version=_version(c, load["model_version"]),
        headers=c.headers("load.headers", load["headers"]),
    )
    try:
        connection.check()
    except ConnectionSettingsError as exc:
        raise CampaignConfigError(f"{c.source}: load: {exc}") from exc
    return connection


def _version(c: _Checker, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise c.fail("load.model_version", value, "must be a version (a string or a positive integer)")
    return str(value)


def _server_setting(c: _Checker, key: str, value: Any) -> ServeFlags:
    """One `servers` entry, each value checked against its setting's definition (servescope/settings.py)."""
    c.mapping(key, value, _SERVER_KEYS)
    kwargs: dict[str, Any] = {}
    for name, v in value.items():
        setting, where = BY_NAME[name], f"{key}.{name}"
        if setting.switch:
            kwargs[name] = c.boolean(where, v)
        elif setting.choices:
            kwargs[name] = c.string(where, v, setting.choices)
        elif setting.auto and v == "auto":
            kwargs[name] = v
        else:
            kwargs[name] = c.integer(where, v, setting.low or 0)
            if setting.high is not None and v > setting.high:
                raise c.fail(where, v, f"must be at most {setting.high}")
    return ServeFlags(**kwargs)


def load_campaign_config(path: Path | str, overrides: dict[str, Any] | None = None) -> CampaignConfig:
    """Read and validate a campaign YAML file. Raises CampaignConfigError naming key and value."""
    import yaml

    path = Path(path)
    try:
        text = read_bounded_utf8(path, MAX_FILE_BYTES)
    except OSError as exc:
        raise CampaignConfigError(f"{path}: cannot read campaign file: {exc.strerror}") from exc
    except FileTooLarge as exc:
        raise CampaignConfigError(f"{path}: larger than {MAX_FILE_BYTES} bytes, not a campaign file") from exc
    except UnicodeDecodeError as exc:
        byte = shown(exc.object[exc.start : exc.start + 1])
        raise CampaignConfigError(f"{path}: not UTF-8 text (byte {byte} at offset {exc.start})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CampaignConfigError(f"{path}: not valid YAML: {one_line(str(exc))}") from exc
    except RecursionError as exc:
        raise CampaignConfigError(f"{path}: not a campaign file: YAML nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise CampaignConfigError(f"{path}: not a campaign file: {one_line(str(exc))}") from exc
    return parse_campaign_config(data, str(path), overrides, base_dir=path.parent)
