"""In-process ONNX Runtime on one device: which provider runs each node, and throughput by batch size
with I/O binding off and on, and with CUDA graphs where the device is CUDA.

Model-agnostic: inputs come from the repository entry's config (each input filled with its lowest valid
value, as the server's warm-up does); the session options are the server's own (server/model.py).
"""

from __future__ import annotations

import collections
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu.budget import Section

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
MODES = ("plain", "io_binding", "cuda_graph")
CUDA_GRAPH_SKIP_CPU = (
    "CUDA graphs: skipped on device cpu (only the CUDA execution provider captures graphs; "
    "measured on cuda only)"
)


@dataclass
class Placement:
    """What one model's session runs on: the providers it kept and the provider of every executed node."""

    model: str
    providers: list[str]
    nodes_by_provider: dict[str, int]
    cpu_ops: list[str]  # op types of the nodes that ran on the CPU
    warning: str | None = None
    error: str | None = None


@dataclass
class Point:
    """One measured (model, mode, batch size): median latency over at least 5 runs."""

    model: str
    mode: str
    batch_size: int
    runs: int
    p50_s: float
    inferences_per_s: float  # batch / p50: the median resists other processes' spikes


@dataclass
class InProcessResult:
    device: str
    batch_sizes: list[int]
    placements: list[Placement] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per thing not measured, with why

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def session_options(ort: Any, profile_dir: str | None = None) -> Any:
    """The server's session options (server/model.py create_session), profiling on when asked."""
    from server.model import default_intra_op_threads

    options = ort.SessionOptions()
    options.intra_op_num_threads = default_intra_op_threads(1)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / "profile")
    return options


def providers_for(device: str, cuda_graph: bool = False) -> list[Any]:
    if device == "cpu":
        return [CPU]
    return [(CUDA, {"enable_cuda_graph": "1"} if cuda_graph else {}), CPU]


def sample_inputs(model_dir: Path, batch_size: int) -> dict[str, np.ndarray]:
    """Inputs of a batch size from config.pbtxt, each filled with its lowest valid value (as warm-up)."""
    from server.model import tensor_specs
    from servescope.repository import read_model

    inputs, _ = tensor_specs(read_model(model_dir))
    return {
        spec.name: np.full(
            (batch_size, *(d if d > 0 else 1 for d in spec.dims)), spec.min_value or 0, dtype=spec.dtype
        )
        for spec in inputs
    }


def model_file(model_dir: Path) -> Path:
    from servescope.repository import read_model

    entry = read_model(model_dir)
    return entry.model_file(max(entry.versions))


def placement(ort: Any, model_dir: Path, device: str) -> tuple[Placement, Any]:
    """Load the model, run batch 1 once with profiling on, and count executed nodes per provider.

    session.get_providers() says what the session kept; only the profile says where each node ran
    (a CUDA session still runs nodes that CUDA has no kernel for on the CPU).
    """
    name = model_dir.name
    with tempfile.TemporaryDirectory(prefix="ort-profile-") as folder:
        try:
            session = ort.InferenceSession(
                str(model_file(model_dir)), session_options(ort, folder), providers=providers_for(device)
            )
        except Exception as exc:  # ONNX Runtime's own error types: the model does not load here
            return Placement(name, [], {}, [], error=" ".join(str(exc).split())[:300]), None
        session.run(None, sample_inputs(model_dir, 1))
        events = json.loads(Path(session.end_profiling()).read_text())
    counts: collections.Counter[str] = collections.Counter()
    cpu_ops: set[str] = set()
    for event in events:
        args = event.get("args", {})
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            provider = args.get("provider", "unknown")
            counts[provider] += 1
            if provider == CPU:
                cpu_ops.add(args.get("op_name", "?"))
    providers = session.get_providers()
    warning = None
    if device == "cuda" and providers[0] != CUDA:
        warning = f"{name}: the CUDA execution provider did not come up (providers {providers})"
    elif device == "cuda" and counts.get(CPU):
        warning = (
            f"{name}: {counts[CPU]} of {sum(counts.values())} nodes fall back to the CPU "
            f"(ops {sorted(cpu_ops)}): each costs a copy between host and device"
        )
    # A fresh session without profiling measures; the profiled one would time every node.
    session = ort.InferenceSession(
        str(model_file(model_dir)), session_options(ort), providers=providers_for(device)
    )
    return Placement(name, providers, dict(counts), sorted(cpu_ops), warning), session


def _time(run: Any, seconds: float) -> tuple[int, float]:
    """Runs and median seconds of `run()` for `seconds` (at least 5 runs, after 3 unmeasured)."""
    for _ in range(3):
        run()
    latencies = []
    stop_s = time.perf_counter() + seconds
    while time.perf_counter() < stop_s or len(latencies) < 5:
        start = time.perf_counter()
        run()
        latencies.append(time.perf_counter() - start)
    return len(latencies), float(np.median(latencies))


