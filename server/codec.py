"""Tensors of a request checked against one model and turned into numpy arrays, whatever the protocol.

An input arrives as bytes (row-major little-endian, read with np.frombuffer without a copy) or as a flat
sequence of values (gRPC's typed `contents`, REST's JSON `data`). Integer inputs accept every integer
type on the wire and are range-checked (from metadata.json `inputs`) before they are cast to the
model's type. Every failure is InvalidInput with a message naming the model, the field and the value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.errors import InvalidInput
from server.messages import InferRequest, InputTensor, OutputTensor
from server.model import TensorSpec
from servescope.echo import shown

# KServe datatype -> little-endian numpy dtype.
WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
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

    def decode(self, request: InferRequest) -> DecodedRequest:
        """The request's input arrays, checked against the model; raises InvalidInput."""
        tensors = request.inputs
        if len(tensors) != len(self.inputs):
            names = [t.name for t in tensors]
            raise self._invalid(
                f"request has {len(names)} inputs {shown(names)}, the model expects "
                f"{[s.name for s in self.inputs]}"
            )
        arrays: list[np.ndarray | None] = [None] * len(self.inputs)
        batch_size = -1
        for tensor in tensors:
            index = self._input_index.get(tensor.name)
            if index is None:
                raise self._invalid(
                    f"unknown input {shown(tensor.name)} (expected {[s.name for s in self.inputs]})"
                )
            if arrays[index] is not None:
                raise self._invalid(f"input {tensor.name!r} appears more than once")
            array = self._decode_tensor(index, tensor)
            if batch_size not in (-1, array.shape[0]):
                raise self._invalid(
                    f"input {tensor.name!r} has batch size {array.shape[0]}, another input has {batch_size}"
                )
            batch_size = array.shape[0]
            arrays[index] = array
        return DecodedRequest(arrays, batch_size, self._output_indices(request.outputs))  # type: ignore[arg-type]

    def _decode_tensor(self, index: int, tensor: InputTensor) -> np.ndarray:
        spec = self.inputs[index]
        name = tensor.name
        if tensor.datatype not in self._accepted[index]:
            raise self._invalid(
                f"input {name!r} has datatype {shown(tensor.datatype)}, expected {spec.datatype!r}"
                + (" (or another integer type)" if len(self._accepted[index]) > 1 else "")
            )
        shape = tuple(tensor.shape)
        expected = (self.max_batch_size, *spec.dims)
        if len(shape) != len(expected):
            raise self._invalid(
                f"input {name!r} has shape {shown(list(shape))}, expected "
                f"[-1, {', '.join(map(str, spec.dims))}]"
            )
        if not 1 <= shape[0] <= self.max_batch_size:
            raise self._invalid(
                f"input {name!r} has batch size {shape[0]}, outside 1..max_batch_size ({self.max_batch_size})"
            )
        for size, want in zip(shape[1:], spec.dims, strict=True):
            if size < 1 or (want > 0 and size != want):
                raise self._invalid(
                    f"input {name!r} has shape {shown(list(shape))}, expected "
                    f"[-1, {', '.join(map(str, spec.dims))}]"
                )
        count = math.prod(shape)
        wire_dtype = WIRE_DTYPES[tensor.datatype]
        data, where = tensor.data, tensor.where
        if isinstance(data, bytes | bytearray | memoryview):
            if len(data) != count * wire_dtype.itemsize:
                raise self._invalid(
                    f"input {name!r}: {where} holds {len(data)} bytes, shape {shown(list(shape))} of "
                    f"{tensor.datatype} needs {count * wire_dtype.itemsize}"
                )
            array = np.frombuffer(data, dtype=wire_dtype).reshape(shape)
        else:
            if len(data) != count:
                raise self._invalid(
                    f"input {name!r}: {where} holds {len(data)} values, shape {shown(list(shape))} "
                    f"needs {count}"
                )
            try:
                array = np.array(data, dtype=wire_dtype).reshape(shape)
            except (OverflowError, ValueError, TypeError) as exc:  # e.g. 300 in an INT8 tensor
                raise self._invalid(
                    f"input {name!r}: {where} do not fit {tensor.datatype}: {shown(str(exc))}"
                ) from exc
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

    def _output_indices(self, wanted: Sequence[str]) -> list[int]:
        if not wanted:
            return self._all_outputs
        indices = []
        for name in wanted:
            index = self._output_index.get(name)
            if index is None:
                raise self._invalid(
                    f"unknown requested output {shown(name)} (the model has {[s.name for s in self.outputs]})"
                )
            indices.append(index)
        return indices

    def encode(self, outputs: Sequence[np.ndarray], indices: Sequence[int]) -> list[OutputTensor]:
        """The requested outputs in their declared datatypes."""
        tensors = []
        for index in indices:
            spec = self.outputs[index]
            array = outputs[index]
            if array.dtype != spec.dtype:
                array = array.astype(spec.dtype)
            tensors.append(OutputTensor(spec.name, spec.datatype, array))
        return tensors
