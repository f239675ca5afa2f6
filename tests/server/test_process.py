"""`servescope serve` as a real child process: ready file, SIGTERM under load, command-line errors."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

import grpc
import numpy as np
import pytest

from cli.main import main
from servescope.protocol import grpc_service_pb2 as pb

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "sentiment_fp32"
INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_under_load_loses_no_accepted_request(
    model_repository: Path, tmp_path: Path, serve_cli, workers: str
) -> None:
    ready_file = tmp_path / "ready.json"
    start_serve, wait_ready = serve_cli.start, serve_cli.wait_ready
    process = start_serve(
        model_repository, ready_file, "--max-queue-delay-us", "2000", "--grace-period-s", "20",
        "--workers", workers,
    )  # fmt: skip
    try:
        ready = wait_ready(process, ready_file)
        assert ready["pid"] == process.pid and ready["grpc_port"] > 0 and ready["metrics_port"] > 0
        message = pb.ModelInferRequest(model_name=MODEL)
        message.inputs.add(name="tokens", datatype="INT32", shape=[1, 100])
        message.raw_input_contents.append(np.ones((1, 100), np.int32).tobytes())
        payload = message.SerializeToString()
        outcomes: list[tuple[str, str]] = []

        async def load() -> None:
            refused = asyncio.Event()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{ready['grpc_port']}") as channel:
                infer = channel.unary_unary(INFER_PATH, lambda b: b, lambda b: b)

                async def worker() -> None:
                    while not refused.is_set():  # stop sending once the server said it is draining
                        try:
                            await infer(payload, timeout=30)
                            outcomes.append(("OK", ""))
                        except grpc.aio.AioRpcError as exc:
                            outcomes.append((exc.code().name, exc.details() or ""))
                            refused.set()

                async def terminate() -> None:
                    await asyncio.sleep(1.0)
                    process.send_signal(signal.SIGTERM)

                await asyncio.gather(terminate(), *(worker() for _ in range(16)))

        asyncio.run(load())
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    answered = [o for o in outcomes if o[0] == "OK"]
    failed = [o for o in outcomes if o[0] != "OK"]
    assert len(answered) > 50
    # Every call either was answered, or was refused as draining before being accepted.
    odd = [o for o in failed if not (o[0] == "UNAVAILABLE" and "server is draining" in o[1])]
    assert not odd, odd
    assert "draining" in process.stderr.read()


def test_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["serve", "--model-repository", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"servescope serve: error: --model-repository {tmp_path / 'nope'}: no such folder"
    ]
    with pytest.raises(SystemExit) as raised:
        main(["serve", "--model-repository", str(tmp_path), "--grpc-port", "70000"])
    assert raised.value.code == 2
    assert "port 70000 is outside 0..65535" in capsys.readouterr().err


def test_unknown_model_is_a_usage_error(model_repository: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--model-repository", str(model_repository), "--model", "nope", "--grpc-port", "0"])
    assert code == 2
    assert "--model 'nope' is not in the repository" in capsys.readouterr().err


def test_environment_variables_give_defaults(monkeypatch: pytest.MonkeyPatch, model_repository: Path) -> None:
    import argparse

    from server.cli import add_arguments, options_from_args

    monkeypatch.setenv("SERVESCOPE_MODEL_REPOSITORY", str(model_repository))
    monkeypatch.setenv("SERVESCOPE_GRPC_PORT", "9101")
    monkeypatch.setenv("SERVESCOPE_NO_BATCHING", "true")
    monkeypatch.setenv("SERVESCOPE_MODEL", "sentiment_fp32,sentiment_int8")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = options_from_args(parser.parse_args(["--metrics-port", "9102"]))
    assert (options.model_repository, options.grpc_port, options.metrics_port) == (
        model_repository,
        9101,
        9102,
    )
    assert options.batching is False and options.models == ("sentiment_fp32", "sentiment_int8")


def test_device_cuda_without_a_gpu_is_a_startup_error(
    model_repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.gpu import gpu_count

    if gpu_count() > 0:
        pytest.skip("this machine has a GPU")
    argv = ["serve", "--model-repository", str(model_repository), "--model", MODEL, "--device", "cuda"]
    code = main([*argv, "--host", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0", "--http-port", "0"])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "servescope serve: error: --device cuda: NVML finds no GPU on this machine"
    )


def test_a_config_that_does_not_match_the_model_fails_at_startup(
    model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from servescope.repository import read_config, write_config

    broken = tmp_path / "repo"
    shutil.copytree(model_repository / MODEL, broken / MODEL)
    config = read_config(broken / MODEL / "config.pbtxt")
    config.input[0].dims[:] = [7]
    write_config(config, broken / MODEL / "config.pbtxt")
    argv = ["serve", "--model-repository", str(broken), "--host", "127.0.0.1", "--grpc-port", "0"]
    assert main([*argv, "--metrics-port", "0", "--http-port", "0"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("servescope serve: error: ") and "warm-up at batch size 1 failed" in error


def test_a_port_in_use_is_a_clear_error(model_repository: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--model-repository", str(model_repository), "--model", MODEL, "--host", "127.0.0.1"]
        assert main([*argv, "--grpc-port", "0", "--http-port", "0", "--metrics-port", str(port)]) == 1
        error = capsys.readouterr().err.strip().splitlines()[-1]
        expected = f"servescope serve: error: cannot listen for metrics HTTP on 127.0.0.1:{port}"
        assert error.startswith(expected)
        assert main([*argv, "--grpc-port", "0", "--metrics-port", "0", "--http-port", str(port)]) == 1
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith(f"servescope serve: error: cannot listen for HTTP on 127.0.0.1:{port}")
