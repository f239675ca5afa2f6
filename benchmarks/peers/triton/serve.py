"""Serve one ONNX model with Triton Inference Server through PyTriton, for the peer benchmark.

Runs inside benchmarks/peers/.venvs/triton (started by benchmarks/peers/servers.py), never in the main
environment. The model runs in an ONNX Runtime CPU session behind Triton's dynamic batcher; each
Triton model instance gets its own session. Writes a JSON ready file
``{"grpc_port", "http_port", "metrics_port", "pid"}`` once the model is loaded, and stops on SIGTERM.

PyTriton 0.7 restricts some endpoints (statistics, shared-memory, model-repository, trace, logging)
behind a random access token by default. Here they are open, as in a plain tritonserver: perf_analyzer
reads ModelStatistics for its server-side figures, and its -H header reaches HTTP requests only, so a
gRPC perf_analyzer could not send the token. Inference is not among the restricted endpoints, so the
lean client's path is the same either way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

ORT_TO_NUMPY = {
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


def make_session(model_path: Path, intra_op_threads: int, spinning: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if intra_op_threads > 0:
        options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    # Idle ONNX Runtime workers spin for a while after each run: lower latency, but a core burnt that
    # the other threads and the client need on a small machine. servescope turns it off; here the
    # benchmark's sweep decides.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def make_infer_func(session: ort.InferenceSession):
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        outputs = session.run(output_names, {name: inputs[name] for name in input_names})
        return dict(zip(output_names, outputs, strict=True))

    return infer


def tensors(args: list) -> list[Tensor]:
    """Tensor specs without the batch dimension (PyTriton adds it when batching is on)."""
    return [
        Tensor(name=a.name, dtype=ORT_TO_NUMPY[a.type], shape=tuple(int(d) for d in a.shape[1:]))
        for a in args
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-file", type=Path, required=True, help="ONNX model file")
    parser.add_argument("--model-name", required=True, help="name the model is served under")
    parser.add_argument("--grpc-port", type=int, required=True, help="gRPC port")
    parser.add_argument("--http-port", type=int, required=True, help="HTTP port")
    parser.add_argument("--metrics-port", type=int, required=True, help="Prometheus metrics port")
    parser.add_argument("--max-batch-size", type=int, default=64, help="largest batch, samples")
    parser.add_argument("--max-queue-delay-us", type=int, default=1000, help="batching window, us")
    parser.add_argument("--instances", type=int, default=1, help="model instances (one session each)")
    parser.add_argument("--intra-op-threads", type=int, default=0, help="ORT threads per session, 0: auto")
    parser.add_argument("--ort-spinning", action="store_true", help="let idle ORT workers spin")
    parser.add_argument("--ready-file", type=Path, required=True, help="JSON file written when ready")
    parser.add_argument("--workspace", type=Path, default=None, help="PyTriton workspace folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    sessions = [
        make_session(args.model_file, args.intra_op_threads, args.ort_spinning) for _ in range(args.instances)
    ]
    first = sessions[0]
    config = TritonConfig(
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        http_address="127.0.0.1",
        http_port=args.http_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        allow_metrics=True,
        allow_gpu_metrics=False,
        exit_timeout_secs=5,
    )
    model_config = ModelConfig(
        max_batch_size=args.max_batch_size,
        batcher=DynamicBatcher(max_queue_delay_microseconds=args.max_queue_delay_us),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    open_endpoints = TritonSecurityConfig(restricted_endpoints=[])  # see the module docstring
    triton = Triton(config=config, workspace=args.workspace, security_config=open_endpoints)
    try:
        triton.bind(
            model_name=args.model_name,
            infer_func=[make_infer_func(s) for s in sessions],
            inputs=tensors(first.get_inputs()),
            outputs=tensors(first.get_outputs()),
            config=model_config,
            strict=False,
        )
        triton.run()
        ready = {
            "grpc_port": args.grpc_port,
            "http_port": args.http_port,
            "metrics_port": args.metrics_port,
            "pid": os.getpid(),
        }
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(ready))
        tmp.replace(args.ready_file)
        while not stop.wait(1.0):
            if not triton.is_alive():
                logging.error("tritonserver is no longer alive")
                return 1
    finally:
        triton.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
