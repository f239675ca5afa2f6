"""`servescope export` on the command line: bad input, --force, .npz datasets, Keras' loader semantics.

Refusals happen before TensorFlow loads, so those tests take a fraction of a second each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from exporter.datasets import keras_imdb_split, read_imdb_npz
from loadtest.procs import child_env

REPO_ROOT = Path(__file__).resolve().parents[2]
ERROR_PREFIX = "servescope export: error: "


def export(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    env = child_env({"TF_CPP_MIN_LOG_LEVEL": "2"})
    return subprocess.run(
        [sys.executable, "-m", "cli", "export", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def assert_usage_error(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], *fragments: str) -> str:
    """`servescope export ARGS` (in this process: refusals come before TensorFlow) exits 2 with one line."""
    capsys.readouterr()
    code = main(["export", *args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(ERROR_PREFIX)
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def imdb_reviews(count: int, rng: np.random.Generator) -> list[list[int]]:
    """Reviews as lists of word ranks (from 1), of 5 to 200 words."""
    return [rng.integers(1, 12000, size=int(rng.integers(5, 200))).tolist() for _ in range(count)]


def write_imdb_npz(path: Path, *, train: int, test: int, seed: int = 0, pickled: bool = False) -> None:
    """A small dataset file: reviews as 2-D int32 arrays padded with 0 (the format servescope reads from
    any file), or with pickled=True as Keras' imdb.npz holds them (object arrays of lists)."""
    rng = np.random.default_rng(seed)

    def packed(reviews: list[list[int]]) -> np.ndarray:
        if pickled:
            out = np.empty(len(reviews), dtype=object)
            for i, review in enumerate(reviews):
                out[i] = review
            return out
        rows = np.zeros((len(reviews), max(map(len, reviews))), np.int32)
        for i, review in enumerate(reviews):
            rows[i, : len(review)] = review
        return rows

    x_train, x_test = imdb_reviews(train, rng), imdb_reviews(test, rng)
    np.savez(
        path,
        x_train=packed(x_train),
        y_train=rng.integers(0, 2, size=train),
        x_test=packed(x_test),
        y_test=rng.integers(0, 2, size=test),
    )


def test_import_is_light() -> None:
    code = "import sys, exporter.cli, exporter.pipeline; print(sorted(m for m in ('tensorflow', 'keras', "
    code += "'tf2onnx', 'onnxruntime', 'onnx') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=child_env(),
    )
    assert done.stdout.strip() == "[]"


def test_help_names_every_flag_with_defaults() -> None:
    done = export("--help")
    assert done.returncode == 0
    for flag in (
        "--dataset",
        "--epochs",
        "--train-samples",
        "--output",
        "--force",
        "--test-samples",
        "--batch-size",
        "--seed",
        "--dataset-path",
        "--max-batch-size",
        "--max-queue-delay-us",
        "--preferred-batch-size",
        "--max-queue-size",
        "--instances",
        "--instance-kind",
        "--variants",
    ):
        assert flag in done.stdout
    assert "(default: 10)" in done.stdout and "(default: models)" in done.stdout


def test_unknown_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_usage_error(
        capsys,
        ("--dataset", "mnist", "--output", str(tmp_path / "m")),
        "--dataset 'mnist'",
        "unknown dataset",
    )
    assert not (tmp_path / "m").exists()


def test_missing_npz_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.npz"
    assert_usage_error(
        capsys, ("--dataset", str(missing), "--output", str(tmp_path / "m")), str(missing), "file not found"
    )


def test_imdb_offline_says_how_to_get_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "imdb.npz"
    line = assert_usage_error(
        capsys,
        ("--dataset", "imdb", "--dataset-path", str(missing), "--output", str(tmp_path / "m")),
        str(missing),
        "does not download",
    )
    assert "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz" in line


def test_npz_that_is_not_an_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip file")
    assert_usage_error(
        capsys,
        ("--dataset", str(bad), "--test-samples", "256", "--output", str(tmp_path / "m")),
        "not a readable .npz",
    )


