"""Precision variants of the fp32 ONNX model: int8 (dynamic quantization) and fp16.

- int8: `quantize_dynamic(weight_type=QInt8)` turns the LSTM into com.microsoft::DynamicQuantizeLSTM and
  the Dense MatMul into MatMulInteger: weights stored as int8, activations quantized per call. Static
  quantization would leave the LSTM in float, which is where the time goes.
- fp16: ONNX Runtime's own converter with keep_io_types=True, so clients still send int32 tokens and get
  fp32 probabilities. (onnxconverter-common's converter makes a graph that does not load here.) fp16
  is for GPUs; on the CPU execution provider it is not faster.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

PRECISIONS = ("fp32", "int8", "fp16")


def make_variant(fp32_model: Any, precision: str) -> Any:
    """The onnx.ModelProto of one precision, made from the fp32 model (left unchanged)."""
    import onnx

    if precision == "fp32":
        return fp32_model
    if precision == "int8":
        return _quantize_int8(fp32_model)
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        copy = onnx.ModelProto.FromString(fp32_model.SerializeToString())
        return convert_float_to_float16(copy, keep_io_types=True)
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _quantize_int8(fp32_model: Any) -> Any:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic works on files.
    with tempfile.TemporaryDirectory(prefix="servescope-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(fp32_model, source)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return onnx.load(target)


def op_types(model: Any) -> dict[str, int]:
    """How many nodes of each op type (domain-qualified outside the default domain) the graph has."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        key = f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
        counts[key] = counts.get(key, 0) + 1
    return counts
