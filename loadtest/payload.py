"""Request payloads: realistic token sequences for token models, random values of the right type otherwise.

Input names, datatypes and shapes come from ModelMetadata. A model whose only input is an integer tensor
of shape [-1, L] (variable batch, fixed length) is taken to be a token model: its payloads are synthetic
reviews from servescope.corpus (the generator and the `pad_sequences` the exporter trains with). Any
other model gets random values of each input's datatype and shape (standard normal floats, integers in
[1, 10), random booleans), with the batch dimension set to the client batch size and any other variable
dimension set to 1. Values are clipped to each input's declared range (metadata.json `inputs`, keyed by
input name) when there is one. Payloads are never all zeros.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from servescope.protocol import grpc_service_pb2 as pb

# KServe v2 datatype names -> numpy dtypes (little-endian, as raw_input_contents requires).
DATATYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
PAYLOAD_KINDS = ("auto", "tokens", "random")


class PayloadError(ValueError):
    """The model's inputs cannot be served by the chosen payload kind; the message names the input."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # as ModelMetadata reports it, -1 for variable dimensions


def inputs_from_metadata(response: pb.ModelMetadataResponse) -> list[InputSpec]:
    return [InputSpec(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in response.inputs]


def is_token_model(inputs: list[InputSpec]) -> bool:
    if len(inputs) != 1:
        return False
    spec = inputs[0]
    return spec.datatype in ("INT32", "INT64") and len(spec.shape) == 2 and spec.shape[1] > 0


def value_ranges(metadata: dict[str, Any]) -> dict[str, tuple[float | None, float | None]]:
    """Each input's declared (min_value, max_value) from a model's metadata.json `inputs`, by input name.

    Entries that are not numbers are ignored: the payload then uses the datatype's own range.
    """
    ranges = {}
    declared = metadata.get("inputs")
    for name, spec in declared.items() if isinstance(declared, dict) else ():
        if not isinstance(spec, dict):
            continue
        low, high = spec.get("min_value"), spec.get("max_value")
        ranges[str(name)] = (
            low if isinstance(low, int | float) and not isinstance(low, bool) else None,
            high if isinstance(high, int | float) and not isinstance(high, bool) else None,
        )
    return ranges


def token_batches(
    count: int,
    batch_size: int,
    sequence_length: int,
    seed: int,
    value_range: tuple[float | None, float | None] = (None, None),
) -> list[np.ndarray]:
    """`count` batches of padded synthetic reviews, int32 of shape [batch_size, sequence_length],
    with ids clipped to the input's declared range."""
    from servescope.corpus import pad_sequences, synthetic_reviews

    sequences, _labels = synthetic_reviews(count * batch_size, seed)
    padded = pad_sequences(sequences, maxlen=sequence_length)
    low, high = value_range
    if low is not None or high is not None:
        padded = np.clip(padded, low, high)
    padded = padded.astype(np.int32, copy=False)
    return [padded[i * batch_size : (i + 1) * batch_size] for i in range(count)]


def random_tensor(
    spec: InputSpec,
    batch_size: int,
    rng: np.random.Generator,
    value_range: tuple[float | None, float | None] = (None, None),
) -> np.ndarray:
    """Random values of the input's datatype and shape, inside its declared range when there is one."""
    if spec.datatype not in DATATYPES:
        raise PayloadError(f"input {spec.name!r}: datatype {spec.datatype!r} is not supported for payloads")
    shape = [batch_size if i == 0 else (1 if d < 0 else d) for i, d in enumerate(spec.shape)] or [batch_size]
    dtype = np.dtype(DATATYPES[spec.datatype])
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    values: np.ndarray = rng.standard_normal(shape) if dtype.kind == "f" else rng.integers(1, 10, shape)
    low, high = value_range
    if low is not None or high is not None:
        values = np.clip(values, low, high)
    return values.astype(dtype)


def build_requests(
    model: str,
    inputs: list[InputSpec],
    *,
    batch_size: int,
    count: int,
    seed: int,
    kind: str = "auto",
    ranges: dict[str, tuple[float | None, float | None]] | None = None,
    version: str = "",
) -> list[pb.ModelInferRequest]:
    """`count` distinct requests for `model` with `batch_size` samples each, raw_input_contents filled.

    Args:
        inputs: the model's inputs from ModelMetadata.
        kind: "tokens" (synthetic reviews), "random", or "auto" (tokens for a token model).
        ranges: each input's declared (min, max) by name (value_ranges); token ids are clipped to it.
        version: the model version to ask for ("": the one the server serves).
    """
    if kind not in PAYLOAD_KINDS:
        raise PayloadError(f"payload kind {kind!r} is not one of {list(PAYLOAD_KINDS)}")
    if batch_size < 1:
        raise PayloadError(f"batch size {batch_size} must be at least 1")
    if not inputs:
        raise PayloadError(f"model {model!r} declares no inputs")
    use_tokens = kind == "tokens" or (kind == "auto" and is_token_model(inputs))
    if use_tokens and not is_token_model(inputs):
        raise PayloadError(
            f"model {model!r}: token payloads need one integer input of shape [-1, L], "
            f"found {[(s.name, s.datatype, list(s.shape)) for s in inputs]}"
        )
    rng = np.random.default_rng(seed)
    ranges = ranges or {}
    token_data = (
        token_batches(count, batch_size, inputs[0].shape[1], seed, ranges.get(inputs[0].name, (None, None)))
        if use_tokens
        else None
    )
    tensors = []
    for i in range(count):
        if token_data is not None:
            tensors.append([token_data[i].astype(DATATYPES[spec.datatype], copy=False) for spec in inputs])
        else:
            tensors.append(
                [random_tensor(spec, batch_size, rng, ranges.get(spec.name, (None, None))) for spec in inputs]
            )
    return requests_from_tensors(model, inputs, tensors, version)


def requests_from_tensors(
    model: str, inputs: list[InputSpec], tensors: list[list[np.ndarray]], version: str = ""
) -> list[pb.ModelInferRequest]:
    """One request per list of arrays (one array per input, in `inputs` order), raw_input_contents filled."""
    requests = []
    for arrays in tensors:
        request = pb.ModelInferRequest(model_name=model, model_version=version, id="")
        for spec, array in zip(inputs, arrays, strict=True):
            request.inputs.add(name=spec.name, datatype=spec.datatype, shape=list(array.shape))
            request.raw_input_contents.append(
                np.ascontiguousarray(array, dtype=DATATYPES[spec.datatype]).tobytes()
            )
        requests.append(request)
    return requests


def inputs_from_rest_metadata(document: dict[str, Any]) -> list[InputSpec]:
    """The inputs of a REST model metadata answer (GET /v2/models/NAME)."""
    return [
        InputSpec(t["name"], t["datatype"], tuple(int(d) for d in t["shape"])) for t in document["inputs"]
    ]


def rest_body(request: pb.ModelInferRequest) -> tuple[bytes, int]:
    """The KServe v2 REST body of a request: a JSON header, then every input as binary data (Triton's
    binary tensor extension), every output asked back as binary. Returns (body, JSON header length),
    the value of the Inference-Header-Content-Length header."""
    header = {
        "inputs": [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape),
             "parameters": {"binary_data_size": len(raw)}}
            for t, raw in zip(request.inputs, request.raw_input_contents, strict=True)
        ],
        "parameters": {"binary_data_output": True},
    }  # fmt: skip
    if request.id:
        header["id"] = request.id
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([encoded, *request.raw_input_contents]), len(encoded)
