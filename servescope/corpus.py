"""Token sequences shaped like Keras' IMDb data, without TensorFlow.

Two things live here because both the exporter and the load tester need them:
- `pad_sequences`: Keras' padding/truncation rule (pre/pre, value 0) to a fixed length, the one place it
  is written down, so the load tester's payloads match what the model was trained on.
- `synthetic_reviews`: a deterministic, seeded corpus that looks like `keras.datasets.imdb.load_data(
  num_words=10000)` (start mark 1, out-of-vocabulary mark 2, words from id 3 up ranked by frequency,
  Zipf-like word frequencies, review lengths spread like real reviews) and whose label really depends on
  the tokens: 200 "sentiment words" lean towards one label, so a model can learn it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VOCAB_SIZE = 10000
SEQUENCE_LENGTH = 100
PAD_ID = 0
START_ID = 1
OOV_ID = 2
INDEX_FROM = 3  # Keras' imdb: word of frequency rank r (1-based) has id r + 3

# Synthetic corpus shape. Real IMDb reviews (Keras' tokens) have a median length of about 178 tokens,
# a mean of about 239, a minimum of 11 and a maximum near 2500: a log-normal fits that spread well.
_LENGTH_MEDIAN = 178.0
_LENGTH_SIGMA = 0.70
_MIN_LENGTH = 10
_MAX_LENGTH = 2500
# Words are drawn from a Zipf law over a vocabulary larger than VOCAB_SIZE; ranks beyond the cut become
# the out-of-vocabulary id, as with `num_words=10000` on real data (about 6% of tokens here).
_ZIPF_EXPONENT = 1.1
_SOURCE_VOCAB = 40000
# The label signal: 100 positive and 100 negative words among mid-frequency ranks. A fraction of each
# review's tokens are sentiment words, most of them of the review's polarity. With 100 words a side the
# LSTM picks the signal up within its first epoch on 10000 reviews (300 a side took two to three epochs).
_LEXICON_SIZE = 100
_LEXICON_RANKS = (40, 3000)
_LEXICON_SEED = 20240607  # fixed: every seed speaks the same "language", only the reviews change
_SENTIMENT_RATE = 0.10
_AGREEMENT = 0.85


def pad_sequences(
    sequences: Sequence[Sequence[int]] | np.ndarray,
    maxlen: int = SEQUENCE_LENGTH,
    padding: str = "pre",
    truncating: str = "pre",
    value: int = PAD_ID,
) -> np.ndarray:
    """Pad or truncate token id lists to `maxlen`, as `keras.utils.pad_sequences` does by default.

    "pre" truncation keeps the last `maxlen` tokens; "pre" padding puts the `value` ids first.

    Returns:
        int32 array of shape (len(sequences), maxlen).
    """
    if padding not in ("pre", "post"):
        raise ValueError(f"padding must be 'pre' or 'post', got {padding!r}")
    if truncating not in ("pre", "post"):
        raise ValueError(f"truncating must be 'pre' or 'post', got {truncating!r}")
    if maxlen < 1:
        raise ValueError(f"maxlen must be at least 1, got {maxlen}")
    out = np.full((len(sequences), maxlen), value, dtype=np.int32)
    for row, sequence in enumerate(sequences):
        tokens = np.asarray(sequence, dtype=np.int32)
        if tokens.size == 0:
            continue
        tokens = tokens[-maxlen:] if truncating == "pre" else tokens[:maxlen]
        if padding == "pre":
            out[row, maxlen - tokens.size :] = tokens
        else:
            out[row, : tokens.size] = tokens
    return out


def sentiment_lexicon() -> tuple[np.ndarray, np.ndarray]:
    """The token ids of the synthetic corpus' positive and negative words (fixed, seed independent)."""
    rng = np.random.default_rng(_LEXICON_SEED)
    low, high = _LEXICON_RANKS
    ranks = rng.choice(np.arange(low, high), size=2 * _LEXICON_SIZE, replace=False)
    ids = (ranks + INDEX_FROM).astype(np.int32)
    return np.sort(ids[:_LEXICON_SIZE]), np.sort(ids[_LEXICON_SIZE:])


def _zipf_cdf() -> np.ndarray:
    ranks = np.arange(1, _SOURCE_VOCAB + 1, dtype=np.float64)
    weights = ranks**-_ZIPF_EXPONENT
    return np.cumsum(weights / weights.sum())


def synthetic_reviews(count: int, seed: int) -> tuple[list[list[int]], np.ndarray]:
    """A deterministic IMDb-like corpus: `count` unpadded reviews and their 0/1 labels.

    Each review starts with START_ID, then words whose ids follow a Zipf law (rank r -> id r + 3, ranks
    past the vocabulary -> OOV_ID). About 10% of the words are replaced by sentiment words, 85% of them
    of the review's polarity, so the label can be read from any long enough stretch of the review,
    including the last SEQUENCE_LENGTH tokens that pre-truncation keeps.

    Args:
        count: number of reviews.
        seed: the same seed always gives the same reviews and labels.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=count).astype(np.int32)
    lengths = np.exp(rng.normal(np.log(_LENGTH_MEDIAN), _LENGTH_SIGMA, size=count))
    lengths = np.clip(np.rint(lengths), _MIN_LENGTH, _MAX_LENGTH).astype(np.int64)
    cdf = _zipf_cdf()
    positive, negative = sentiment_lexicon()
    reviews: list[list[int]] = []
    for label, length in zip(labels, lengths, strict=True):
        ranks = np.searchsorted(cdf, rng.random(length), side="right") + 1
        ids = np.where(ranks + INDEX_FROM < VOCAB_SIZE, ranks + INDEX_FROM, OOV_ID)
        polar = rng.random(length) < _SENTIMENT_RATE
        agrees = rng.random(length) < _AGREEMENT
        use_positive = agrees if label == 1 else ~agrees
        picks_pos = positive[rng.integers(0, positive.size, size=length)]
        picks_neg = negative[rng.integers(0, negative.size, size=length)]
        ids = np.where(polar, np.where(use_positive, picks_pos, picks_neg), ids)
        reviews.append([START_ID, *ids.astype(np.int64).tolist()])
    return reviews, labels
