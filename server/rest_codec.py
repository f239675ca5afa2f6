"""KServe v2 REST (JSON plus Triton's binary tensor data extension) to and from the data plane's types.

The REST edge, as grpc_codec.py is the gRPC one: only what the JSON encoding decides lives here (where
an input's values are, the binary data that follows the JSON header, which outputs go back as binary).
Every check of a tensor against the model is the codec's (codec.py), shared with gRPC, so both
protocols answer the same messages.

An inference body is a JSON object, optionally followed by binary tensor data; the header
`Inference-Header-Content-Length` gives the JSON part's length, and each binary input names its share
in `parameters.binary_data_size`, in input order. Outputs go back as JSON `data` unless the request
asks for binary (`parameters.binary_data_output`, or an output's `parameters.binary_data`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from server.errors import InvalidInput
from server.messages import (
    IndexEntry,
    InferRequest,
    InferResponse,
    InputTensor,
    ModelMetadata,
    ServerMetadata,
    TensorMetadata,
)
from server.stamps import Stamps
from servescope import timeline

HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
BINARY_WHERE = "binary data"


@dataclass(slots=True)
class RestInferRequest:
    """The data plane's request, and how the client wants each output back."""

    request: InferRequest
    binary_default: bool = False
    binary_outputs: dict[str, bool] = field(default_factory=dict)  # per requested output, when it says
    timeout_us: int | None = None  # Triton's `parameters.timeout`: the request's deadline, microseconds

    def binary(self, name: str) -> bool:
        return self.binary_outputs.get(name, self.binary_default)


