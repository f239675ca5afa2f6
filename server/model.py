"""One model on ONNX Runtime: device choice, session options, warm-up, and batch execution off the loop.

Execution runs in a ThreadPoolExecutor with one worker per instance (concurrent batch executions) over
one shared InferenceSession; ONNX Runtime releases the GIL while it computes, so the event loop keeps
serving the network.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.batcher import Computed
from server.gpu import gpu_count
from servescope.cores import available_cores
from servescope.echo import shown
from servescope.protocol import model_config_pb2 as mc
from servescope.repository import CONFIG_FILE, METADATA_FILE, ModelEntry, RepositoryError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# Triton data types -> (KServe v2 datatype name, numpy dtype).
DATATYPES: dict[int, tuple[str, np.dtype[Any]]] = {
    mc.TYPE_BOOL: ("BOOL", np.dtype(np.bool_)),
    mc.TYPE_UINT8: ("UINT8", np.dtype(np.uint8)),
    mc.TYPE_UINT16: ("UINT16", np.dtype(np.uint16)),
    mc.TYPE_UINT32: ("UINT32", np.dtype(np.uint32)),
    mc.TYPE_UINT64: ("UINT64", np.dtype(np.uint64)),
    mc.TYPE_INT8: ("INT8", np.dtype(np.int8)),
    mc.TYPE_INT16: ("INT16", np.dtype(np.int16)),
    mc.TYPE_INT32: ("INT32", np.dtype(np.int32)),
    mc.TYPE_INT64: ("INT64", np.dtype(np.int64)),
    mc.TYPE_FP16: ("FP16", np.dtype(np.float16)),
    mc.TYPE_FP32: ("FP32", np.dtype(np.float32)),
    mc.TYPE_FP64: ("FP64", np.dtype(np.float64)),
}


class DeviceError(RuntimeError):
    """The requested device cannot be used (for example --device cuda without a working GPU)."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the config declares it (dims without the batch dim)."""

    name: str
    datatype: str
    dtype: np.dtype[Any]
    dims: tuple[int, ...]
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class RuntimeOptions:
    """How sessions run: device ("auto", "cpu", "cuda"), threads, concurrent batch executions, and how many
    worker processes of the server share the machine."""

    device: str = "auto"
    intra_op_threads: int = 0  # 0: default_intra_op_threads(instances * workers)
    instances: int = 1
    workers: int = 1


