"""The data plane's own request and response types: what every front end (gRPC today) converts to and from.

They follow the KServe v2 inference request and response, without any wire encoding: a front end fills
an input's `data` with the tensor's bytes (row-major, little-endian) or with its flat list of values,
and the codec (codec.py) checks both against the model. Outputs come back as numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from server.stamps import Stamps


@dataclass(slots=True)
class InputTensor:
    """One input as the client sent it. `data` is bytes (raw) or a flat sequence of values; `where` names
    the field it came in, for error messages ("raw_input_contents", "contents.int_contents", "data")."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes | Sequence[Any]
    where: str = "data"


@dataclass(slots=True)
class InferRequest:
    model_name: str
    model_version: str = ""
    id: str = ""
    inputs: list[InputTensor] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # requested output names; empty: every output
    # Triton's request parameter "timeout", microseconds: its own queue timeout, where the model's queue
    # policy allows an override (allow_timeout_override); None: not given.
    timeout_us: int | None = None
    # The request's timeline (servescope/timeline.py), when it asked for it: the front end creates it with
    # its entry and admission stamps, the data plane and the batcher fill in the rest.
    stamps: Stamps | None = None


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str
    data: np.ndarray  # in the output's declared dtype, batch dim first

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]
    stamps: Stamps | None = None  # the request's, carried back to the front end that returns them


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for the batch dimension and other variable ones


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One model of the repository index."""

    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING
    reason: str