def _object(value: Any, what: str, model: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(model, f"{what} must be a JSON object, found {type(value).__name__}")
    return value


def _invalid(model: str, text: str) -> InvalidInput:
    return InvalidInput(f"model {model!r}: {text}")


def _flag(parameters: dict[str, Any], key: str, model: str, where: str) -> bool | None:
    if key not in parameters:
        return None
    value = parameters[key]
    if not isinstance(value, bool):
        raise _invalid(model, f"{where}.{key} must be true or false, found {value!r}")
    return value


def _flatten(data: Any) -> list[Any]:
    """JSON tensor data, flat or nested row-major lists, as one flat list."""
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def infer_request(
    model: str, version: str, body: bytes, header_length: int | None, entry: tuple[int, int] | None = None
) -> RestInferRequest:
    """The data plane's request from an inference body; raises InvalidInput naming the model and field.

    Args:
        entry: when the front end's handler saw the call and admitted it (time.monotonic_ns()); given,
            a request whose parameters ask for its timeline (`servescope.timeline: true`) is stamped.
    """
    header, binary = _split_body(model, body, header_length)
    try:
        document = json.loads(header)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _invalid(model, f"inference request is not valid JSON: {exc}") from exc
    document = _object(document, "the inference request", model)
    parameters = _object(document.get("parameters", {}), "parameters", model)
    inputs = _inputs(model, document.get("inputs", []), binary)
    outputs, binary_outputs = _outputs(model, document.get("outputs") or [])
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise _invalid(model, f"id must be a string, found {request_id!r}")
    timeout_us = parameters.get("timeout")
    if timeout_us is not None and (isinstance(timeout_us, bool) or not isinstance(timeout_us, int)):
        raise _invalid(model, f"parameters.timeout must be microseconds (an integer), found {timeout_us!r}")
    # Only a JSON true asks; anything else there is ignored (a request to measure, never an error).
    stamps = Stamps(*entry) if entry is not None and parameters.get(timeline.ASK) is True else None
    return RestInferRequest(
        InferRequest(model, version, request_id, inputs, outputs, timeout_us, stamps),
        binary_default=bool(_flag(parameters, "binary_data_output", model, "parameters")),
        binary_outputs=binary_outputs,
        timeout_us=timeout_us,
    )


def _split_body(model: str, body: bytes, header_length: int | None) -> tuple[bytes, bytes | memoryview]:
    """The JSON header and the binary tensor data after it (a view of the body, never a copy)."""
    if header_length is None:
        return body, b""
    if not 0 <= header_length <= len(body):
        raise _invalid(
            model,
            f"{HEADER_LENGTH} is {header_length}, outside the body's {len(body)} bytes",
        )
    return body[:header_length], memoryview(body)[header_length:]


def _inputs(model: str, raw_inputs: Any, binary: bytes | memoryview) -> list[InputTensor]:
    """The request's inputs, each binary one taking its binary_data_size of `binary` in input order."""
    # No inputs at all: as gRPC's empty list, refused by the codec.
    if not isinstance(raw_inputs, list):
        raise _invalid(model, f"inputs must be a JSON list, found {type(raw_inputs).__name__}")
    inputs = []
    offset = 0
    for position, raw in enumerate(raw_inputs):
        tensor = _object(raw, f"inputs[{position}]", model)
        name, datatype, shape = _tensor_header(model, position, tensor)
        tensor_parameters = _object(tensor.get("parameters", {}), f"input {name!r} parameters", model)
        size = tensor_parameters.get("binary_data_size")
        if size is not None:
            _check_binary_size(model, name, tensor, size, offset, len(binary))
            data: bytes | Sequence[Any] = binary[offset : offset + size]
            offset += size
            where_data = BINARY_WHERE
        else:
            values = tensor.get("data")
            if not isinstance(values, list):
                raise _invalid(
                    model,
                    f"input {name!r} needs data (a JSON list) or parameters.binary_data_size, "
                    f"found {type(values).__name__}",
                )
            data, where_data = _flatten(values), "data"
        inputs.append(InputTensor(name, datatype, tuple(shape), data, where_data))
    if offset != len(binary):
        raise _invalid(
            model,
            f"{len(binary)} bytes of binary data follow the JSON header, the inputs' binary_data_size "
            f"account for {offset}",
        )
    return inputs


def _tensor_header(model: str, position: int, tensor: dict[str, Any]) -> tuple[str, str, list[int]]:
    """An input's name, datatype and shape, checked."""
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise _invalid(
            model, f"inputs[{position}] needs a string name and datatype, found {name!r}, {datatype!r}"
        )
    if not isinstance(shape, list) or not all(
        isinstance(size, int) and not isinstance(size, bool) for size in shape
    ):
        raise _invalid(model, f"input {name!r}: shape must be a list of integers, found {shape!r}")
    return name, datatype, shape


def _check_binary_size(
    model: str, name: str, tensor: dict[str, Any], size: Any, offset: int, available: int
) -> None:
    """An input's parameters.binary_data_size: a count of bytes that the binary data still holds."""
    if "data" in tensor:
        raise _invalid(model, f"input {name!r} has both data and parameters.binary_data_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _invalid(model, f"input {name!r}: binary_data_size must be a count of bytes, not {size!r}")
    if offset + size > available:
        raise _invalid(
            model,
            f"input {name!r}: binary_data_size {size} runs past the {available} bytes of binary "
            f"data after the JSON header ({offset} taken by earlier inputs)",
        )


def _outputs(model: str, raw_outputs: Any) -> tuple[list[str], dict[str, bool]]:
    """The requested output names, and for each that says so whether it goes back as binary."""
    outputs = []
    binary_outputs = {}
    for position, raw in enumerate(raw_outputs):
        wanted = _object(raw, f"outputs[{position}]", model)
        name = wanted.get("name")
        if not isinstance(name, str):
            raise _invalid(model, f"outputs[{position}] needs a string name, found {name!r}")
        outputs.append(name)
        wanted_parameters = _object(wanted.get("parameters", {}), f"output {name!r} parameters", model)
        choice = _flag(wanted_parameters, "binary_data", model, f"output {name!r} parameters")
        if choice is not None:
            binary_outputs[name] = choice
    return outputs, binary_outputs


def infer_response(response: InferResponse, asked: RestInferRequest) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it (else None)."""
    outputs = []
    chunks: list[bytes] = []
    for output in response.outputs:
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.shape),
        }
        if asked.binary(output.name):
            raw = output.data.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = output.data.ravel().tolist()
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        document["id"] = response.id
    if response.stamps is not None:
        document["parameters"] = response.stamps.parameters()
    document["outputs"] = outputs
    header = json.dumps(document, separators=(",", ":")).encode()
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def error_body(message: str) -> bytes:
    """The protocol's error object."""
    return json.dumps({"error": message}).encode()


def server_metadata(metadata: ServerMetadata) -> dict[str, Any]:
    return {"name": metadata.name, "version": metadata.version, "extensions": list(metadata.extensions)}


def _tensors(tensors: Sequence[TensorMetadata]) -> list[dict[str, Any]]:
    return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in tensors]


def model_metadata(metadata: ModelMetadata) -> dict[str, Any]:
    return {
        "name": metadata.name,
        "versions": list(metadata.versions),
        "platform": metadata.platform,
        "inputs": _tensors(metadata.inputs),
        "outputs": _tensors(metadata.outputs),
    }


def repository_index(entries: Sequence[IndexEntry]) -> list[dict[str, Any]]:
    return [{"name": e.name, "version": e.version, "state": e.state, "reason": e.reason} for e in entries]


_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def message_json(message: Message) -> dict[str, Any]:
    """A protobuf message (ModelConfig, statistics) as Triton's REST API writes it: proto field names,
    64-bit integers as JSON numbers (protobuf's own JSON mapping writes them as strings)."""
    document = json_format.MessageToDict(message, preserving_proto_field_name=True)
    _numbers(message.DESCRIPTOR, document)
    return document


def _numbers(descriptor: Descriptor, document: dict[str, Any]) -> None:
    for name, value in document.items():
        spec = descriptor.fields_by_name.get(name)
        if spec is None:
            continue
        repeated = spec.is_repeated
        if spec.message_type is not None:
            if spec.message_type.GetOptions().map_entry:
                value_spec = spec.message_type.fields_by_name["value"]
                if value_spec.message_type is not None:
                    for item in value.values():
                        _numbers(value_spec.message_type, item)
                elif value_spec.type in _INT64_TYPES:
                    document[name] = {k: int(v) for k, v in value.items()}
            elif repeated:
                for item in value:
                    _numbers(spec.message_type, item)
            else:
                _numbers(spec.message_type, value)
        elif spec.type in _INT64_TYPES:
            document[name] = [int(v) for v in value] if repeated else int(value)
