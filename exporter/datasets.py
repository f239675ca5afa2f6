"""The training data: the seeded synthetic corpus, or IMDb reviews from a Keras-format .npz file.

No TensorFlow here. Keras' `imdb.load_data` cannot read an arbitrary file: Keras 3.15 refuses a path as
its `path` argument (only names under ~/.keras/datasets) and re-downloads any file whose hash differs from
the published one. So the .npz is read with the same rules written out: shuffle train and test with
`RandomState(113)`, prefix the start mark 1, shift word ranks by 3, map ranks past `num_words` to the
out-of-vocabulary mark 2. tests/export checks this against Keras' own loader.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servescope.corpus import INDEX_FROM, OOV_ID, START_ID, VOCAB_SIZE, pad_sequences, synthetic_reviews
from servescope.echo import one_line, shown
from servescope.errors import UsageError

IMDB_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
KERAS_IMDB_CACHE = Path("~/.keras/datasets/imdb.npz")
_KERAS_SHUFFLE_SEED = 113
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Keras' published imdb.npz (keras.datasets.imdb.load_data checks the same hash): the one file whose
# pickled object arrays are read.
KERAS_IMDB_SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
MAX_NPZ_BYTES = 512 << 20  # decompressed size of all arrays (Keras' imdb.npz: about 30 MB)
MAX_NPZ_MEMBERS = 64


@dataclass(frozen=True)
class Dataset:
    """Padded token ids (int32, [n, 100]) and 0/1 labels, plus where they came from."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "train_samples": len(self.x_train), "test_samples": len(self.x_test)}


def check_dataset_spec(spec: str, dataset_path: Path | None = None) -> None:
    """Refuse an unknown dataset or a missing file before any work; raises UsageError."""
    if spec == "synthetic":
        return
    if spec == "imdb":
        path = (dataset_path or KERAS_IMDB_CACHE).expanduser()
        if not path.is_file():
            raise UsageError(
                f"--dataset imdb: {path} not found and this command does not download; fetch {IMDB_URL} "
                f"to {KERAS_IMDB_CACHE} or pass --dataset-path FILE (or use --dataset synthetic)"
            )
        return
    if spec.endswith(".npz"):
        if not Path(spec).expanduser().is_file():
            raise UsageError(f"--dataset {spec}: file not found")
        return
    raise UsageError(f"--dataset {spec!r}: unknown dataset; use synthetic, imdb or a PATH.npz file")


def load_dataset(
    spec: str, *, train_samples: int, test_samples: int, seed: int, dataset_path: Path | None = None
) -> Dataset:
    """Resolve `--dataset` (synthetic | imdb | PATH.npz) into padded arrays.

    Raises:
        UsageError: unknown dataset, missing or unreadable file, too few samples in it.
    """
    check_dataset_spec(spec, dataset_path)
    if spec == "synthetic":
        reviews, labels = synthetic_reviews(train_samples + test_samples, seed)
        x = pad_sequences(reviews)
        return Dataset(
            name="synthetic",
            x_train=x[:train_samples],
            y_train=labels[:train_samples],
            x_test=x[train_samples:],
            y_test=labels[train_samples:],
        )
    if spec == "imdb":
        return _from_npz((dataset_path or KERAS_IMDB_CACHE).expanduser(), "imdb", train_samples, test_samples)
    path = Path(spec).expanduser()
    return _from_npz(path, path.name, train_samples, test_samples)


def _from_npz(path: Path, name: str, train_samples: int, test_samples: int) -> Dataset:
    arrays = read_imdb_npz(path)
    (x_train, y_train), (x_test, y_test) = keras_imdb_split(arrays)
    if len(x_train) < train_samples or len(x_test) < test_samples:
        raise UsageError(
            f"--dataset {path}: has {len(x_train)} training and {len(x_test)} test reviews, fewer than "
            f"--train-samples {train_samples} / --test-samples {test_samples}"
        )
    return Dataset(
        name=name,
        x_train=pad_sequences(x_train[:train_samples]),
        y_train=np.asarray(y_train[:train_samples], dtype=np.int32),
        x_test=pad_sequences(x_test[:test_samples]),
        y_test=np.asarray(y_test[:test_samples], dtype=np.int32),
    )


def keras_imdb_split(
    arrays: dict[str, np.ndarray], num_words: int = VOCAB_SIZE
) -> tuple[tuple[list[list[int]], np.ndarray], tuple[list[list[int]], np.ndarray]]:
    """Keras' `imdb.load_data(num_words=...)` processing of the raw arrays (default arguments)."""
    rng = np.random.RandomState(_KERAS_SHUFFLE_SEED)
    splits = []
    for x_key, y_key in (("x_train", "y_train"), ("x_test", "y_test")):
        indices = np.arange(len(arrays[x_key]))
        rng.shuffle(indices)
        xs = [
            [START_ID] + [w + INDEX_FROM if w + INDEX_FROM < num_words else OOV_ID for w in arrays[x_key][i]]
            for i in indices
        ]
        splits.append((xs, np.asarray(arrays[y_key])[indices]))
    return splits[0], splits[1]


