"""servescope.corpus: Keras' padding rule and the seeded, learnable synthetic corpus (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from servescope.corpus import (
    OOV_ID,
    SEQUENCE_LENGTH,
    START_ID,
    VOCAB_SIZE,
    pad_sequences,
    sentiment_lexicon,
    synthetic_reviews,
)


def test_pad_sequences_pre_pads_and_pre_truncates_like_keras_defaults() -> None:
    out = pad_sequences([[1, 2, 3], list(range(1, 8)), []], maxlen=5)
    assert out.dtype == np.int32
    assert out.tolist() == [[0, 0, 1, 2, 3], [3, 4, 5, 6, 7], [0, 0, 0, 0, 0]]


def test_pad_sequences_post_options_and_value() -> None:
    out = pad_sequences([[1, 2, 3], list(range(1, 8))], maxlen=5, padding="post", truncating="post", value=9)
    assert out.tolist() == [[1, 2, 3, 9, 9], [1, 2, 3, 4, 5]]


def test_pad_sequences_default_length_is_the_model_input() -> None:
    out = pad_sequences([list(range(1, 300))])
    assert out.shape == (1, SEQUENCE_LENGTH) == (1, 100)
    assert out[0, 0] == 200 and out[0, -1] == 299  # the last 100 tokens are kept


@pytest.mark.parametrize(("kwargs", "message"), [({"padding": "mid"}, "padding"), ({"maxlen": 0}, "maxlen")])
def test_pad_sequences_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pad_sequences([[1]], **kwargs)


def test_synthetic_corpus_is_deterministic_for_a_seed() -> None:
    first_x, first_y = synthetic_reviews(200, seed=7)
    again_x, again_y = synthetic_reviews(200, seed=7)
    other_x, _ = synthetic_reviews(200, seed=8)
    assert first_x == again_x and np.array_equal(first_y, again_y)
    assert first_x != other_x


def test_synthetic_corpus_is_shaped_like_keras_imdb() -> None:
    reviews, labels = synthetic_reviews(3000, seed=0)
    assert len(reviews) == len(labels) == 3000
    assert set(np.unique(labels).tolist()) == {0, 1}
    assert 0.45 < labels.mean() < 0.55
    assert all(r[0] == START_ID for r in reviews)
    tokens = np.concatenate([np.asarray(r[1:]) for r in reviews])
    assert tokens.min() >= OOV_ID and tokens.max() <= VOCAB_SIZE - 1
    # Real IMDb (Keras tokens): median ~178, mean ~239, shortest ~10, a long tail past 1000.
    lengths = np.array([len(r) for r in reviews])
    assert 150 <= np.median(lengths) <= 210
    assert lengths.min() >= 10 and lengths.max() > 1000
    assert 0.3 < np.mean(lengths > SEQUENCE_LENGTH) < 0.9  # truncation and padding both happen
    # Zipf-like: frequent ranks dominate, the rare tail still appears, some words fall out of vocabulary.
    counts = np.bincount(tokens, minlength=VOCAB_SIZE)
    assert counts[4] > counts[13] > counts[103] > counts[1003]
    assert 0.01 < np.mean(tokens == OOV_ID) < 0.15
    assert np.count_nonzero(counts) > 5000


def test_synthetic_labels_are_learnable_from_tokens() -> None:
    """A naive Bayes word-count classifier, which does not know the lexicon, learns the labels."""
    reviews, labels = synthetic_reviews(6000, seed=3)
    x = pad_sequences(reviews)
    x_train, y_train, x_test, y_test = x[:5000], labels[:5000], x[5000:], labels[5000:]
    log_odds = np.zeros(VOCAB_SIZE)
    for label, sign in ((1, 1.0), (0, -1.0)):
        counts = np.bincount(x_train[y_train == label].ravel(), minlength=VOCAB_SIZE) + 1.0
        log_odds += sign * np.log(counts / counts.sum())
    log_odds[0] = 0.0  # padding says nothing
    predictions = (log_odds[x_test].sum(axis=1) > 0).astype(np.int32)
    assert np.mean(predictions == y_test) >= 0.9


def test_sentiment_lexicon_is_fixed_and_disjoint() -> None:
    positive, negative = sentiment_lexicon()
    assert len(positive) == len(negative) == 100
    assert not set(positive.tolist()) & set(negative.tolist())
    assert np.array_equal(positive, sentiment_lexicon()[0])


def test_parity_check_refuses_a_disagreeing_conversion() -> None:
    from exporter.convert import ParityError, check_parity

    reference = np.full((256, 1), 0.5, dtype=np.float32)
    assert check_parity(reference, reference + 5e-6, 1e-5, "fp32 vs Keras") == pytest.approx(5e-6, rel=1e-2)
    with pytest.raises(
        ParityError, match=r"fp32 vs Keras: max abs diff 2e-05 over 256 samples exceeds 1e-05"
    ):
        check_parity(reference, reference + 2e-5, 1e-5, "fp32 vs Keras")
    with pytest.raises(ParityError, match="shape"):
        check_parity(reference, reference[:10], 1e-5, "fp32 vs Keras")
    with pytest.raises(ParityError, match="nan"):
        check_parity(reference, reference * np.nan, 1e-5, "fp32 vs Keras")
