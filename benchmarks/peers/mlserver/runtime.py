"""A small MLServer runtime that serves one ONNX model with ONNX Runtime on the CPU.

Loaded by MLServer (benchmarks/peers/.venvs/mlserver) from the settings folder that
benchmarks/peers/servers.py writes; parameters.uri names the .onnx file and
parameters.extra.intra_op_threads the ONNX Runtime thread count (0: its default). MLServer's adaptive
batching (max_batch_size, max_batch_time in model-settings.json) merges requests along the first axis
before predict() and splits the response after it.
"""

from __future__ import annotations

import asyncio

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        extra = (self.settings.parameters.extra or {}) if self.settings.parameters else {}
        options = ort.SessionOptions()
        threads = int(extra.get("intra_op_threads", 0))
        if threads > 0:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle ONNX Runtime workers spin for a while after each run: lower latency, but a core burnt
        # that the client needs on a small machine. servescope turns it off; the benchmark's sweep
        # decides here (parameters.extra.ort_spinning).
        spinning = bool(extra.get("ort_spinning", False))
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        uri = self.settings.parameters.uri
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._input_names = [i.name for i in self._session.get_inputs()]
        self._output_names = [o.name for o in self._session.get_outputs()]
        # Run in a worker thread (ONNX Runtime releases the GIL) so the event loop keeps accepting
        # requests and the adaptive batcher can fill the next batch meanwhile.
        self._run_in_thread = bool(extra.get("run_in_thread", True))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        missing = [name for name in self._input_names if name not in feeds]
        if missing:
            raise ValueError(f"model {self.name}: missing input(s) {missing}")
        if self._run_in_thread:
            outputs = await asyncio.to_thread(self._session.run, self._output_names, feeds)
        else:
            outputs = self._session.run(self._output_names, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output(n, o) for n, o in zip(self._output_names, outputs, strict=True)
            ],
        )