def _plain(session: Any, inputs: dict[str, np.ndarray]) -> Any:
    return lambda: session.run(None, inputs)


def _io_binding(session: Any, inputs: dict[str, np.ndarray]) -> Any:
    """The server's CUDA path (server/model.py _run_io_binding): host inputs bound, outputs to host."""
    outputs = [o.name for o in session.get_outputs()]

    def run() -> Any:
        binding = session.io_binding()
        for name, array in inputs.items():
            binding.bind_cpu_input(name, array)
        for name in outputs:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    return run


class GraphRunner:
    """A CUDA-graph session: one captured graph per batch size (gpu_graph_id), inputs and outputs in
    fixed device buffers; each run copies the host batch in place, replays, and copies the output out."""

    def __init__(self, ort: Any, model_dir: Path) -> None:
        self.ort = ort
        self.model_dir = model_dir
        self.session = ort.InferenceSession(
            str(model_file(model_dir)), session_options(ort), providers=providers_for("cuda", True)
        )
        self.graphs = 0

    def runner(self, inputs: dict[str, np.ndarray]) -> Any:
        ort, session = self.ort, self.session
        self.graphs += 1
        options = ort.RunOptions()
        options.add_run_config_entry("gpu_graph_id", str(self.graphs))
        binding = session.io_binding()
        device_inputs = {}
        for name, array in inputs.items():
            device_inputs[name] = ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0)
            binding.bind_ortvalue_input(name, device_inputs[name])
        batch = next(iter(inputs.values())).shape[0]
        device_outputs = []
        for output in session.get_outputs():
            shape = [batch, *(d if isinstance(d, int) and d > 0 else 1 for d in output.shape[1:])]
            dtype = np.float16 if "float16" in output.type else np.float32
            value = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, "cuda", 0)
            binding.bind_ortvalue_output(output.name, value)
            device_outputs.append(value)

        def run() -> Any:
            for name, array in inputs.items():
                device_inputs[name].update_inplace(array)
            session.run_with_iobinding(binding, options)
            return [value.numpy() for value in device_outputs]

        return run


def measure(
    repository: Path, models: list[str], device: str, batch_sizes: list[int], section: Section
) -> InProcessResult:
    """Placement for every model, then each (model, mode, batch size) while the section has time."""
    import onnxruntime as ort

    result = InProcessResult(device=device, batch_sizes=list(batch_sizes))
    modes = ["plain", "io_binding"] + (["cuda_graph"] if device == "cuda" else [])
    if device != "cuda":
        result.skipped.append(CUDA_GRAPH_SKIP_CPU)
        section.say(CUDA_GRAPH_SKIP_CPU)
    sessions = {}
    for model in models:
        found, session = placement(ort, repository / model, device)
        result.placements.append(found)
        if found.error:
            line = f"{model}: does not load on {device}: {found.error}"
            result.skipped.append(line)
            section.say(line)
            continue
        section.say(f"{model}: providers {found.providers}, nodes {found.nodes_by_provider}")
        if found.warning:
            section.say(f"WARNING {found.warning}")
        sessions[model] = session
    planned = len(sessions) * len(modes) * len(batch_sizes)
    # An equal share of the section per point; the measuring adds warm-up and graph capture on top.
    seconds_per_point = max(0.05, min(2.0, 0.6 * section.left_s() / max(1, planned)))
    for model, session in sessions.items():
        graphs = None
        for mode in modes:
            for size in batch_sizes:
                if section.expired():
                    result.skipped.append(f"{model} {mode} batch {size}: section budget spent")
                    continue
                inputs = sample_inputs(repository / model, size)
                try:
                    if mode == "plain":
                        run = _plain(session, inputs)
                    elif mode == "io_binding":
                        run = _io_binding(session, inputs)
                    else:
                        graphs = graphs or GraphRunner(ort, repository / model)
                        run = graphs.runner(inputs)
                    runs, p50_s = _time(run, seconds_per_point)
                except Exception as exc:  # a mode this model or provider cannot do (graph capture)
                    line = f"{model} {mode} batch {size}: failed: {' '.join(str(exc).split())[:300]}"
                    result.skipped.append(line)
                    section.say(line)
                    continue
                result.points.append(Point(model, mode, size, runs, p50_s, size / p50_s))
                section.say(
                    f"{model} {mode:>10} batch {size:>5}: {size / p50_s:>10.0f} inf/s, "
                    f"p50 {p50_s * 1e3:.3f} ms"
                )
    return result