def test_npz_with_too_few_reviews(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = tmp_path / "small.npz"
    write_imdb_npz(small, train=50, test=300)
    assert_usage_error(
        capsys,
        ("--dataset", str(small), "--train-samples", "100", "--output", str(tmp_path / "m")),
        "has 50 training and 300 test reviews",
    )


def test_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_usage_error(capsys, ("--output", str(blocker / "models")), "cannot write there")
    assert_usage_error(capsys, ("--output", str(blocker)), "exists and is not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through folder permissions")
def test_read_only_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert_usage_error(capsys, ("--output", str(locked / "models")), "cannot write there")


def test_existing_model_folder_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "models" / "sentiment_int8"
    keep.mkdir(parents=True)
    (keep / "mine.txt").write_text("do not touch")
    assert_usage_error(
        capsys, ("--output", str(tmp_path / "models")), "sentiment_int8 already exists", "--force"
    )
    assert (keep / "mine.txt").read_text() == "do not touch"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["sentiment_int8"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--variants", "fp32,bf16"), "unknown precision 'bf16'"),
        (("--variants", "fp32,fp32"), "named twice"),
        (("--test-samples", "100"), "--test-samples 100: must be at least 256"),
        (("--epochs", "0"), "--epochs 0: must be at least 1"),
        (("--max-batch-size", "0"), "--max-batch-size 0"),
        (("--opset", "13"), "--opset 13"),
        (("--dataset-path", "x.npz"), "only used with --dataset imdb"),
        (("--instance-kind", "tpu"), "--instance-kind 'tpu': must be one of cpu, gpu"),
    ],
)
def test_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], fragment: str
) -> None:
    assert_usage_error(capsys, (*args, "--output", str(tmp_path / "m")), fragment)


def test_npz_with_too_few_reviews_leaves_no_new_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = tmp_path / "small.npz"
    write_imdb_npz(small, train=300, test=100)
    output = tmp_path / "new" / "models"
    assert_usage_error(
        capsys,
        ("--dataset", str(small), "--train-samples", "300", "--output", str(output)),
        "has 300 training and 100 test reviews",
    )
    assert not output.exists()


def test_preferred_batch_sizes_replace_the_default_and_cap_at_max_batch() -> None:
    from cli.main import build_parser
    from exporter.pipeline import ExportOptions, _model_config

    argv = ["export", "--preferred-batch-size", "4", "--preferred-batch-size", "32", "--max-batch-size", "16"]
    args = build_parser(argv).parse_args(argv)
    assert args.preferred_batch_size == [4, 32]
    assert build_parser(["export"]).parse_args(["export"]).preferred_batch_size == [8, 16, 32, 64]
    options = ExportOptions(output=Path("unused"), max_batch_size=16, preferred_batch_sizes=(4, 32))
    config = _model_config("sentiment_fp32", options)
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert config.max_batch_size == 16


def test_instance_kind_writes_kind_gpu_for_gpu_deployment(tmp_path: Path) -> None:
    """--instance-kind gpu: Triton would run KIND_CPU models on the CPU even on a GPU host."""
    from cli.main import build_parser
    from exporter.pipeline import ExportOptions, _model_config
    from servescope.protocol import model_config_pb2 as mc
    from servescope.repository import read_config, write_config

    assert build_parser(["export"]).parse_args(["export"]).instance_kind == "cpu"
    argv = ["export", "--instance-kind", "gpu", "--instances", "2"]
    args = build_parser(argv).parse_args(argv)
    options = ExportOptions(output=tmp_path, instances=args.instances, instance_kind=args.instance_kind)
    write_config(_model_config("sentiment_fp32", options), tmp_path / "config.pbtxt")
    assert "kind: KIND_GPU" in (tmp_path / "config.pbtxt").read_text()
    groups = read_config(tmp_path / "config.pbtxt").instance_group
    assert [(g.count, g.kind) for g in groups] == [(2, mc.ModelInstanceGroup.KIND_GPU)]
    cpu = _model_config("sentiment_fp32", ExportOptions(output=tmp_path))
    assert [g.kind for g in cpu.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]


