"""The training data: the seeded synthetic corpus, or IMDb reviews from a Keras-format .npz file.

No TensorFlow here. Keras' `imdb.load_data` cannot read an arbitrary file: Keras 3.15 refuses a path as
its `path` argument (only names under ~/.keras/datasets) and re-downloads any file whose hash differs from
the published one. So the .npz is read with the same rules written out: shuffle train and test with
`RandomState(113)`, prefix the start mark 1, shift word ranks by 3, map ranks past `num_words` to the
out-of-vocabulary mark 2. tests/export checks this against Keras' own loader.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servescope.corpus import INDEX_FROM, OOV_ID, START_ID, VOCAB_SIZE, pad_sequences, synthetic_reviews
from servescope.errors import UsageError

IMDB_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
KERAS_IMDB_CACHE = Path("~/.keras/datasets/imdb.npz")
_KERAS_SHUFFLE_SEED = 113
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


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


def read_imdb_npz(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of a Keras-format IMDb .npz, unpickling nothing but numpy arrays."""
    try:
        arrays: dict[str, np.ndarray] = {}
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(".npy"):
                    arrays[member[: -len(".npy")]] = _read_npy(io.BytesIO(archive.read(member)))
    except (OSError, zipfile.BadZipFile, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise UsageError(f"--dataset {path}: not a readable .npz file: {exc}") from exc
    missing = [key for key in _NPZ_KEYS if key not in arrays]
    if missing:
        raise UsageError(f"--dataset {path}: missing arrays {missing} (imdb.npz has {list(_NPZ_KEYS)})")
    return arrays


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Ragged IMDb arrays are pickled object arrays; refuse any global but numpy's array rebuilders."""

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


def _read_npy(stream: io.BytesIO) -> np.ndarray:
    try:
        return np.lib.format.read_array(stream, allow_pickle=False)
    except ValueError:
        stream.seek(0)
        major, _ = np.lib.format.read_magic(stream)
        if major == 1:
            np.lib.format.read_array_header_1_0(stream)
        else:
            np.lib.format.read_array_header_2_0(stream)
        return _NumpyOnlyUnpickler(stream).load()
