"""A repository exported for GPU deployment (--instance-kind gpu: KIND_GPU) still serves here on the CPU:
servescope picks its device with --device, and its ModelConfig reports the kind that really runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import tritonclient.grpc as triton

from servescope.protocol import model_config_pb2 as mc
from servescope.repository import read_config, write_config
from servescope.settings import settings_from_config


def test_a_kind_gpu_repository_serves_on_the_cpu(
    start_server, model_repository: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    shutil.copytree(model_repository / "sentiment_fp32", repository / "sentiment_fp32")
    path = repository / "sentiment_fp32" / "config.pbtxt"
    config = read_config(path)
    for group in config.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_GPU
    write_config(config, path)
    running = start_server(model_repository=repository, device="cpu")
    client = triton.InferenceServerClient(running.target)
    assert client.is_model_ready("sentiment_fp32")
    served = client.get_model_config("sentiment_fp32").config
    assert [g.kind for g in served.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert settings_from_config(served, "servescope").device == "cpu"
