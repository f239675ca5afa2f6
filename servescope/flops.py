"""FLOPs per sample, counted from an ONNX graph.

Counted: 2 FLOPs per multiply-add of the matrix products, which is where this kind of model spends its
time.
- LSTM (and com.microsoft::DynamicQuantizeLSTM): per direction and time step, the four gates multiply
  [input + hidden] by a [input + hidden, 4 * hidden] matrix: 2 * 4 * hidden * (input + hidden).
- MatMul, MatMulInteger, Gemm: 2 * M * K * N for one sample.
- Gather (the embedding lookup): no arithmetic, 0 FLOPs.
Not counted: bias additions, gate activations and the elementwise cell update (about 1% of the LSTM's
matrix work here), casts and shape glue. The graph is shape-inferred with the batch dimension set to 1.
"""

from __future__ import annotations

import math
from typing import Any

_MATMULS = {"MatMul", "MatMulInteger"}
_LSTMS = {"LSTM", "DynamicQuantizeLSTM"}


def flops_per_sample(model: Any) -> dict[str, int]:
    """FLOPs of one sample by op type (only op types that do counted arithmetic), plus "total"."""
    shapes = _static_shapes(model)
    by_op: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in _LSTMS:
            count = _lstm_flops(node, shapes)
        elif node.op_type in _MATMULS:
            count = _matmul_flops(node, shapes)
        elif node.op_type == "Gemm":
            count = _gemm_flops(node, shapes)
        elif node.op_type == "Gather":
            count = 0
        else:
            continue
        by_op[node.op_type] = by_op.get(node.op_type, 0) + count
    by_op["total"] = sum(by_op.values())
    return by_op


def _static_shapes(model: Any) -> dict[str, list[int | None]]:
    """Every tensor's shape that is known, with batch dimensions fixed to 1."""
    import onnx

    copy = onnx.ModelProto.FromString(model.SerializeToString())
    for value in copy.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(copy)
    shapes: dict[str, list[int | None]] = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            shapes[value.name] = [
                d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim
            ]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _attribute(node: Any, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _lstm_flops(node: Any, shapes: dict[str, list[int | None]]) -> int:
    hidden = _attribute(node, "hidden_size", 0)
    x_shape = shapes.get(node.input[0], [])
    w_shape = shapes.get(node.input[1], [])
    sequence_length = None
    if len(x_shape) == 3:
        sequence_length = x_shape[0] if _attribute(node, "layout", 0) == 0 else x_shape[1]
    if sequence_length is None:
        raise ValueError(f"LSTM node {node.name!r}: sequence length of input {node.input[0]!r} is not static")
    # W is [directions, 4 x hidden, input size]: its smaller known dimension is the input size.
    w_sizes = [d for d in w_shape[1:] if d is not None] if len(w_shape) == 3 else []
    input_size = x_shape[2] or (min(w_sizes) if len(w_sizes) == 2 else None)
    directions = w_shape[0] if w_shape and w_shape[0] else 1
    if not hidden or not input_size:
        raise ValueError(f"LSTM node {node.name!r}: hidden or input size unknown")
    return directions * sequence_length * 2 * 4 * hidden * (input_size + hidden)


def _matmul_flops(node: Any, shapes: dict[str, list[int | None]]) -> int:
    a_shape = shapes.get(node.input[0])
    b_shape = shapes.get(node.input[1])
    k, n = (b_shape[-2], b_shape[-1]) if b_shape and len(b_shape) >= 2 else (None, None)
    if k is None or n is None:
        raise ValueError(f"{node.op_type} node {node.name!r}: shape of {node.input[1]!r} is not static")
    # Rows of A per sample: every leading dimension (batch already 1); one row when shapes are unknown.
    rows = math.prod(d or 1 for d in a_shape[:-1]) if a_shape else 1
    return 2 * rows * k * n


def _gemm_flops(node: Any, shapes: dict[str, list[int | None]]) -> int:
    a_shape = shapes.get(node.input[0]) or [1, None]
    b_shape = shapes.get(node.input[1])
    if not b_shape or len(b_shape) != 2:
        raise ValueError(f"Gemm node {node.name!r}: shape of {node.input[1]!r} is not static")
    k, n = (b_shape[1], b_shape[0]) if _attribute(node, "transB", 0) else (b_shape[0], b_shape[1])
    if k is None or n is None:
        raise ValueError(f"Gemm node {node.name!r}: shape of {node.input[1]!r} is not static")
    rows = (a_shape[1] if _attribute(node, "transA", 0) else a_shape[0]) or 1
    return 2 * rows * k * n


def graph_figures(path: Any) -> dict[str, Any] | None:
    """flops_per_sample and weight_bytes of an ONNX file, for a model without metadata.json; None when
    the onnx package is missing or the graph cannot be counted (an op whose shapes are not static)."""
    try:
        import onnx
        from onnx import helper
    except ImportError:
        return None
    try:
        model = onnx.load(str(path))
        flops = flops_per_sample(model)["total"]
    except Exception:  # onnx raises its own error types for files it cannot read or infer
        return None
    weight_bytes = 0
    for init in model.graph.initializer:
        itemsize = helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        weight_bytes += math.prod(init.dims) * itemsize
    return {"flops_per_sample": int(flops), "weight_bytes": int(weight_bytes), "flops_source": "ONNX graph"}
