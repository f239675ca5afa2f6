"""The load client's options without a server: perf_analyzer input data, connection settings, campaign
keys, the REST body the client builds (read back by the server's own codec), the shared status table."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from loadtest.campaign_config import REDACTED, CampaignConfigError, parse_campaign_config
from loadtest.connection import Connection, ConnectionSettingsError, parse_header
from loadtest.input_data import batches, read_input_data, sample_arrays
from loadtest.payload import InputSpec, PayloadError, requests_from_tensors, rest_body
from servescope.status import HTTP_STATUS, grpc_name_of_http

TOKENS = [InputSpec("tokens", "INT32", (-1, 4))]


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(document))
    return path


def test_input_data_in_every_perf_analyzer_form(tmp_path: Path) -> None:
    raw = np.array([7, 8, 9, 10], "<i4").tobytes()
    path = write(
        tmp_path,
        {
            "data": [
                {"tokens": [1, 2, 3, 4]},
                {"tokens": [[5, 6], [7, 8]]},  # nested row-major lists
                {"tokens": {"b64": base64.b64encode(raw).decode()}},
                {"tokens": {"content": [1, 1, 2, 2], "shape": [4]}},
                {"tokens": {"content": {"b64": base64.b64encode(raw).decode()}, "shape": [1, 4]}},  # batch-1
            ],
            "validation_data": [{"probability": [0.5]}],
        },
    )
    samples = sample_arrays(read_input_data(path), TOKENS, "m")
    assert [s[0].tolist() for s in samples] == [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
        [7, 8, 9, 10],
        [1, 1, 2, 2],
        [7, 8, 9, 10],
    ]
    assert all(s[0].dtype == np.dtype("<i4") for s in samples)
    # Batch 2 over 5 entries: 5 requests hold consecutive samples, cycling, so every entry is sent.
    built = batches(samples, 2)
    assert len(built) == 5
    assert [b[0].tolist() for b in built[:3]] == [
        [[1, 2, 3, 4], [5, 6, 7, 8]],
        [[7, 8, 9, 10], [1, 1, 2, 2]],
        [[7, 8, 9, 10], [1, 2, 3, 4]],
    ]
    (request, *_) = requests_from_tensors("m", TOKENS, built, version="3")
    assert request.model_version == "3" and list(request.inputs[0].shape) == [2, 4]
    assert request.raw_input_contents[0] == np.array([[1, 2, 3, 4], [5, 6, 7, 8]], "<i4").tobytes()


def test_sequence_streams_are_read_one_after_the_other(tmp_path: Path) -> None:
    path = write(
        tmp_path, {"data": [[{"tokens": [1, 1, 1, 1]}, {"tokens": [2, 2, 2, 2]}], [{"tokens": [3] * 4}]]}
    )
    assert [s[0][0] for s in sample_arrays(read_input_data(path), TOKENS, "m")] == [1, 2, 3]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"rows": []}, 'expected an object with a "data" list'),
        ({"data": []}, '"data" holds no entry'),
        ({"data": [7]}, "data[0]: expected an object of input name -> data"),
        ({"data": [{"tokens": "1 2 3 4"}]}, 'data[0].tokens: expected a list of values, {"b64": ...}'),
        ({"data": [{"tokens": {"b64": "***"}}]}, "data[0].tokens.b64: not valid base64"),
        (
            {"data": [{"tokens": {"content": [1], "shape": "4"}}]},
            "data[0].tokens.shape: '4' is not a list of sizes",
        ),
    ],
)
def test_malformed_input_files_name_the_entry(tmp_path: Path, document: object, message: str) -> None:
    with pytest.raises(PayloadError, match=r"--input-data .*input\.json") as raised:
        read_input_data(write(tmp_path, document))
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("entry", "inputs", "message"),
    [
        ({"words": [1, 2, 3, 4]}, TOKENS,
         "model 'm' has inputs ['tokens']; the entry lacks ['tokens'] and names unknown ['words']"),
        ({"tokens": [1, 2, 3]}, TOKENS, "input 'tokens': 3 values, shape [4] needs 4"),
        ({"tokens": {"b64": base64.b64encode(b"\0" * 8).decode()}}, TOKENS, "b64 holds 8 bytes, shape [4] of "
         "INT32 needs 16"),
        ({"tokens": {"content": [1] * 6, "shape": [6]}}, TOKENS,
         "shape [6] does not fit the model's [-1, 4]"),
        ({"tokens": [1, 2]}, [InputSpec("tokens", "INT32", (-1, -1))],
         "has variable dimensions: give \"shape\""),
        ({"tokens": [1e10, 2, 3, 4]}, [InputSpec("tokens", "INT8", (-1, 4))], "the values do not fit INT8"),
    ],
)  # fmt: skip
def test_input_data_that_does_not_fit_the_model(tmp_path: Path, entry, inputs, message: str) -> None:
    entries = read_input_data(write(tmp_path, {"data": [entry]}))
    with pytest.raises(PayloadError) as raised:
        sample_arrays(entries, inputs, "m")
    assert "input data entry 0" in str(raised.value) and message in str(raised.value)


def test_the_rest_body_is_what_the_server_reads() -> None:
    """The client's binary-extension body, decoded by the server's own REST codec."""
    from server.rest_codec import infer_request

    arrays = [[np.arange(8, dtype="<i4").reshape(2, 4)]]
    (request,) = requests_from_tensors("m", TOKENS, arrays)
    request.id = "r1"
    body, header_length = rest_body(request)
    asked = infer_request("m", "", body, header_length)
    (tensor,) = asked.request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape, tensor.where) == (
        "tokens",
        "INT32",
        (2, 4),
        "binary data",
    )
    assert bytes(tensor.data) == arrays[0][0].tobytes()
    assert asked.request.id == "r1" and asked.binary_default is True and asked.request.outputs == []


def test_connection_settings_are_checked(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    Connection(protocol="http", tls_ca=str(ca), headers={"Authorization": "Bearer t"}).check()
    cases = [
        (Connection(protocol="http", streaming=True), "streaming needs protocol grpc"),
        (Connection(protocol="soap"), "protocol 'soap': must be one of grpc, http"),
        (
            Connection(tls_cert=str(ca)),
            "tls_cert and tls_key (the client certificate) must be given together",
        ),
        (Connection(tls_ca=str(tmp_path / "missing.pem")), "missing.pem: no such file"),
        (Connection(headers={"bad name": "1"}), "is not a valid header"),
        (Connection(headers={"grpc-timeout": "1"}), "reserves metadata keys starting with grpc-"),
    ]
    for connection, message in cases:
        with pytest.raises(ConnectionSettingsError, match=re.escape(message)):
            connection.check()
    assert Connection(headers={"X-Tenant": "a"}).metadata() == (("x-tenant", "a"),)
    assert parse_header("X-Tenant:  blue ") == ("X-Tenant", "blue")
    with pytest.raises(ConnectionSettingsError, match="expected NAME: VALUE"):
        parse_header("no colon")
    assert Connection(model_version="2").model_path("a b") == "/v2/models/a%20b/versions/2"
    assert Connection(tls_ca=str(ca)).base_url("h:1") == "https://h:1"


def test_campaign_keys_for_the_client(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "input.json").write_text('{"data": [{"tokens": [1, 2, 3, 4]}]}')
    config = parse_campaign_config(
        {
            "models": ["m"],
            "input_data": "input.json",
            "load": {"concurrency": [1], "protocol": "http", "tls_ca": "ca.pem", "model_version": 2,
                     "headers": {"Authorization": "Bearer secret"}, "probe_requests": 0},
        },
        base_dir=tmp_path,
    )  # fmt: skip
    connection = config.connection
    assert (connection.protocol, connection.tls_ca, connection.model_version) == (
        "http", str(tmp_path / "ca.pem"), "2",
    )  # fmt: skip
    assert connection.headers == {"Authorization": "Bearer secret"}
    assert config.input_data == str(tmp_path / "input.json") and config.probe_requests == 0
    assert config.raw["load"]["headers"] == {"Authorization": REDACTED}  # campaign.json: no credentials
    defaults = parse_campaign_config({"models": ["m"], "load": {"concurrency": [1]}})
    assert (
        defaults.connection == Connection() and defaults.input_data is None and defaults.probe_requests == 200
    )
    bad = [
        ({"protocol": "http", "streaming": True}, "load: streaming needs protocol grpc"),
        ({"protocol": "udp"}, "load.protocol: 'udp' must be one of grpc, http"),
        ({"tls_ca": "nope.pem"}, "load.tls_ca: 'nope.pem' is not a file"),
        ({"headers": ["a"]}, "load.headers: ['a'] must be a mapping of header names to values"),
        ({"streaming": "yes"}, "load.streaming: 'yes' must be true or false"),
        ({"probe_requests": -1}, "load.probe_requests: -1 must be at least 0"),
    ]
    for load, message in bad:
        with pytest.raises(CampaignConfigError, match=re.escape(message)):
            parse_campaign_config({"models": ["m"], "load": {"concurrency": [1], **load}}, base_dir=tmp_path)


def test_one_status_table_for_both_protocols() -> None:
    from server import errors

    for error in (errors.InvalidInput, errors.ModelNotFound, errors.Unavailable, errors.Overloaded,
                  errors.DeadlineExpired, errors.ServingError):  # fmt: skip
        assert error.http_status == HTTP_STATUS[error.status]
        assert grpc_name_of_http(error.http_status) == error.status
    assert [grpc_name_of_http(s) for s in (200, 413, 405, 418, 502)] == [
        "OK", "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "UNKNOWN",
    ]  # fmt: skip
