"""The queue timeout policy per model (Triton's dynamic_batching.default_queue_policy, timeout_action
REJECT, allow_timeout_override): a request still queued at its timeout is refused UNAVAILABLE at that
moment and never run; a request may shorten the timeout, never lengthen it."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from server.batcher import BatchSettings
from server.errors import Unavailable
from servescope.repository import RepositoryError
from tests.server.test_batcher import FakeModel, make, rows

MODEL = "sentiment_fp32"


def test_the_timeout_a_request_gets() -> None:
    fixed = BatchSettings(8, queue_timeout_us=100_000)
    assert fixed.queue_timeout_s(None) == 0.1 and fixed.queue_timeout_s(20_000) == 0.1  # no override
    overridable = BatchSettings(8, queue_timeout_us=100_000, allow_timeout_override=True)
    assert overridable.queue_timeout_s(20_000) == 0.02  # shorter: taken
    assert overridable.queue_timeout_s(5_000_000) == 0.1  # longer: never lengthens it
    assert overridable.queue_timeout_s(None) == 0.1 and overridable.queue_timeout_s(-5) == 0.1
    assert BatchSettings(8).queue_timeout_s(20_000) is None
    assert BatchSettings(8, allow_timeout_override=True).queue_timeout_s(20_000) == 0.02
    with pytest.raises(ValueError, match=r"queue_timeout_us must be in 0\.\.3600000000"):
        BatchSettings(8, queue_timeout_us=-1)
    with pytest.raises(TypeError, match="allow_timeout_override must be a bool"):
        BatchSettings(8, allow_timeout_override=1)  # type: ignore[arg-type]


async def test_a_request_waiting_for_a_slot_is_refused_at_its_timeout_and_never_run() -> None:
    model = FakeModel()
    model.gate = asyncio.Event()  # the first batch holds the only execution slot
    batcher, reports, drops = make(model, max_queue_delay_us=0, queue_timeout_us=50_000)
    running = asyncio.ensure_future(batcher.submit(rows(1)))
    await asyncio.sleep(0.01)
    started_s = time.perf_counter()
    with pytest.raises(Unavailable) as raised:
        await batcher.submit(rows(2))
    waited_s = time.perf_counter() - started_s
    assert 0.045 <= waited_s < 0.5  # at its timeout, while the slot is still taken
    assert "model 'm': request waited 0.0" in str(raised.value)
    assert "past its queue timeout of 50000 us (default_queue_policy, timeout_action REJECT)" in str(
        raised.value
    ) and str(raised.value).endswith("refused, it was not run")
    assert drops == ["deadline"] and batcher.queue_depth == 0
    model.gate.set()
    assert (await running).outputs[0].tolist() == [[2, 2, 2]]
    assert [batch[:, 0].tolist() for batch in model.batches] == [[1]]  # the refused one never ran
    await batcher.close()
    assert len(reports) == 1


async def test_a_request_override_shortens_the_wait_for_company() -> None:
    model = FakeModel()
    batcher, _, drops = make(
        model, max_queue_delay_us=400_000, adaptive_delay=False, queue_timeout_us=300_000,
        allow_timeout_override=True,
    )  # fmt: skip
    started_s = time.perf_counter()
    with pytest.raises(Unavailable, match="past its queue timeout of 30000 us"):
        await batcher.submit(rows(1), timeout_us=30_000)
    assert time.perf_counter() - started_s < 0.2  # refused at 30 ms, not after the 400 ms delay
    with pytest.raises(Unavailable, match="past its queue timeout of 300000 us"):
        await batcher.submit(rows(3), timeout_us=5_000_000)  # longer than 300 ms: not lengthened
    assert drops == ["deadline", "deadline"] and model.batches == []
    await batcher.close()


@pytest.fixture
def timeout_repository(model_repository: Path, tmp_path: Path) -> Path:
    """The model with a 500 ms batching delay and a 100 ms queue timeout that requests may shorten."""
    folder = tmp_path / "repo" / MODEL
    shutil.copytree(model_repository / MODEL, folder)
    config = (folder / "config.pbtxt").read_text()
    config = config.replace("max_queue_delay_microseconds: 1000", "max_queue_delay_microseconds: 500000")
    config = config.replace(
        "max_queue_size: 1024", "max_queue_size: 1024\n    default_timeout_microseconds: 100000\n"
        "    allow_timeout_override: true"
    )  # fmt: skip
    assert "default_timeout_microseconds: 100000" in config and "500000" in config
    (folder / "config.pbtxt").write_text(config)
    return folder.parent


def test_config_pbtxt_queue_policy_refuses_over_grpc(timeout_repository: Path) -> None:
    from tests.server.conftest import RunningServer, server_options

    running = RunningServer(server_options(timeout_repository, adaptive_delay=False))
    try:
        inputs = [grpcclient.InferInput("tokens", [1, 100], "INT32")]
        inputs[0].set_data_from_numpy(np.ones((1, 100), np.int32))
        with grpcclient.InferenceServerClient(running.target) as client:
            config = client.get_model_config(MODEL).config.dynamic_batching.default_queue_policy
            assert config.default_timeout_microseconds == 100000 and config.allow_timeout_override
            for timeout_us, says in ((None, "100000 us"), (30_000, "30000 us")):
                started_s = time.perf_counter()
                with pytest.raises(InferenceServerException) as raised:
                    client.infer(MODEL, inputs, timeout=timeout_us)
                assert time.perf_counter() - started_s < 0.45  # before the 500 ms delay ran out
                assert raised.value.status() == "StatusCode.UNAVAILABLE"
                assert f"past its queue timeout of {says}" in raised.value.message()
        assert running.metric("servescope_requests_rejected_total", model=MODEL, reason="deadline") == 2
        assert running.metric("servescope_requests_total", model=MODEL, code="UNAVAILABLE") == 2
    finally:
        running.close()


def test_timeout_action_delay_is_refused_at_start_naming_the_file(timeout_repository: Path) -> None:
    from server.app import ServerOptions, batch_settings
    from servescope.repository import list_models

    config = timeout_repository / MODEL / "config.pbtxt"
    config.write_text(config.read_text().replace("allow_timeout_override: true", "timeout_action: DELAY"))
    (entry,) = list_models(timeout_repository)
    with pytest.raises(RepositoryError, match="timeout_action DELAY is not supported") as raised:
        batch_settings(entry, ServerOptions(model_repository=timeout_repository))
    assert str(config) in str(raised.value)


def test_the_flag_sets_every_model_s_queue_timeout(model_repository: Path, tmp_path: Path) -> None:
    import argparse

    from server.cli import add_arguments, options_from_args
    from servescope.errors import UsageError
    from tests.server.conftest import RunningServer, server_options

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--model-repository", str(tmp_path)]
    flagged = options_from_args(parser.parse_args([*base, "--queue-timeout-us", "20000"]))
    assert flagged.queue_timeout_us == 20000
    assert options_from_args(parser.parse_args(base)).queue_timeout_us is None  # as config.pbtxt says
    with pytest.raises(UsageError, match="--queue-timeout-us 3600000001: above the maximum 3600000000"):
        options_from_args(parser.parse_args([*base, "--queue-timeout-us", "3600000001"]))
    running = RunningServer(
        server_options(
            model_repository, models=(MODEL,), max_queue_delay_us=500_000, adaptive_delay=False,
            queue_timeout_us=50_000,
        )
    )  # fmt: skip
    try:
        inputs = [grpcclient.InferInput("tokens", [1, 100], "INT32")]
        inputs[0].set_data_from_numpy(np.ones((1, 100), np.int32))
        with grpcclient.InferenceServerClient(running.target) as client:
            with pytest.raises(InferenceServerException) as raised:
                client.infer(MODEL, inputs, timeout=10_000)  # no override: config.pbtxt does not allow it
            assert raised.value.status() == "StatusCode.UNAVAILABLE"
            assert "past its queue timeout of 50000 us" in raised.value.message()
    finally:
        running.close()
