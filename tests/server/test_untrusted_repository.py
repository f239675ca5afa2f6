"""Untrusted model repositories and TLS files: every bad one is refused at start-up, exit 2, one line that
names the file and the field (never a traceback, never a server that starts and then answers INTERNAL);
nothing outside the repository is served (docs/server.md, Model repository)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cli.main import main

MODEL = "sentiment_fp32"
PREFIX = "servescope serve: error: "
# Every port free (0): the REST default 8000 may be taken by another server on the machine.
FREE_PORTS = ["--grpc-port", "0", "--http-port", "0", "--metrics-port", "0"]


def copy_model(model_repository: Path, repo: Path, name: str = MODEL) -> Path:
    folder = repo / name
    shutil.copytree(model_repository / MODEL, folder)
    return folder


def edit_config(folder: Path, old: str, new: str) -> None:
    path = folder / "config.pbtxt"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def edit_metadata(folder: Path, change: Callable[[dict], None]) -> None:
    data = json.loads((folder / "metadata.json").read_text())
    change(data)
    (folder / "metadata.json").write_text(json.dumps(data))


def set_min_value(value: object) -> Callable[[Path], None]:
    return lambda folder: edit_metadata(folder, lambda d: d["inputs"]["tokens"].update(min_value=value))


def link_version_outside(folder: Path) -> None:
    outside = folder.parent.parent / "elsewhere"
    shutil.copytree(folder / "1", outside)
    (folder / "2").symlink_to(outside, target_is_directory=True)


def deep_json(folder: Path) -> None:
    (folder / "metadata.json").write_text("[" * 100_000 + "]" * 100_000)


# (case id, how the model folder is broken, fragments of the one error line)
REPOSITORIES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    (
        "min-value-list",
        set_min_value([0]),
        ["metadata.json: inputs.tokens.min_value: [0] must be a finite number"],
    ),
    ("min-value-nan", set_min_value(float("nan")), ["inputs.tokens.min_value: nan must be a finite number"]),
    (
        "min-above-max",
        set_min_value(20000),
        ["metadata.json: inputs.tokens: min_value 20000 is above max_value 9999"],
    ),
    (
        "inputs-not-object",
        lambda f: edit_metadata(f, lambda d: d.update(inputs=[1])),
        ["metadata.json: inputs: [1] must be an object"],
    ),
    (
        "precision-dict",
        lambda f: edit_metadata(f, lambda d: d.update(precision={"a": 1})),
        ["metadata.json: precision: {'a': 1} must be a string"],
    ),
    ("metadata-deep", deep_json, ["metadata.json: not valid JSON"]),
    (
        "metadata-not-utf8",
        lambda f: (f / "metadata.json").write_bytes(b'{"precision": "\xff\xfe"}'),
        ["metadata.json: model metadata is not UTF-8 text (byte b'\\xff' at offset 15)"],
    ),
    (
        "config-not-utf8",
        lambda f: (f / "config.pbtxt").write_bytes(b'name: "\xc3\x28"\n'),
        ["config.pbtxt: model configuration is not UTF-8 text"],
    ),
    (
        "config-huge",
        lambda f: (f / "config.pbtxt").write_text("#" * (2 << 20)),
        ["config.pbtxt: model configuration is larger than 1048576 bytes"],
    ),
    (
        "queue-delay-2^64-1",
        lambda f: edit_config(
            f, "max_queue_delay_microseconds: 1000", "max_queue_delay_microseconds: 18446744073709551615"
        ),
        [
            "config.pbtxt: dynamic_batching.max_queue_delay_microseconds 18446744073709551615 is outside",
            "0..10000000",
        ],
    ),
    (
        "instances-negative",
        lambda f: edit_config(f, "count: 1", "count: -3"),
        ["config.pbtxt: instance_group[0].count -3 is outside 0..64"],
    ),
    (
        "max-batch-size-0",
        lambda f: edit_config(f, "max_batch_size: 64", "max_batch_size: 0"),
        ["config.pbtxt: max_batch_size 0 is outside 1..65536"],
    ),
    (
        "dims-zero",
        lambda f: edit_config(f, "dims: 100", "dims: 0"),
        ["config.pbtxt: input 'tokens': dims [0]: 0 is neither -1 nor >= 1"],
    ),
    (
        "model-filename-dotdot",
        lambda f: edit_config(
            f, 'platform: "onnxruntime_onnx"', 'platform: "onnxruntime_onnx"\ndefault_model_filename: "../.."'
        ),
        ["config.pbtxt: default_model_filename '../..' must be a plain file name inside the version folder"],
    ),
    (
        "version-link-outside",
        link_version_outside,
        ["sentiment_fp32/2: leads to", "outside the model repository"],
    ),
]


@pytest.mark.parametrize(("case", "mutate", "fragments"), REPOSITORIES, ids=[r[0] for r in REPOSITORIES])
def test_a_bad_repository_is_refused_at_start_up_naming_file_and_field(
    model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, mutate, fragments
) -> None:
    repo = tmp_path / "repo"
    mutate(copy_model(model_repository, repo))
    argv = ["serve", "--model-repository", str(repo), "--host", "127.0.0.1", *FREE_PORTS]
    code = main([*argv, "--workers", "1"])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith(PREFIX)]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    assert len(lines) == 1, err[-2000:]
    for fragment in fragments:
        assert fragment in lines[0]
    assert len(lines[0]) < 1000


def test_model_folders_that_are_not_plain_names_or_lead_outside_are_refused(
    model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {}
    sneaky = tmp_path / "sneaky-repo"
    copy_model(model_repository, sneaky, "..sneaky")
    cases["..sneaky"] = (sneaky, "'..sneaky' is not a model name")
    linked = tmp_path / "linked-repo"
    linked.mkdir()
    outside = copy_model(model_repository, tmp_path / "outside")
    (linked / MODEL).symlink_to(outside, target_is_directory=True)
    cases["link"] = (linked, f"{linked / MODEL}: leads to '{outside}', outside the model repository")
    config_link = tmp_path / "config-link-repo"
    folder = copy_model(model_repository, config_link)
    (folder / "config.pbtxt").unlink()
    (folder / "config.pbtxt").symlink_to(outside / "config.pbtxt")
    cases["config-link"] = (config_link, "config.pbtxt: leads to")
    for name, (repo, fragment) in cases.items():
        argv = ["serve", "--model-repository", str(repo), "--host", "127.0.0.1", *FREE_PORTS]
        assert main([*argv, "--workers", "1"]) == 2, name
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(PREFIX) and fragment in line, (name, line)


def test_links_that_stay_inside_the_repository_are_served(
    model_repository: Path, tmp_path: Path, start_server
) -> None:
    import tritonclient.grpc as triton

    repo = tmp_path / "repo"
    folder = copy_model(model_repository, repo)
    (folder / "2").symlink_to(folder / "1", target_is_directory=True)
    running = start_server(model_repository=repo, models=(MODEL,))
    client = triton.InferenceServerClient(running.target)
    assert client.is_model_ready(MODEL, "2")
    assert client.get_model_metadata(MODEL).versions == ["2"]


def make_pem(tmp_path: Path, name: str) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    import subprocess

    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_garbage_tls_files_are_named(
    model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = make_pem(tmp_path, "server")
    _, other_key = make_pem(tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    cases = [
        (["--tls-cert", str(garbage), "--tls-key", str(key)], f"--tls-cert {garbage} / --tls-key {key}: not"),
        (["--tls-cert", str(cert), "--tls-key", str(garbage)], f"--tls-key {garbage}: not a PEM"),
        (["--tls-cert", str(cert), "--tls-key", str(other_key)], "KEY_VALUES_MISMATCH"),
        (["--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(garbage)],
         f"--tls-client-ca {garbage}: not a PEM CA certificate"),
        (["--tls-client-ca", str(cert)], "--tls-client-ca needs --tls-cert and --tls-key"),
    ]  # fmt: skip
    argv = ["serve", "--model-repository", str(model_repository), "--model", MODEL, "--host", "127.0.0.1"]
    for flags, fragment in cases:
        assert main([*argv, *FREE_PORTS, "--workers", "1", *flags]) == 2, flags
        err = capsys.readouterr().err
        line = err.strip().splitlines()[-1]
        assert line.startswith(PREFIX) and fragment in line, (flags, line)
        assert "Failed to bind" not in err and "Traceback" not in err
