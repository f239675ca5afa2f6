"""Keras -> ONNX through tf2onnx, with the names and shapes of the repository contract.

The Keras 3 route (docs/export.md; `from_keras` fails on Keras 3, onnx/tensorflow-onnx#2448): convert a
`tf.function` with an explicit input signature, whose dict output names the ONNX output; then rename
tf2onnx's generated batch dimension to `batch`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from exporter.train import quiet_tensorflow
from servescope.corpus import SEQUENCE_LENGTH

INPUT_NAME = "tokens"
OUTPUT_NAME = "probability"
BATCH_DIM = "batch"
DEFAULT_OPSET = 17


class ParityError(RuntimeError):
    """ONNX Runtime and Keras disagree beyond the tolerance: the export must not be written."""


def keras_to_onnx(model: Any, opset: int = DEFAULT_OPSET) -> Any:
    """The fp32 onnx.ModelProto: input tokens int32 [batch, 100], output probability fp32 [batch, 1]."""
    quiet_tensorflow()
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, SEQUENCE_LENGTH), tf.int32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def serving(tokens: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: model(tokens, training=False)}

    onnx_model, _ = tf2onnx.convert.from_function(serving, input_signature=spec, opset=opset)
    name_batch_dimension(onnx_model)
    onnx_model.producer_name = "servescope-export (tf2onnx)"
    return onnx_model


def name_batch_dimension(onnx_model: Any, name: str = BATCH_DIM) -> None:
    """Give the first dimension of every graph input and output the name `batch`."""
    for value in [*onnx_model.graph.input, *onnx_model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = name


def check_parity(reference: np.ndarray, candidate: np.ndarray, tolerance: float, what: str) -> float:
    """Max abs difference between two output arrays; raises ParityError above `tolerance`."""
    if reference.shape != candidate.shape:
        raise ParityError(f"{what}: output shape {candidate.shape} differs from {reference.shape}")
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    if not np.isfinite(diff) or diff > tolerance:
        raise ParityError(
            f"{what}: max abs diff {diff:.3g} over {len(reference)} samples exceeds {tolerance:g}"
        )
    return diff
