"""Untrusted .npz datasets: no traceback, exit 2, one line naming the file and the array; pickles are
refused without being unpickled; a 2.1 MB zip bomb (2 GiB of zeros once inflated) is refused within 1 s
and 200 MB, from the sizes its directory and .npy header declare."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from exporter.datasets import read_imdb_npz
from servescope.errors import UsageError

PREFIX = "servescope export: error: "
GOOD = {
    "x_train": np.array([[1, 2, 3, 0], [4, 5, 0, 0]], np.int32),
    "y_train": np.array([0, 1]),
    "x_test": np.array([[6, 7, 8, 9]], np.int32),
    "y_test": np.array([1]),
}


def npz(path: Path, **replace: object) -> None:
    np.savez(path, **{**GOOD, **replace})


class RunsCode:
    """Unpickling this would create a file: proof that a refused pickle was never unpickled."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def pickled_payload(path: Path) -> None:
    evil = RunsCode()
    RunsCode.marker = path.parent / "pwned"
    array = np.empty(1, dtype=object)
    array[0] = evil
    np.savez(path, **{**GOOD, "x_train": array}, allow_pickle=True)


def lying_header(path: Path) -> None:
    """x_train.npy's header declares 10**9 int32 values; the member holds 8 bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i4", "fortran_order": False, "shape": (10**9,)})
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in GOOD.items():
            if key == "x_train":
                continue
            buffer = io.BytesIO()
            np.save(buffer, value)
            archive.writestr(f"{key}.npy", buffer.getvalue())
        archive.writestr("x_train.npy", header.getvalue() + bytes(8))


def write_zip_bomb(path: Path, inflated_bytes: int = 2 << 30) -> None:
    """x_train.npy declares (and really inflates to) inflated_bytes of int8 zeros; deflate blocks of 16
    MiB of zeros are computed once and repeated, so the file (about 2.1 MB) is made in well under a
    second and its CRC is right."""
    chunk = 1 << 24
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|i1", "fortran_order": False, "shape": (inflated_bytes,)}
    )
    head = header.getvalue()
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    last = compressor.flush()
    count = inflated_bytes // chunk
    crc = zlib.crc32(head)
    zeros = bytes(chunk)
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    name = b"x_train.npy"
    compressed = len(first) + count * len(block) + len(last)
    size = len(head) + count * chunk
    local = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, compressed, size, len(name), 0
    )
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0x21,
        crc,
        compressed,
        size,
        len(name),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    with path.open("wb") as out:
        out.write(local + name + first)
        for _ in range(count):
            out.write(block)
        out.write(last)
        directory_at = out.tell()
        out.write(central + name)
        out.write(
            struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name), directory_at, 0)
        )


def many_members(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(100):
            archive.writestr(f"m{index}.npy", b"")


# (case id, how the file is written, fragments of the one error line)
NPZ_FILES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    (
        "pickled-objects",
        pickled_payload,
        ["x_train.npy holds pickled Python objects (dtype object)", "refused"],
    ),
    (
        "zero-d-x",
        lambda p: npz(p, x_train=np.array(5)),
        ["x_train is a int64 array of shape ()", "2-D integer"],
    ),
    ("zero-d-y", lambda p: npz(p, y_test=np.array(1)), ["y_test is a int64 array of shape ()", "1-D array"]),
    ("one-d-x", lambda p: npz(p, x_train=np.arange(1, 5)), ["x_train is a int64 array of shape (4,)"]),
    ("float-x", lambda p: npz(p, x_test=np.ones((1, 3))), ["x_test is a float64 array of shape (1, 3)"]),
    ("negative-rank", lambda p: npz(p, x_train=np.array([[1, -5]])), ["x_train holds word rank -5"]),
    (
        "labels-not-binary",
        lambda p: npz(p, y_train=np.array([0, 7])),
        ["y_train holds labels other than 0 and 1: [0, 7]"],
    ),
    (
        "length-mismatch",
        lambda p: npz(p, y_train=np.array([0, 1, 1])),
        ["y_train has 3 labels for 2 reviews"],
    ),
    (
        "missing-array",
        lambda p: np.savez(p, x_train=GOOD["x_train"]),
        ["missing arrays ['y_train', 'x_test', 'y_test']"],
    ),
    (
        "lying-header",
        lying_header,
        ["x_train.npy declares shape (1000000000,) of int32 (4000000000 bytes) but holds 8"],
    ),
    ("many-members", many_members, ["100 members, more than 64"]),
    (
        "zip-bomb",
        write_zip_bomb,
        ["would take 2147483776 bytes once decompressed, more than 536870912", "zip bomb"],
    ),
]


@pytest.mark.parametrize(("case", "write", "fragments"), NPZ_FILES, ids=[n[0] for n in NPZ_FILES])
def test_a_bad_npz_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, write, fragments: list[str]
) -> None:
    path = tmp_path / f"{case}.npz"
    write(path)
    code = main(["export", "--dataset", str(path), "--output", str(tmp_path / "models")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith(PREFIX + f"--dataset {path}: "), err[-2000:]
    for fragment in fragments:
        assert fragment in lines[0]
    assert not (tmp_path / "pwned").exists()  # no pickle was ever unpickled


def test_the_zip_bomb_is_refused_within_1_s_and_200_mb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    write_zip_bomb(path)
    assert path.stat().st_size < 2_200_000
    with zipfile.ZipFile(path) as archive, archive.open("x_train.npy") as member:  # a real bomb: it inflates
        assert member.read(1 << 20)[-16:] == bytes(16)
    tracemalloc.start()
    start_s = time.perf_counter()
    try:
        with pytest.raises(UsageError, match="a zip bomb"):
            read_imdb_npz(path)
        elapsed_s = time.perf_counter() - start_s
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed_s < 1.0 and peak_bytes < 200 << 20, (elapsed_s, peak_bytes)
