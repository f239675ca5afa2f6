"""The classic Keras IMDb sentiment model: Embedding(10000, 64) -> LSTM(128) -> Dense(1, sigmoid).

TensorFlow is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from servescope.corpus import SEQUENCE_LENGTH, VOCAB_SIZE

EMBEDDING_DIM = 64
LSTM_UNITS = 128


@dataclass(frozen=True)
class TrainResult:
    model: Any  # keras.Model (functional: tf2onnx cannot convert a Keras 3 Sequential directly)
    epoch_seconds: list[float]
    history: dict[str, list[float]]


def quiet_tensorflow() -> None:
    """Cut TensorFlow's C++ log lines (oneDNN notices etc.); Keras' own progress output stays."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_model(seed: int) -> Any:
    """The model, as a functional keras.Model with input `tokens` [batch, 100] int32."""
    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    tokens = keras.Input(shape=(SEQUENCE_LENGTH,), dtype="int32", name="tokens")
    # mask_zero stays False: a masked LSTM exports as a slow ONNX Loop instead of one LSTM node.
    x = keras.layers.Embedding(VOCAB_SIZE, EMBEDDING_DIM, name="embedding")(tokens)
    x = keras.layers.LSTM(LSTM_UNITS, name="lstm")(x)
    probability = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    model = keras.Model(tokens, probability, name="sentiment")
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def train(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainResult:
    """Fit the model with Keras' progress output (a bar on a terminal, one line per epoch otherwise)."""
    quiet_tensorflow()
    import keras

    model = build_model(seed)
    epoch_seconds: list[float] = []

    class _EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            epoch_seconds.append(time.perf_counter() - self._start)

    history = model.fit(
        x_train,
        y_train.astype(np.float32),
        epochs=epochs,
        batch_size=batch_size,
        validation_data=None if validation is None else (validation[0], validation[1].astype(np.float32)),
        shuffle=True,
        verbose=1 if sys.stdout.isatty() else 2,
        callbacks=[_EpochTimer()],
    )
    return TrainResult(
        model=model,
        epoch_seconds=epoch_seconds,
        history={k: [float(v) for v in values] for k, values in history.history.items()},
    )


def predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Keras' probabilities, float32 [n, 1]."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
