"""The committed protocol code matches proto/, and its wire format matches the public protocol."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as triton_config_pb2
from tritonclient.grpc import service_pb2 as triton_pb2

from servescope.protocol import POOL, SERVICE_NAME, grpc_service_pb2, model_config_pb2

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    generator = _load_generator()
    generated = generator.generate(tmp_path)
    assert len(generated) == 5  # two *_pb2.py, their .pyi stubs, one *_pb2_grpc.py
    for fresh in generated:
        committed = ROOT / fresh.relative_to(tmp_path)
        assert committed.read_text() == fresh.read_text(), (
            f"{committed.relative_to(ROOT)} is out of date with proto/: run `make proto` and commit"
        )


def test_messages_live_in_the_private_pool_next_to_tritonclient() -> None:
    # Both definitions of package `inference` are importable in one process (this module imports both).
    assert POOL.FindMessageTypeByName("inference.ModelInferRequest") is (
        grpc_service_pb2.ModelInferRequest.DESCRIPTOR
    )
    assert grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name == SERVICE_NAME


def _fields(descriptor) -> dict[str, tuple[int, int, bool]]:
    return {f.name: (f.number, f.type, f.is_repeated) for f in descriptor.fields}


def _assert_subset(ours, theirs, path: str) -> None:
    mine = _fields(ours)
    reference = _fields(theirs)
    for name, spec in mine.items():
        assert name in reference, f"{path}.{name} is not in the reference definition"
        assert spec == reference[name], f"{path}.{name}: ours {spec} != reference {reference[name]}"
    for nested in ours.nested_types:
        if nested.GetOptions().map_entry:
            continue
        _assert_subset(nested, theirs.nested_types_by_name[nested.name], f"{path}.{nested.name}")


@pytest.mark.parametrize("name", sorted(grpc_service_pb2.DESCRIPTOR.message_types_by_name))
def test_service_messages_match_triton_numbers(name: str) -> None:
    ours = grpc_service_pb2.DESCRIPTOR.message_types_by_name[name]
    theirs = triton_pb2.DESCRIPTOR.message_types_by_name[name]
    _assert_subset(ours, theirs, name)


@pytest.mark.parametrize("name", sorted(model_config_pb2.DESCRIPTOR.message_types_by_name))
def test_model_config_messages_match_triton_numbers(name: str) -> None:
    ours = model_config_pb2.DESCRIPTOR.message_types_by_name[name]
    theirs = triton_config_pb2.DESCRIPTOR.message_types_by_name[name]
    _assert_subset(ours, theirs, name)


def test_enums_match_triton() -> None:
    ours = {v.name: v.number for v in model_config_pb2.DESCRIPTOR.enum_types_by_name["DataType"].values}
    theirs = {v.name: v.number for v in triton_config_pb2.DESCRIPTOR.enum_types_by_name["DataType"].values}
    assert ours == theirs
    kind = {v.name: v.number for v in model_config_pb2.ModelInstanceGroup.Kind.DESCRIPTOR.values}
    assert kind == {"KIND_AUTO": 0, "KIND_GPU": 1, "KIND_CPU": 2, "KIND_MODEL": 3}


def test_rpcs_are_the_designed_set_with_triton_signatures() -> None:
    ours = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert [m.name for m in ours.methods] == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
    ]
    for method in ours.methods:
        reference = theirs.methods_by_name[method.name]
        assert method.input_type.full_name == reference.input_type.full_name
        assert method.output_type.full_name == reference.output_type.full_name
        assert method.client_streaming == reference.client_streaming
        assert method.server_streaming == reference.server_streaming


def test_a_request_round_trips_between_the_two_definitions() -> None:
    request = grpc_service_pb2.ModelInferRequest(model_name="sentiment_fp32", id="42")
    tensor = request.inputs.add(name="tokens", datatype="INT32", shape=[2, 3])
    tensor.contents.int_contents.extend([1, 2, 3, 4, 5, 6])
    request.raw_input_contents.append(b"\x01\x00\x00\x00")
    request.parameters["priority"].int64_param = 3
    decoded = triton_pb2.ModelInferRequest.FromString(request.SerializeToString())
    assert decoded.model_name == "sentiment_fp32"
    assert decoded.id == "42"
    assert list(decoded.inputs[0].shape) == [2, 3]
    assert list(decoded.inputs[0].contents.int_contents) == [1, 2, 3, 4, 5, 6]
    assert decoded.raw_input_contents == [b"\x01\x00\x00\x00"]
    assert decoded.parameters["priority"].int64_param == 3
    back = grpc_service_pb2.ModelInferRequest.FromString(decoded.SerializeToString())
    assert back == request
