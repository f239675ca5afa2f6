"""`--input-data FILE`: real payloads in perf_analyzer's JSON input format.

    {"data": [{"INPUT": [1, 2, ...]}, {"INPUT": {"content": [...], "shape": [100]}},
              {"INPUT": {"b64": "AAAA..."}}, ...]}

Each entry of `data` gives every input of the model for one sample, without the batch dimension:
a flat row-major list of values, {"b64": base64 of the little-endian bytes}, or {"content": either of
those, "shape": the sample's shape}. A shape with one dimension more than the model's, starting with
1 (a batch-1 tensor), is taken without that dimension. Without "shape" the model's own is used, so
variable dimensions need one. perf_analyzer's streams for sequence models (`data` as a list of lists)
are read one after the other; `validation_data` is ignored.

Requests cycle through the entries in file order: request i of batch size B holds entries i*B .. i*B+B-1
(modulo the entry count), so every entry is sent and a batch holds consecutive samples.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.payload import DATATYPES, InputSpec, PayloadError

MAX_REQUESTS = 4096  # distinct requests built at most (the entries still all take part when fewer)


@dataclass(frozen=True)
class Sample:
    """One input of one entry as the file gives it: values or raw bytes, and the shape if stated."""

    values: list[Any] | None
    raw: bytes | None
    shape: tuple[int, ...] | None


def read_input_data(path: Path | str) -> list[dict[str, Sample]]:
    """Parse and check the file's form (not yet against a model); raises PayloadError naming the entry."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise PayloadError(f"--input-data {path}: cannot read it: {exc.strerror}") from exc
    except ValueError as exc:
        raise PayloadError(f"--input-data {path}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise PayloadError(
            f'--input-data {path}: expected an object with a "data" list (perf_analyzer\'s form)'
        )
    rows = document["data"]
    if rows and all(isinstance(row, list) for row in rows):  # streams of a sequence model, in turn
        rows = [entry for stream in rows for entry in stream]
    if not rows:
        raise PayloadError(f'--input-data {path}: "data" holds no entry')
    entries = []
    for index, row in enumerate(rows):
        where = f"--input-data {path}: data[{index}]"
        if not isinstance(row, dict) or not row:
            raise PayloadError(f"{where}: expected an object of input name -> data, found {row!r:.60}")
        entries.append({str(name): _sample(value, f"{where}.{name}") for name, value in row.items()})
    return entries


def _sample(value: Any, where: str) -> Sample:
    shape = None
    if isinstance(value, dict) and "content" in value:
        raw_shape = value.get("shape")
        if raw_shape is not None:
            if not isinstance(raw_shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw_shape
            ):
                raise PayloadError(f"{where}.shape: {raw_shape!r} is not a list of sizes")
            shape = tuple(raw_shape)
        value = value["content"]
    if isinstance(value, dict) and "b64" in value:
        try:
            raw = base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise PayloadError(f"{where}.b64: not valid base64: {exc}") from exc
        return Sample(None, raw, shape)
    if isinstance(value, list):
        return Sample(_flatten(value), None, shape)
    raise PayloadError(
        f'{where}: expected a list of values, {{"b64": ...}} or {{"content": ..., "shape": ...}}'
    )


def _flatten(values: list[Any]) -> list[Any]:
    """Nested row-major lists as one flat list (a flat list is returned as it is)."""
    if not any(isinstance(v, list) for v in values):
        return values
    flat: list[Any] = []
    for v in values:
        flat.extend(_flatten(v) if isinstance(v, list) else [v])
    return flat


def sample_arrays(
    entries: list[dict[str, Sample]], inputs: list[InputSpec], model: str
) -> list[list[np.ndarray]]:
    """Every entry as one array per model input (model input order), checked against ModelMetadata."""
    names = [spec.name for spec in inputs]
    arrays = []
    for index, entry in enumerate(entries):
        where = f"input data entry {index}"
        missing = [name for name in names if name not in entry]
        unknown = [name for name in entry if name not in names]
        if missing or unknown:
            raise PayloadError(
                f"{where}: model {model!r} has inputs {names}; the entry "
                + (f"lacks {missing}" if missing else "")
                + (" and " if missing and unknown else "")
                + (f"names unknown {unknown}" if unknown else "")
            )
        arrays.append([_array(entry[spec.name], spec, f"{where}, input {spec.name!r}") for spec in inputs])
    return arrays


def _array(sample: Sample, spec: InputSpec, where: str) -> np.ndarray:
    if spec.datatype not in DATATYPES:
        raise PayloadError(f"{where}: datatype {spec.datatype!r} is not supported for payloads")
    dims = spec.shape[1:] if len(spec.shape) > 1 else ()
    shape = sample.shape
    if shape is not None and len(shape) == len(dims) + 1 and shape[0] == 1:
        shape = shape[1:]
    if shape is None:
        if any(d < 0 for d in dims):
            raise PayloadError(f"{where}: the model's shape {list(spec.shape)} has variable dimensions: give "
                               "\"shape\" with \"content\"")  # fmt: skip
        shape = tuple(dims)
    elif len(shape) != len(dims) or any(
        want >= 0 and got != want for got, want in zip(shape, dims, strict=True)
    ):
        raise PayloadError(f"{where}: shape {list(shape)} does not fit the model's {list(spec.shape)} "
                           "(give it without the batch dimension)")  # fmt: skip
    dtype = np.dtype(DATATYPES[spec.datatype])
    count = math.prod(shape)
    if sample.raw is not None:
        if len(sample.raw) != count * dtype.itemsize:
            raise PayloadError(f"{where}: b64 holds {len(sample.raw)} bytes, shape {list(shape)} of "
                               f"{spec.datatype} needs {count * dtype.itemsize}")  # fmt: skip
        return np.frombuffer(sample.raw, dtype=dtype).reshape(shape)
    assert sample.values is not None
    if len(sample.values) != count:
        raise PayloadError(f"{where}: {len(sample.values)} values, shape {list(shape)} needs {count}")
    try:
        return np.asarray(sample.values, dtype=dtype).reshape(shape)
    except (OverflowError, TypeError, ValueError) as exc:
        raise PayloadError(f"{where}: the values do not fit {spec.datatype}: {exc}") from exc


def batches(samples: list[list[np.ndarray]], batch_size: int) -> list[list[np.ndarray]]:
    """The request tensors: request i holds samples i*B .. i*B+B-1 (modulo), stacked on a batch dim."""
    count = len(samples)
    requests = min(MAX_REQUESTS, count // math.gcd(count, batch_size))
    built = []
    for i in range(requests):
        rows = [samples[(i * batch_size + j) % count] for j in range(batch_size)]
        built.append([np.stack([row[k] for row in rows]) for k in range(len(rows[0]))])
    return built
