"""The data plane on its own (protocol-neutral types in, domain errors out), and the status each error
maps to."""

from __future__ import annotations

import grpc
import pytest
from prometheus_client import CollectorRegistry

from server.dataplane import DataPlane
from server.errors import (
    INTERNAL_MESSAGE,
    DeadlineExpired,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    Unavailable,
)
from server.messages import InferRequest
from server.metrics import ServerMetrics
from server.servicer import grpc_status


async def test_requests_for_a_model_still_loading_are_unavailable() -> None:
    registry = CollectorRegistry()
    core = DataPlane(ServerMetrics(registry, gpu=False))
    core.loading.add("m")
    with pytest.raises(Unavailable, match="model 'm' is still loading"):
        await core.infer(InferRequest(model_name="m"), None)
    with pytest.raises(ModelNotFound, match=r"model 'x' not found \(serving \[\]\)"):
        await core.infer(InferRequest(model_name="x"), None)
    assert core.model_ready("m") is False
    assert [(m.name, m.state) for m in core.repository_index(ready_only=False)] == [("m", "LOADING")]
    assert registry.get_sample_value("servescope_requests_total", {"model": "m", "code": "UNAVAILABLE"}) == 1
    assert (
        registry.get_sample_value("servescope_requests_total", {"model": "_unknown", "code": "NOT_FOUND"})
        == 1
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (ModelNotFound("gone"), grpc.StatusCode.NOT_FOUND),
        (Unavailable("later"), grpc.StatusCode.UNAVAILABLE),
        (Overloaded("full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (DeadlineExpired("late"), grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_domain_errors_keep_their_message(error: Exception, code: grpc.StatusCode) -> None:
    assert grpc_status(error) == (code, str(error))


def test_anything_else_is_internal_with_a_fixed_message(caplog: pytest.LogCaptureFixture) -> None:
    assert grpc_status(KeyError("secret detail")) == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    assert "secret detail" in caplog.text


def test_a_gpu_whose_cuda_provider_does_not_come_up(
    monkeypatch: pytest.MonkeyPatch, model_repository, caplog: pytest.LogCaptureFixture
) -> None:
    """NVML says GPU, but CUDA does not really run: auto falls back to the CPU, cuda is an error."""
    import onnxruntime as ort

    from server import model as model_module

    path = str(model_repository / "sentiment_fp32" / "1" / "model.onnx")
    probe = ort.InferenceSession(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if probe.get_providers()[0] == "CUDAExecutionProvider":
        pytest.skip("CUDA really works on this machine")
    monkeypatch.setattr(model_module, "gpu_count", lambda: 1)
    session, provider = model_module.create_session(path, "auto", 1)
    assert provider == "CPUExecutionProvider" and session.get_providers() == ["CPUExecutionProvider"]
    assert "CUDA execution provider did not come up: using the CPU" in caplog.text
    with pytest.raises(model_module.DeviceError, match="--device cuda: the CUDA execution provider did not"):
        model_module.create_session(path, "cuda", 1)
