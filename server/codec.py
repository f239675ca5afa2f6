"""Tensors between KServe v2 protobuf messages and numpy, with every check a request must pass.

Inputs arrive as raw_input_contents (row-major little-endian bytes, read with np.frombuffer without a
copy) or as typed `contents`. Integer inputs accept INT32 and INT64 on the wire and are range-checked
(from metadata.json `inputs`) before they are cast to the model's type. Every failure is InvalidInput
with a message naming the model, the field and the value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.errors import InvalidInput
from server.model import TensorSpec
from servescope.protocol import grpc_service_pb2 as pb

# KServe datatype -> (little-endian numpy dtype, InferTensorContents field or None when not expressible).
WIRE_TYPES: dict[str, tuple[np.dtype[Any], str | None]] = {
    "BOOL": (np.dtype("?"), "bool_contents"),
    "UINT8": (np.dtype("u1"), "uint_contents"),
    "UINT16": (np.dtype("<u2"), "uint_contents"),
    "UINT32": (np.dtype("<u4"), "uint_contents"),
    "UINT64": (np.dtype("<u8"), "uint64_contents"),
    "INT8": (np.dtype("i1"), "int_contents"),
    "INT16": (np.dtype("<i2"), "int_contents"),
    "INT32": (np.dtype("<i4"), "int_contents"),
    "INT64": (np.dtype("<i8"), "int64_contents"),
    "FP16": (np.dtype("<f2"), None),
    "FP32": (np.dtype("<f4"), "fp32_contents"),
    "FP64": (np.dtype("<f8"), "fp64_contents"),
}
_INTEGER_TYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


@dataclass(frozen=True)
class DecodedRequest:
    """A checked request: inputs in the model's input order, batch dim first, in the model's dtypes."""

    inputs: list[np.ndarray]
    batch_size: int
    output_indices: list[int]


class TensorCodec:
    """Checks and converts the tensors of one model."""

    def __init__(
        self,
        model_name: str,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        max_batch_size: int,
    ) -> None:
        self.model_name = model_name
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.max_batch_size = max_batch_size
        self._input_index = {spec.name: i for i, spec in enumerate(self.inputs)}
        self._output_index = {spec.name: i for i, spec in enumerate(self.outputs)}
        self._all_outputs = list(range(len(self.outputs)))
        self._accepted = [
            (_INTEGER_TYPES if spec.datatype in _INTEGER_TYPES else (spec.datatype,)) for spec in self.inputs
        ]

    def _invalid(self, message: str) -> InvalidInput:
        return InvalidInput(f"model {self.model_name!r}: {message}")

    def decode(self, request: pb.ModelInferRequest) -> DecodedRequest:
        """The request's input arrays, checked against the model; raises InvalidInput."""
        tensors = request.inputs
        raw = request.raw_input_contents
        if len(tensors) != len(self.inputs):
            names = [t.name for t in tensors]
            raise self._invalid(
                f"request has inputs {names}, the model expects {[s.name for s in self.inputs]}"
            )
        if raw and len(raw) != len(tensors):
            raise self._invalid(f"raw_input_contents has {len(raw)} entries for {len(tensors)} inputs")
        arrays: list[np.ndarray | None] = [None] * len(self.inputs)
        batch_size = -1
        for position, tensor in enumerate(tensors):
            index = self._input_index.get(tensor.name)
            if index is None:
                raise self._invalid(
                    f"unknown input {tensor.name!r} (expected {[s.name for s in self.inputs]})"
                )
            if arrays[index] is not None:
                raise self._invalid(f"input {tensor.name!r} appears more than once")
            array = self._decode_tensor(index, tensor, raw[position] if raw else None)
            if batch_size not in (-1, array.shape[0]):
                raise self._invalid(
                    f"input {tensor.name!r} has batch size {array.shape[0]}, another input has {batch_size}"
                )
            batch_size = array.shape[0]
            arrays[index] = array
        return DecodedRequest(arrays, batch_size, self._output_indices(request))  # type: ignore[arg-type]

    def _decode_tensor(
        self, index: int, tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None
    ) -> np.ndarray:
        spec = self.inputs[index]
        name = tensor.name
        if tensor.datatype not in self._accepted[index]:
            raise self._invalid(
                f"input {name!r} has datatype {tensor.datatype!r}, expected {spec.datatype!r}"
                + (" (or another integer type)" if len(self._accepted[index]) > 1 else "")
            )
        shape = tuple(tensor.shape)
        expected = (self.max_batch_size, *spec.dims)
        if len(shape) != len(expected):
            raise self._invalid(
                f"input {name!r} has shape {list(shape)}, expected [-1, {', '.join(map(str, spec.dims))}]"
            )
        if not 1 <= shape[0] <= self.max_batch_size:
            raise self._invalid(
                f"input {name!r} has batch size {shape[0]}, outside 1..max_batch_size ({self.max_batch_size})"
            )
        for size, want in zip(shape[1:], spec.dims, strict=True):
            if size < 1 or (want > 0 and size != want):
                raise self._invalid(
                    f"input {name!r} has shape {list(shape)}, expected [-1, {', '.join(map(str, spec.dims))}]"
                )
        count = math.prod(shape)
        wire_dtype, field = WIRE_TYPES[tensor.datatype]
        has_contents = tensor.HasField("contents")
        if raw is not None:
            if has_contents:
                raise self._invalid(f"input {name!r} has both contents and raw_input_contents")
            if len(raw) != count * wire_dtype.itemsize:
                raise self._invalid(
                    f"input {name!r}: raw_input_contents holds {len(raw)} bytes, shape {list(shape)} of "
                    f"{tensor.datatype} needs {count * wire_dtype.itemsize}"
                )
            array = np.frombuffer(raw, dtype=wire_dtype).reshape(shape)
        else:
            values = getattr(tensor.contents, field) if field else ()
            if field is None and has_contents:
                raise self._invalid(f"input {name!r}: {tensor.datatype} must travel in raw_input_contents")
            if len(values) != count:
                raise self._invalid(
                    f"input {name!r}: contents.{field or 'raw'} holds {len(values)} values, "
                    f"shape {list(shape)} needs {count}"
                )
            try:
                array = np.array(values, dtype=wire_dtype).reshape(shape)
            except (OverflowError, ValueError) as exc:  # e.g. 300 in the int_contents of an INT8 tensor
                message = f"input {name!r}: contents.{field} do not fit {tensor.datatype}: {exc}"
                raise self._invalid(message) from exc
        return self._check_values(spec, name, array)

    def _check_values(self, spec: TensorSpec, name: str, array: np.ndarray) -> np.ndarray:
        if array.dtype.kind in "fc" and not np.isfinite(array).all() and spec.min_value is not None:
            raise self._invalid(f"input {name!r} holds a non-finite value")
        if spec.min_value is not None or spec.max_value is not None or array.dtype != spec.dtype:
            low, high = array.min(), array.max()
            lowest = spec.min_value
            highest = spec.max_value
            if spec.dtype.kind in "iu":
                info = np.iinfo(spec.dtype)
                lowest = info.min if lowest is None else max(lowest, info.min)
                highest = info.max if highest is None else min(highest, info.max)
            if lowest is not None and low < lowest:
                raise self._invalid(f"input {name!r} holds value {low.item()} below the minimum {lowest}")
            if highest is not None and high > highest:
                raise self._invalid(f"input {name!r} holds value {high.item()} above the maximum {highest}")
        if array.dtype != spec.dtype:
            array = array.astype(spec.dtype)
        return array

    def _output_indices(self, request: pb.ModelInferRequest) -> list[int]:
        if not request.outputs:
            return self._all_outputs
        indices = []
        for wanted in request.outputs:
            index = self._output_index.get(wanted.name)
            if index is None:
                raise self._invalid(
                    f"unknown requested output {wanted.name!r} "
                    f"(the model has {[s.name for s in self.outputs]})"
                )
            indices.append(index)
        return indices

    def encode(
        self,
        request: pb.ModelInferRequest,
        version: str,
        outputs: Sequence[np.ndarray],
        indices: Sequence[int],
    ) -> pb.ModelInferResponse:
        """The response with the requested outputs as raw_output_contents."""
        response = pb.ModelInferResponse(model_name=self.model_name, model_version=version, id=request.id)
        for index in indices:
            spec = self.outputs[index]
            array = outputs[index]
            if array.dtype != spec.dtype:
                array = array.astype(spec.dtype)
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response
