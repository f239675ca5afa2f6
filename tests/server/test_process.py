"""`servescope serve` as a real child process: ready file, SIGTERM under load, command-line errors."""

from __future__ import annotations

import asyncio
import collections
import itertools
import queue
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from cli.main import main
from servescope.protocol import grpc_service_pb2 as pb

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "sentiment_fp32"
INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


DRAIN_ROUNDS = 5
UNARY_CLIENTS, STREAM_CLIENTS, STREAM_WINDOW = 32, 4, 8


def _infer_payload(request_id: str = "") -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=MODEL, id=request_id)
    message.inputs.add(name="tokens", datatype="INT32", shape=[1, 100])
    message.raw_input_contents.append(np.ones((1, 100), np.int32).tobytes())
    return message


def _one_stream(open_stream, stop: threading.Event, ids: Iterator[str]) -> tuple[str, str, int, int]:
    """One stream with STREAM_WINDOW requests in flight, until the server ends it (or the test stops):
    (code, details, answers, requests sent)."""
    pending: queue.Queue[pb.ModelInferRequest] = queue.Queue()
    sent: set[str] = set()

    def requests() -> Iterator[pb.ModelInferRequest]:
        while not stop.is_set():
            try:
                item = pending.get(timeout=0.05)
            except queue.Empty:
                continue
            sent.add(item.id)
            yield item

    for _ in range(STREAM_WINDOW):
        pending.put(_infer_payload(next(ids)))
    answered: list[str] = []
    code, details = "OK", ""
    try:
        for answer in open_stream(requests()):
            answered.append(answer.infer_response.id)
            pending.put(_infer_payload(next(ids)))
    except grpc.RpcError as exc:
        code, details = exc.code().name, exc.details() or ""
    assert len(set(answered)) == len(answered) and set(answered) <= sent  # nothing answered twice
    return code, details, len(answered), len(sent)


def _stream_client(target: str, stop: threading.Event, ended: list[tuple[str, str, int, int]]) -> None:
    """Streams one after another (a sync gRPC client, as tritonclient's streams are); records how each
    one ended."""
    ids = (f"{threading.get_ident()}-{number}" for number in itertools.count())
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        open_stream = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            pb.ModelInferRequest.SerializeToString,
            pb.ModelStreamInferResponse.FromString,
        )
        while not stop.is_set():
            ended.append(_one_stream(open_stream, stop, ids))


def _sigterm_round(serve_cli, repository: Path, ready_file: Path, workers: str) -> dict[str, object]:
    """One server, 32 unary clients that retry at once and 4 stream clients, SIGTERM after 1 s."""
    grace_s = 10.0
    process = serve_cli.start(
        repository, ready_file, "--max-queue-delay-us", "2000", "--grace-period-s", str(grace_s),
        "--workers", workers,
    )  # fmt: skip
    try:
        ready = serve_cli.wait_ready(process, ready_file)
        target = f"127.0.0.1:{ready['grpc_port']}"
        payload = _infer_payload().SerializeToString()
        stop = threading.Event()
        stream_ends: list[tuple[str, str, int, int]] = []
        streams = [
            threading.Thread(target=_stream_client, args=(target, stop, stream_ends))
            for _ in range(STREAM_CLIENTS)
        ]
        before: collections.Counter[str] = collections.Counter()
        after: collections.Counter[str] = collections.Counter()
        timing: dict[str, float] = {}

        async def load() -> None:
            options = [("grpc.use_local_subchannel_pool", 1)]
            channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(8)]
            calls = [channel.unary_unary(INFER_PATH, lambda b: b, lambda b: b) for channel in channels]

            async def client(index: int) -> None:
                while not stop.is_set():  # a client that retries at once, whatever the answer
                    sent_s = time.monotonic()
                    try:
                        await calls[index % len(calls)](payload, timeout=30)
                        code = "OK"
                    except grpc.aio.AioRpcError as exc:
                        code = exc.code().name
                    signalled_s = timing.get("signal_s")
                    (after if signalled_s is not None and sent_s >= signalled_s else before)[code] += 1

            async def terminate() -> None:
                await asyncio.sleep(1.0)
                timing["signal_s"] = time.monotonic()
                process.send_signal(signal.SIGTERM)
                while process.poll() is None:
                    await asyncio.sleep(0.01)
                timing["exit_s"] = time.monotonic()
                await asyncio.sleep(0.3)  # clients keep calling a server that is gone
                stop.set()

            try:
                await asyncio.gather(terminate(), *(client(i) for i in range(UNARY_CLIENTS)))
            finally:
                await asyncio.gather(*(channel.close() for channel in channels))

        for thread in streams:
            thread.start()
        try:
            asyncio.run(load())
        finally:
            stop.set()
            for thread in streams:
                thread.join(30)
        returncode = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = process.stderr.read()
    return {
        "returncode": returncode, "before": before, "after": after, "streams": stream_ends,
        "exit_after_s": timing["exit_s"] - timing["signal_s"], "grace_s": grace_s, "log": log,
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_under_tight_retry_load_answers_every_call_unavailable_or_ok(
    model_repository: Path, tmp_path: Path, serve_cli, workers: str
) -> None:
    """SIGTERM under 32 unary clients that retry at once plus 4 stream clients, 5 times: no call is
    CANCELLED, every call sent after the signal gets UNAVAILABLE or its answer, every stream request the
    server read is answered (the closing status says how many), exit 0 within the grace period."""
    for round_index in range(DRAIN_ROUNDS):
        got = _sigterm_round(serve_cli, model_repository, tmp_path / f"ready-{round_index}.json", workers)
        where = f"round {round_index}, {workers} worker(s)"
        closed = sum(1 for _, details, *_ in got["streams"] if "stream closed after" in details)
        print(
            f"\n{where}: exit {got['returncode']} {got['exit_after_s']:.2f} s after SIGTERM; before it "
            f"{dict(got['before'])}, sent after it {dict(got['after'])}; {len(got['streams'])} streams, "
            f"{closed} closed by the drain with every answer"
        )
        assert got["returncode"] == 0, (where, got["log"][-3000:])
        assert got["exit_after_s"] < got["grace_s"], where
        before, after = got["before"], got["after"]
        assert before["OK"] > 50, (where, before)
        assert set(before) | set(after) <= {"OK", "UNAVAILABLE"}, (where, before, after)
        assert after["UNAVAILABLE"] > 0, (where, after)
        ends = got["streams"]
        assert ends and {code for code, *_ in ends} <= {"OK", "UNAVAILABLE"}, (where, ends)
        for code, details, answered, sent in ends:
            closed = re.search(r"stream closed after (\d+) answers", details)
            if closed:  # ended by the drain: every request it read was answered
                assert answered == int(closed.group(1)) and answered <= sent, (where, details, answered)
            else:  # refused before it was read, or no server any more: nothing was answered
                assert code == "UNAVAILABLE" and answered == 0, (where, code, details, answered)
        assert any(re.search("stream closed after [1-9]", details) for _, details, *_ in ends), (where, ends)
        assert "draining" in got["log"] and "Traceback" not in got["log"], where


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
