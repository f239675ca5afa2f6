"""servescope.settings: the serve command line a setting asks for, and the settings a ModelConfig reports."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
from google.protobuf import text_format

from server.cli import add_arguments, auto_workers, options_from_args
from servescope.protocol import model_config_pb2 as mc
from servescope.settings import ServeFlags, serve_argv, settings_from_config, write_parameters


def parse_serve(argv: list[str]):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return options_from_args(parser.parse_args(argv))


@pytest.mark.parametrize(
    "flags",
    [
        ServeFlags(),
        ServeFlags(batching=False),
        ServeFlags(adaptive_delay=False, max_batch_size=16, max_queue_delay_us=0, max_queue_size=8),
        ServeFlags(instances=2, intra_op_threads=3, device="cpu"),
        ServeFlags(workers=3),
        ServeFlags(workers="auto"),
    ],
)
def test_serve_argv_is_understood_by_serve_as_asked(tmp_path: Path, flags: ServeFlags) -> None:
    argv = serve_argv(["servescope"], str(tmp_path), ["m"], flags, grpc_port=7, metrics_port=8)
    assert argv[:2] == ["servescope", "serve"]
    options = parse_serve(argv[2:])
    assert (options.model_repository, options.models, options.grpc_port, options.metrics_port) == (
        tmp_path, ("m",), 7, 8,
    )  # fmt: skip
    assert options.batching is flags.batching and options.adaptive_delay is flags.adaptive_delay
    assert options.max_batch_size == flags.max_batch_size
    assert options.max_queue_delay_us == flags.max_queue_delay_us
    assert options.max_queue_size == flags.max_queue_size
    assert options.instances == flags.instances
    assert options.intra_op_threads == (flags.intra_op_threads or 0)
    assert options.device == (flags.device or "auto")
    if flags.workers is None or flags.workers == "auto":
        assert options.workers == auto_workers(options.device)
    else:
        assert options.workers == flags.workers


def test_every_serve_flag_field_reaches_the_command_line(tmp_path: Path) -> None:
    base = serve_argv(["s"], "r", [], ServeFlags())
    changed = {
        "batching": False, "adaptive_delay": False, "max_batch_size": 4, "max_queue_delay_us": 5,
        "max_queue_size": 6, "instances": 2, "intra_op_threads": 3, "device": "cpu", "workers": 2,
    }  # fmt: skip
    assert set(changed) == ServeFlags.keys(), "a new ServeFlags field needs a value here"
    for name, value in changed.items():
        assert serve_argv(["s"], "r", [], dataclasses.replace(ServeFlags(), **{name: value})) != base, name


TRITON_CONFIG = """
name: "m" platform: "onnxruntime_onnx" max_batch_size: 32
dynamic_batching { preferred_batch_size: [ 4, 64 ] max_queue_delay_microseconds: 300
                   default_queue_policy { max_queue_size: 9 } }
instance_group [ { count: 2 kind: KIND_GPU }, { kind: KIND_GPU } ]
"""


def test_settings_from_a_triton_config_take_every_field_as_given() -> None:
    config = text_format.Parse(TRITON_CONFIG, mc.ModelConfig())
    settings = settings_from_config(config, "triton")
    assert settings.batching is True and settings.max_batch_size == 32
    assert settings.max_queue_delay_us == 300 and settings.max_queue_size == 9
    assert settings.preferred_batch_sizes == [4, 64]  # as reported, not filtered
    assert settings.instances == 3  # the sum of the groups, a group without a count being one
    assert settings.device == "cuda"
    assert settings.adaptive_delay is None and settings.intra_op_threads is None
    assert settings.server == "triton"


def test_settings_from_servescope_parameters_and_batching_off() -> None:
    config = text_format.Parse(TRITON_CONFIG, mc.ModelConfig())
    write_parameters(config, adaptive_delay=False, intra_op_threads=4, workers=3)
    settings = settings_from_config(config, "servescope")
    assert (settings.adaptive_delay, settings.intra_op_threads, settings.workers) == (False, 4, 3)
    config.ClearField("dynamic_batching")
    del config.instance_group[:]
    off = settings_from_config(config, "servescope", device="cpu")
    assert off.batching is False and off.max_queue_delay_us is None and off.preferred_batch_sizes == []
    assert off.adaptive_delay is None  # meaningless without batching
    assert (off.instances, off.device) == (None, "cpu")  # no group: the fallback device
