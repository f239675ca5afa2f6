"""Restricted endpoint groups (--grpc-restricted-protocol, --http-restricted-api, as Triton's): every
group, over tritonclient grpc and http, with the right key, a wrong one and none; a refusal is
PERMISSION_DENIED / 403 with one line naming the group and the header, and the key is never logged,
shown or exported as a metric."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from server.restricted import GROUPS, GRPC_HEADER_PREFIX, Restrictions, parse
from servescope.protocol import grpc_service_pb2 as pb

MODEL = "sentiment_fp32"
ADMIN_KEY, USER_KEY = "admin-s3cret-7f1c", "user-s3cret-9a2e"
ADMIN = "statistics,model-config,model-repository,shared-memory,trace"
USER = "health,metadata,inference"
GRPC_ADMIN = {f"{GRPC_HEADER_PREFIX}admin-key": ADMIN_KEY}
GRPC_USER = {f"{GRPC_HEADER_PREFIX}user-key": USER_KEY}
HTTP_ADMIN, HTTP_USER = {"admin-key": ADMIN_KEY}, {"user-key": USER_KEY}


def test_parse_takes_triton_syntax_and_never_shows_the_key() -> None:
    restriction = parse(f"{ADMIN}:Admin-Key={ADMIN_KEY}", "--grpc-restricted-protocol", GRPC_HEADER_PREFIX)
    assert restriction.groups == frozenset(ADMIN.split(","))
    assert restriction.header == "triton-grpc-protocol-admin-key"
    assert ADMIN_KEY not in repr(restriction)
    for bad, says in [
        (f"statistics={ADMIN_KEY}", "expected <group>[,<group>...]:<key>=<value>"),
        (f"statistics:admin-key{ADMIN_KEY}", "expected <group>[,<group>...]:<key>=<value>"),
        (f"statistics,logs:k={ADMIN_KEY}", "unknown endpoint group 'logs'"),
        (f"statistics:a key={ADMIN_KEY}", "has spaces or control characters"),
    ]:
        with pytest.raises(ValueError, match="--http-restricted-api") as raised:
            parse(bad, "--http-restricted-api")
        assert says in str(raised.value) and ADMIN_KEY not in str(raised.value)
    twice = [parse(f"health,metadata:a={ADMIN_KEY}", "-f"), parse(f"health:b={USER_KEY}", "-f")]
    with pytest.raises(ValueError, match="endpoint group 'health' is in more than one restriction"):
        Restrictions(twice, "-f")


def test_the_command_line_refuses_a_bad_restriction_in_one_line(tmp_path) -> None:
    import argparse

    from server.cli import add_arguments, options_from_args
    from servescope.errors import UsageError

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--model-repository", str(tmp_path), "--http-restricted-api", f"stats:k={USER_KEY}"]
    )
    with pytest.raises(UsageError) as raised:
        options_from_args(args)
    assert "--http-restricted-api: unknown endpoint group 'stats'" in str(raised.value)
    assert USER_KEY not in str(raised.value)
    args = parser.parse_args(
        ["--model-repository", str(tmp_path), "--grpc-restricted-protocol", f"{USER}:k={USER_KEY}"]
    )
    options = options_from_args(args)
    assert options.grpc_restricted[0].header == "triton-grpc-protocol-k" and USER_KEY not in repr(options)


@pytest.fixture(scope="module")
def restricted(model_repository, request):
    from tests.server.conftest import RunningServer, server_options

    options = server_options(
        model_repository,
        models=(MODEL,),
        grpc_restricted=(
            parse(f"{ADMIN}:admin-key={ADMIN_KEY}", "--grpc-restricted-protocol", GRPC_HEADER_PREFIX),
            parse(f"{USER}:user-key={USER_KEY}", "--grpc-restricted-protocol", GRPC_HEADER_PREFIX),
        ),
        http_restricted=(
            parse(f"{ADMIN}:admin-key={ADMIN_KEY}", "--http-restricted-api"),
            parse(f"{USER}:user-key={USER_KEY}", "--http-restricted-api"),
        ),
    )
    running = RunningServer(options)
    yield running
    running.close()


def grpc_calls(client: grpcclient.InferenceServerClient) -> dict[str, object]:
    """One tritonclient.grpc call per group: group -> a function of the headers."""
    inputs = [grpcclient.InferInput("tokens", [1, 100], "INT32")]
    inputs[0].set_data_from_numpy(np.ones((1, 100), np.int32))
    return {
        "health": lambda h: client.is_server_ready(headers=h),
        "metadata": lambda h: client.get_model_metadata(MODEL, headers=h),
        "inference": lambda h: client.infer(MODEL, inputs, headers=h),
        "statistics": lambda h: client.get_inference_statistics(MODEL, headers=h),
        "model-config": lambda h: client.get_model_config(MODEL, headers=h),
        "model-repository": lambda h: client.get_model_repository_index(headers=h),
        "shared-memory": lambda h: client.get_system_shared_memory_status(headers=h),
        "trace": lambda h: client.get_trace_settings(headers=h),
    }


def denied_message(group: str, header: str, sent: bool) -> str:
    why = "the key sent does not match" if sent else "no such header in the call"
    return f"endpoint group {group!r} is restricted: send header {header!r} with its key ({why})"


def test_grpc_every_group_with_and_without_its_key(restricted, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with grpcclient.InferenceServerClient(restricted.target) as client:
        calls = grpc_calls(client)
        assert set(calls) == set(GROUPS)
        for group, call in calls.items():
            right, header = (
                (GRPC_ADMIN, "admin-key") if group in ADMIN.split(",") else (GRPC_USER, "user-key")
            )
            wrong = {name: "not-the-key" for name in right}
            other = GRPC_USER if right is GRPC_ADMIN else GRPC_ADMIN  # the other group's key does not open it
            for headers, sent in ((None, False), (wrong, True), (other, False)):
                with pytest.raises(InferenceServerException) as raised:
                    call(headers)
                assert raised.value.status() == "StatusCode.PERMISSION_DENIED", (group, raised.value)
                assert raised.value.message() == denied_message(group, GRPC_HEADER_PREFIX + header, sent)
            if group in ("shared-memory", "trace"):  # opened, but servescope does not serve them
                with pytest.raises(InferenceServerException) as raised:
                    call(right)
                assert raised.value.status() == "StatusCode.UNIMPLEMENTED", (group, raised.value)
            else:
                assert call(right) is not None, group
        assert client.get_model_config(MODEL, headers=GRPC_ADMIN).config.name == MODEL
        assert client.infer(MODEL, *_infer_args(), headers=GRPC_USER).as_numpy("probability").shape == (1, 1)
    _assert_key_nowhere(restricted, caplog)


def _infer_args() -> tuple[list[grpcclient.InferInput]]:
    inputs = [grpcclient.InferInput("tokens", [1, 100], "INT32")]
    inputs[0].set_data_from_numpy(np.ones((1, 100), np.int32))
    return (inputs,)


def test_grpc_streams_and_the_health_service_are_restricted_too(restricted) -> None:
    async def scenario() -> tuple[list[str], str]:
        async with grpc.aio.insecure_channel(restricted.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            codes = []
            for metadata in ((), tuple(GRPC_USER.items())):
                try:
                    answer = await health.Check(
                        health_pb2.HealthCheckRequest(), metadata=metadata, timeout=10
                    )
                    codes.append(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))
                except grpc.aio.AioRpcError as exc:
                    codes.append(f"{exc.code().name}: {exc.details()}")
            stream = channel.stream_stream(
                "/inference.GRPCInferenceService/ModelStreamInfer",
                pb.ModelInferRequest.SerializeToString,
                pb.ModelStreamInferResponse.FromString,
            )()
            try:
                await stream.read()
                stream_end = "no error"
            except grpc.aio.AioRpcError as exc:
                stream_end = f"{exc.code().name}: {exc.details()}"
            return codes, stream_end

    codes, stream_end = asyncio.run(scenario())
    header = GRPC_HEADER_PREFIX + "user-key"
    assert codes == [f"PERMISSION_DENIED: {denied_message('health', header, False)}", "SERVING"]
    assert stream_end == f"PERMISSION_DENIED: {denied_message('inference', header, False)}"


def test_rest_every_group_with_and_without_its_key(restricted, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    base = f"http://{restricted.http_target}/v2"
    paths = {
        "health": ("GET", "/health/ready", 200),
        "metadata": ("GET", f"/models/{MODEL}", 200),
        "inference": ("POST", f"/models/{MODEL}/infer", 200),
        "statistics": ("GET", f"/models/{MODEL}/stats", 200),
        "model-config": ("GET", f"/models/{MODEL}/config", 200),
        "model-repository": ("POST", "/repository/index", 200),
        "shared-memory": ("GET", "/systemsharedmemory/status", 404),
        "trace": ("GET", "/trace/setting", 404),
    }
    assert set(paths) == set(GROUPS)
    body = (
        b'{"inputs":[{"name":"tokens","datatype":"INT32","shape":[1,100],"data":['
        + b",".join([b"1"] * 100)
        + b"]}]}"
    )
    for group, (method, path, opened) in paths.items():
        right, header = (HTTP_ADMIN, "admin-key") if group in ADMIN.split(",") else (HTTP_USER, "user-key")
        for headers, sent in (({}, False), ({header: "not-the-key"}, True)):
            status, text = _http(method, base + path, headers, body)
            assert status == 403, (group, status, text)
            assert json.loads(text) == {"error": denied_message(group, header, sent)}, text
        status, text = _http(method, base + path, right, body)
        assert status == opened, (group, status, text)
    with httpclient.InferenceServerClient(restricted.http_target) as client:
        with pytest.raises(InferenceServerException) as raised:
            client.get_model_config(MODEL)
        assert raised.value.status() == "403"
        assert raised.value.message() == denied_message("model-config", "admin-key", False)
        assert client.get_model_config(MODEL, headers=HTTP_ADMIN)["name"] == MODEL
        inputs = [httpclient.InferInput("tokens", [1, 100], "INT32")]
        inputs[0].set_data_from_numpy(np.ones((1, 100), np.int32))
        with pytest.raises(InferenceServerException) as raised:
            client.infer(MODEL, inputs)
        assert raised.value.status() == "403"
        assert client.infer(MODEL, inputs, headers=HTTP_USER).as_numpy("probability").shape == (1, 1)
        assert client.is_server_ready(headers=HTTP_USER) and not client.is_server_ready()
    _assert_key_nowhere(restricted, caplog)


def _http(method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    data = body if method == "POST" else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _assert_key_nowhere(running, caplog: pytest.LogCaptureFixture) -> None:
    status, metrics_text = running.http_get("/metrics")
    assert status == 200
    for key in (ADMIN_KEY, USER_KEY):
        assert key not in caplog.text and key not in metrics_text
