"""KServe v2 protobuf messages to and from the data plane's types (messages.py): the gRPC edge.

Only what protobuf decides lives here: which `contents` field holds a datatype's values, the pairing of
`raw_input_contents` with inputs, and the shape of responses. Every check of a tensor against the
model is the codec's (codec.py), shared with any other front end.
"""

from __future__ import annotations

from collections.abc import Sequence

from server.errors import InvalidInput
from server.messages import (
    IndexEntry,
    InferRequest,
    InferResponse,
    InputTensor,
    ModelMetadata,
    ServerMetadata,
)
from server.served import Duration, ModelStats
from server.stamps import Stamps
from servescope import timeline
from servescope.echo import shown
from servescope.protocol import grpc_service_pb2 as pb

# KServe datatype -> the InferTensorContents field that carries its values (None: raw bytes only).
CONTENTS_FIELDS: dict[str, str | None] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP16": None,
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def asks_timeline(message: pb.ModelInferRequest) -> bool:
    """The request asks for its timeline (servescope.timeline.ASK as a true bool_param; anything else
    there is ignored, never an error: the parameter is only a request to measure)."""
    parameters = message.parameters
    return timeline.ASK in parameters and parameters[timeline.ASK].bool_param


def infer_request(message: pb.ModelInferRequest, entry: tuple[int, int] | None = None) -> InferRequest:
    """The data plane's request; raises InvalidInput for what only protobuf can get wrong.

    Args:
        entry: when the front end's handler saw the call and admitted it (time.monotonic_ns()); given,
            a request that asks for its timeline is stamped (server/stamps.py)."""
    model = message.model_name

    def invalid(text: str) -> InvalidInput:
        return InvalidInput(f"model {shown(model)}: {text}")

    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise invalid(f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs")
    inputs = []
    for position, tensor in enumerate(message.inputs):
        has_contents = tensor.HasField("contents")
        field = CONTENTS_FIELDS.get(tensor.datatype)
        if raw:
            if has_contents:
                raise invalid(f"input {shown(tensor.name)} has both contents and raw_input_contents")
            data, where = raw[position], "raw_input_contents"
        elif has_contents and field is None and tensor.datatype in CONTENTS_FIELDS:
            raise invalid(f"input {shown(tensor.name)}: {tensor.datatype} must travel in raw_input_contents")
        else:
            data = getattr(tensor.contents, field) if field else ()
            where = f"contents.{field or 'raw'}"
        inputs.append(InputTensor(tensor.name, tensor.datatype, tuple(tensor.shape), data, where))
    timeout_us = None
    if "timeout" in message.parameters:
        timeout = message.parameters["timeout"]
        if timeout.WhichOneof("parameter_choice") not in ("int64_param", "uint64_param"):
            raise invalid("parameters.timeout must be microseconds (int64_param)")
        timeout_us = timeout.int64_param or timeout.uint64_param
    return InferRequest(
        model_name=model,
        model_version=message.model_version,
        id=message.id,
        inputs=inputs,
        outputs=[wanted.name for wanted in message.outputs],
        timeout_us=timeout_us,
        stamps=Stamps(*entry) if entry is not None and asks_timeline(message) else None,
    )


def infer_response(response: InferResponse) -> pb.ModelInferResponse:
    """The outputs as raw_output_contents."""
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    for output in response.outputs:
        message.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        message.raw_output_contents.append(output.data.tobytes())
    if response.stamps is not None:
        parameters = message.parameters
        for key, value in response.stamps.parameters().items():
            if isinstance(value, str):
                parameters[key].string_param = value
            else:
                parameters[key].int64_param = value
    return message


def server_metadata(metadata: ServerMetadata) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=metadata.name, version=metadata.version, extensions=list(metadata.extensions)
    )


def model_metadata(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    response = pb.ModelMetadataResponse(
        name=metadata.name, versions=list(metadata.versions), platform=metadata.platform
    )
    for tensor in metadata.inputs:
        response.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
    for tensor in metadata.outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
    return response


def _duration(duration: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=duration.count, ns=duration.ns)


def statistics(models: Sequence[ModelStats]) -> pb.ModelStatisticsResponse:
    response = pb.ModelStatisticsResponse()
    for stats in models:
        message = response.model_stats.add(
            name=stats.name,
            version=stats.version,
            last_inference=stats.last_inference_ms,
            inference_count=stats.inference_count,
            execution_count=stats.execution_count,
        )
        infer = message.inference_stats
        for name in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
            getattr(infer, name).CopyFrom(_duration(getattr(stats, name)))
        for size in sorted(stats.batch_infer):
            message.batch_stats.add(batch_size=size, compute_infer=_duration(stats.batch_infer[size]))
    return response


def repository_index(entries: Sequence[IndexEntry]) -> pb.RepositoryIndexResponse:
    response = pb.RepositoryIndexResponse()
    for entry in entries:
        response.models.add(name=entry.name, version=entry.version, state=entry.state, reason=entry.reason)
    return response