def test_padded_and_pickled_forms_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-D zero-padded file reads exactly as Keras' object-array form of the same reviews (that form
    read here as if it were Keras' published file, the only one whose pickles are read)."""
    from exporter import datasets

    padded, pickled = tmp_path / "padded.npz", tmp_path / "pickled.npz"
    write_imdb_npz(padded, train=40, test=30, seed=5)
    write_imdb_npz(pickled, train=40, test=30, seed=5, pickled=True)
    monkeypatch.setattr(datasets, "KERAS_IMDB_SHA256", datasets._sha256(pickled))
    one, other = read_imdb_npz(padded), read_imdb_npz(pickled)
    assert one["x_train"] == other["x_train"] and one["x_test"] == other["x_test"]
    assert one["y_train"].tolist() == other["y_train"].tolist()


@pytest.mark.slow
def test_reader_matches_keras_imdb_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our .npz reading equals keras.datasets.imdb.load_data(num_words=10000) on the same file.

    Keras' loader only accepts the published file's hash (anything else triggers a download), so its
    file lookup is pointed at our file, and our reader is told that file is the published one; Keras
    runs in a child process to keep TensorFlow out of this one.
    """
    from exporter import datasets

    path = tmp_path / "tiny_imdb.npz"
    write_imdb_npz(path, train=40, test=30, seed=5, pickled=True)
    monkeypatch.setattr(datasets, "KERAS_IMDB_SHA256", datasets._sha256(path))
    script = textwrap.dedent(
        f"""
        import pickle, sys
        from keras.src.datasets import imdb
        import keras
        imdb.get_file = lambda *a, **k: {str(path)!r}
        (xt, yt), (xv, yv) = imdb.load_data(num_words=10000)
        padded = keras.utils.pad_sequences(list(xt) + list(xv), maxlen=100)
        sys.stdout.buffer.write(pickle.dumps(([list(map(int, x)) for x in xt], yt.tolist(),
                                              [list(map(int, x)) for x in xv], yv.tolist(), padded.tolist())))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        check=True,
        timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    import pickle

    keras_xt, keras_yt, keras_xv, keras_yv, keras_padded = pickle.loads(done.stdout)
    (xt, yt), (xv, yv) = keras_imdb_split(read_imdb_npz(path))
    assert xt == keras_xt and xv == keras_xv
    assert yt.tolist() == keras_yt and yv.tolist() == keras_yv
    assert any(2 in x for x in xt)  # ranks past the vocabulary became the out-of-vocabulary id
    from servescope.corpus import pad_sequences

    assert pad_sequences(xt + xv).tolist() == keras_padded


@pytest.mark.slow
def test_force_replaces_only_the_named_variant_from_an_npz_dataset(tmp_path: Path) -> None:
    data = tmp_path / "tiny_imdb.npz"
    write_imdb_npz(data, train=300, test=256)
    models = tmp_path / "models"
    for name in ("sentiment_fp32", "sentiment_int8"):
        (models / name).mkdir(parents=True)
        (models / name / "mine.txt").write_text(name)
    done = export(
        "--dataset",
        str(data),
        "--train-samples",
        "300",
        "--test-samples",
        "256",
        "--epochs",
        "1",
        "--variants",
        "fp32",
        "--max-batch-size",
        "16",
        "--output",
        str(models),
        "--force",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (models / "sentiment_fp32" / "mine.txt").exists()
    assert (models / "sentiment_fp32" / "1" / "model.onnx").is_file()
    assert (models / "sentiment_int8" / "mine.txt").read_text() == "sentiment_int8"
    assert sorted(p.name for p in models.iterdir()) == ["sentiment_fp32", "sentiment_int8"]
    from servescope.repository import read_model

    entry = read_model(models / "sentiment_fp32")
    assert entry.metadata["dataset"] == {"name": "tiny_imdb.npz", "train_samples": 300, "test_samples": 256}
    assert entry.config.max_batch_size == 16
    assert list(entry.config.dynamic_batching.preferred_batch_size) == [8, 16]
    # The closing table (after Keras' progress lines) names the written variant with its numbers.
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert lines[header].split()[:3] == ["model", "size", "MB"]
    assert lines[header + 2].split()[0] == "sentiment_fp32"
    assert lines[header + 2].split()[3] == "19.66"  # MFLOP per sample