def default_intra_op_threads(executions: int) -> int:
    """Half the cores shared among the concurrent executions (instances x workers), at most 4 each, at
    least 1.

    The other half stays with gRPC and the event loop, which cost about as much CPU per request as a
    small model's compute. Beyond 4 threads a small model's batches gain little (measured: on 2 cores,
    2 threads cost 1.6x the CPU of 1 thread per batch-1 inference and 1.2-1.5x at batch 8-32).
    """
    return max(1, min(4, available_cores() // (2 * max(1, executions))))


def _value_bound(value: Any, where: str) -> float | None:
    """A metadata.json min_value / max_value: absent, or a finite number (not a bool)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RepositoryError(f"{where}: {shown(value)} must be a finite number")
    return value


def tensor_specs(entry: ModelEntry) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs from config.pbtxt, with value ranges from metadata.json `inputs`.

    Wrong types are refused here, at start-up, naming the file and the field: a range the codec cannot
    compare would otherwise fail every request with INTERNAL.
    """
    config_path, metadata_path = entry.path / CONFIG_FILE, entry.path / METADATA_FILE
    ranges = entry.metadata.get("inputs", {})
    if not isinstance(ranges, dict):
        raise RepositoryError(f"{metadata_path}: inputs: {shown(ranges)} must be an object")

    def spec(kind: str, tensor: mc.ModelInput | mc.ModelOutput, value_range: Any) -> TensorSpec:
        where = f"{config_path}: {kind} {shown(tensor.name)}"
        if tensor.data_type not in DATATYPES:
            name = mc.DataType.Name(tensor.data_type) if tensor.data_type in mc.DataType.values() else ""
            raise RepositoryError(f"{where}: unsupported data_type {name or tensor.data_type}")
        bad_dims = [d for d in tensor.dims if d == 0 or d < -1]
        if bad_dims:
            raise RepositoryError(
                f"{where}: dims {shown(list(tensor.dims))}: {bad_dims[0]} is neither -1 nor >= 1"
            )
        datatype, dtype = DATATYPES[tensor.data_type]
        if not isinstance(value_range, dict):
            raise RepositoryError(
                f"{metadata_path}: inputs.{tensor.name}: {shown(value_range)} must be an object"
            )
        field = f"{metadata_path}: inputs.{tensor.name}"
        low = _value_bound(value_range.get("min_value"), f"{field}.min_value")
        high = _value_bound(value_range.get("max_value"), f"{field}.max_value")
        if low is not None and high is not None and low > high:
            raise RepositoryError(f"{field}: min_value {low} is above max_value {high}")
        return TensorSpec(tensor.name, datatype, dtype, tuple(int(d) for d in tensor.dims), low, high)

    inputs = [spec("input", t, ranges.get(t.name, {})) for t in entry.config.input]
    outputs = [spec("output", t, {}) for t in entry.config.output]
    if not inputs or not outputs:
        raise RepositoryError(f"{config_path}: must declare at least one input and one output")
    return inputs, outputs


def create_session(path: str, device: str, intra_op_threads: int) -> tuple[Any, str]:
    """An InferenceSession on the chosen device and the provider it really runs on.

    CUDA is only requested when NVML finds a GPU: onnxruntime-gpu claims CUDA even without one and
    then logs errors and silently runs on the CPU. The truth is session.get_providers() afterwards.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning intra-op threads would steal the cores that the gRPC threads and the event loop need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    want_cuda = device in ("auto", "cuda") and gpu_count() > 0
    if device == "cuda" and not want_cuda:
        raise DeviceError("--device cuda: NVML finds no GPU on this machine")
    if want_cuda:
        if hasattr(ort, "preload_dlls"):
            try:
                ort.preload_dlls()
            except Exception as exc:  # missing CUDA wheels: the provider check below decides
                log.debug("onnxruntime.preload_dlls failed: %s", exc)
        session = _session(ort, path, options, [CUDA, CPU])
        if session.get_providers()[0] == CUDA:
            return session, CUDA
        if device == "cuda":
            raise DeviceError(f"--device cuda: the CUDA execution provider did not come up for {path}")
        log.warning("a GPU is present but the CUDA execution provider did not come up: using the CPU")
    return _session(ort, path, options, [CPU]), CPU


def _session(ort: Any, path: str, options: Any, providers: list[str]) -> Any:
    try:
        return ort.InferenceSession(path, sess_options=options, providers=providers)
    except Exception as exc:  # ONNX Runtime's own error types: a broken or unsupported model file
        detail = " ".join(str(exc).split())  # one line: ONNX Runtime's messages span several
        raise RepositoryError(f"{path}: ONNX Runtime cannot load the model: {detail}") from exc


def precision_of(entry: ModelEntry) -> str:
    """metadata.json `precision` (a metric label: a short string), "unknown" when absent."""
    precision = entry.metadata.get("precision", "unknown")
    if not isinstance(precision, str) or not 0 < len(precision) <= 64:
        raise RepositoryError(
            f"{entry.path / METADATA_FILE}: precision: {shown(precision)} must be a string of 1 to 64 "
            "characters"
        )
    return precision


class ModelRunner:
    """A loaded model: runs batches on a thread pool of `instances` workers."""

    def __init__(self, entry: ModelEntry, version: int | None, options: RuntimeOptions) -> None:
        """Load a version of the model, the highest when None (blocking: call it off the event loop)."""
        if not entry.versions:
            raise RepositoryError(f"{entry.path}: model {entry.name!r} has no version folder")
        version = max(entry.versions) if version is None else version
        if entry.config.max_batch_size < 1:
            raise RepositoryError(
                f"{entry.path / CONFIG_FILE}: max_batch_size {entry.config.max_batch_size}: models without a "
                "batch dimension are not supported"
            )
        self.entry = entry
        self.name = entry.name
        self.version = version
        self.inputs, self.outputs = tensor_specs(entry)
        self._precision = precision_of(entry)
        self.max_batch_size = int(entry.config.max_batch_size)
        threads = options.intra_op_threads or default_intra_op_threads(options.instances * options.workers)
        self.intra_op_threads = threads
        path = entry.model_file(version)
        if not path.is_file():
            raise RepositoryError(f"{path}: model file not found")
        self.session, self.provider = create_session(str(path), options.device, threads)
        session_inputs = {i.name for i in self.session.get_inputs()}
        session_outputs = {o.name for o in self.session.get_outputs()}
        missing = [s.name for s in self.inputs if s.name not in session_inputs] + [
            s.name for s in self.outputs if s.name not in session_outputs
        ]
        if missing:
            raise RepositoryError(f"{path}: config.pbtxt names tensors the ONNX model lacks: {missing}")
        self._input_names = [s.name for s in self.inputs]
        self._output_names = [s.name for s in self.outputs]
        self._executor = ThreadPoolExecutor(
            max_workers=options.instances, thread_name_prefix=f"ort-{self.name}"
        )
        self._run_sync = self._run_io_binding if self.provider == CUDA else self._run_plain

    @property
    def precision(self) -> str:
        return self._precision

    def _run_plain(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self._output_names, dict(zip(self._input_names, inputs, strict=True)))

    def _run_io_binding(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """CUDA: bind host inputs and outputs so ONNX Runtime copies once each way (untested on a GPU)."""
        binding = self.session.io_binding()
        for name, array in zip(self._input_names, inputs, strict=True):
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in self._output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def run_sync(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One batch, on the calling thread (for warm-up and in-process measurement)."""
        return self._run_sync(inputs)

    async def run(self, inputs: list[np.ndarray]) -> Computed:
        """One batch on the model's thread pool; the event loop is free meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run_timed, inputs)

    def _run_timed(self, inputs: Sequence[np.ndarray]) -> Computed:
        start_ns = time.monotonic_ns()
        outputs = self._run_sync(inputs)
        return Computed(outputs, start_ns, time.monotonic_ns())

    def sample_inputs(self, batch_size: int) -> list[np.ndarray]:
        """Inputs of a batch size filled with each input's lowest valid value (zeros by default)."""
        arrays = []
        for spec in self.inputs:
            shape = (batch_size, *(d if d > 0 else 1 for d in spec.dims))
            arrays.append(np.full(shape, spec.min_value or 0, dtype=spec.dtype))
        return arrays

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Run each batch size once so that the first real requests do not pay for allocation."""
        for size in sorted(set(batch_sizes)):
            try:
                self.run_sync(self.sample_inputs(size))
            except Exception as exc:  # the config does not describe the model (dims, types)
                raise RepositoryError(
                    f"{self.entry.path}: warm-up at batch size {size} failed; does config.pbtxt match the "
                    f"model? {' '.join(str(exc).split())}"
                ) from exc

    def close(self) -> None:
        self._executor.shutdown(wait=True)