def read_imdb_npz(path: Path) -> dict[str, Any]:
    """The four arrays of a Keras-format IMDb .npz, read as untrusted input.

    Member sizes are checked from the archive's directory and each .npy header before anything is
    decompressed (a 2 MB zip bomb never grows past its declared sizes); arrays of Python objects are
    pickles and are refused (allow_pickle=False semantics), except in Keras' own published imdb.npz
    (SHA-256 KERAS_IMDB_SHA256), which holds its ragged reviews that way and is read with a numpy-only
    unpickler, as Keras reads it. Reviews come as a 2-D integer array, one row of word ranks per review,
    0 as padding (removed), or as that file's lists; labels as a 1-D array of 0 and 1.

    Returns x_* as lists of word-rank lists and y_* as int arrays. Raises UsageError with one line.
    """
    where = f"--dataset {path}"
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if info.filename.endswith(".npy")]
            if len(archive.infolist()) > MAX_NPZ_MEMBERS:
                raise UsageError(f"{where}: {len(archive.infolist())} members, more than {MAX_NPZ_MEMBERS}")
            total = sum(info.file_size for info in members)
            if total > MAX_NPZ_BYTES:
                raise UsageError(
                    f"{where}: its arrays would take {total} bytes once decompressed, more than "
                    f"{MAX_NPZ_BYTES} (a zip bomb?); refused before reading"
                )
            trusted: list[bool] = []  # the file's hash, computed only if an object array turns up
            arrays = {
                info.filename[: -len(".npy")]: _read_member(archive, info, path, trusted)
                for info in members
                if info.filename[: -len(".npy")] in _NPZ_KEYS
            }
    except UsageError:
        raise
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, zlib.error, NotImplementedError) as exc:
        raise UsageError(f"{where}: not a readable .npz file: {one_line(str(exc), 200)}") from exc
    except (pickle.UnpicklingError, RecursionError, TypeError, AttributeError) as exc:
        raise UsageError(f"{where}: not a readable .npz file: {one_line(str(exc), 200)}") from exc
    missing = [key for key in _NPZ_KEYS if key not in arrays]
    if missing:
        raise UsageError(f"{where}: missing arrays {missing} (imdb.npz has {list(_NPZ_KEYS)})")
    return _checked(arrays, where)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, trusted: list[bool]) -> Any:
    """One .npy member, its header checked against the member's size before its data is read."""
    name = info.filename
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"{name}: .npy format version {version} is not supported (1.0 or 2.0)")
        if dtype.hasobject:
            if not trusted:
                trusted.append(_sha256(path) == KERAS_IMDB_SHA256)
            if not trusted[0]:
                raise UsageError(
                    f"--dataset {path}: {name} holds pickled Python objects (dtype object), and pickles can "
                    "run code: refused. Store reviews as a 2-D integer array (one row per review, 0 as "
                    "padding); only Keras' published imdb.npz is read with pickles (docs/export.md)"
                )
            return _NumpyOnlyUnpickler(stream).load()
        data_bytes = math.prod(shape) * dtype.itemsize
        header_bytes = stream.tell()
        if header_bytes + data_bytes != info.file_size:
            raise UsageError(
                f"--dataset {path}: {name} declares shape {shown(shape)} of {dtype} ({data_bytes} bytes) but "
                f"holds {info.file_size - header_bytes} bytes of data"
            )
        data = stream.read(data_bytes)
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _checked(arrays: dict[str, Any], where: str) -> dict[str, Any]:
    """x_* as lists of rank lists (ranks >= 1), y_* as int arrays of 0 and 1 of the same length."""
    out: dict[str, Any] = {}
    for split in ("train", "test"):
        x_key, y_key = f"x_{split}", f"y_{split}"
        x, y = arrays[x_key], arrays[y_key]
        if isinstance(x, np.ndarray) and x.dtype.kind in "iu" and x.ndim == 2:
            if x.size and x.min() < 0:
                raise UsageError(f"{where}: {x_key} holds word rank {x.min()} (ranks are >= 1, 0 is padding)")
            reviews = [row[row != 0].tolist() for row in x]
        elif isinstance(x, np.ndarray) and x.dtype.hasobject and x.ndim == 1:
            reviews = [_rank_list(review, x_key, i, where) for i, review in enumerate(x)]
        else:
            described = (
                f"{x.dtype} array of shape {shown(x.shape)}" if isinstance(x, np.ndarray) else shown(x)
            )
            raise UsageError(
                f"{where}: {x_key} is a {described}; expected a 2-D integer array (one row of word ranks "
                "per review, 0 as padding)"
            )
        if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "iub":
            described = (
                f"{y.dtype} array of shape {shown(y.shape)}" if isinstance(y, np.ndarray) else shown(y)
            )
            raise UsageError(f"{where}: {y_key} is a {described}; expected a 1-D array of 0 and 1 labels")
        if len(y) != len(reviews):
            raise UsageError(f"{where}: {y_key} has {len(y)} labels for {len(reviews)} reviews in {x_key}")
        if len(y) and not np.isin(y, (0, 1)).all():
            raise UsageError(
                f"{where}: {y_key} holds labels other than 0 and 1: {shown(np.unique(y).tolist())}"
            )
        out[x_key], out[y_key] = reviews, y.astype(np.int32)
    return out


def _rank_list(review: Any, key: str, index: int, where: str) -> list[int]:
    if isinstance(review, np.ndarray):
        review = review.tolist()
    if not isinstance(review, list) or not all(isinstance(w, int) and w >= 1 for w in review):
        raise UsageError(f"{where}: {key}[{index}] is {shown(review)}, not a list of word ranks (>= 1)")
    return review


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Keras' published imdb.npz holds its ragged reviews as pickled object arrays of lists; refuse any
    global but numpy's array rebuilders (Keras reads the file the same way)."""

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
