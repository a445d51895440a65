"""sampling.sample_next: greedy, temperature, top-k and top-p, shared by the RNN and GPT generators."""
import numpy as np
import pytest

import scratchzoo as sz
from scratchzoo.sampling import sample_next


def test_sample_next_temperature_zero_is_argmax_and_filters():
    logits = np.array([[0.1, 3.0, 2.9, -1.0], [5.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(sample_next(logits, temperature=0), [1, 0])
    sz.manual_seed(0)
    draws = np.stack([sample_next(logits, 1.0, top_k=2) for _ in range(300)])
    assert set(draws[:, 0]) == {1, 2}  # only the two best
    # row 1: p = (0.03, 0.505, 0.457, 0.009); row 2: p(0) = 0.98
    draws = np.stack([sample_next(logits, 1.0, top_p=0.5) for _ in range(300)])
    assert set(draws[:, 0]) == {1} and set(draws[:, 1]) == {0}  # the best token alone already holds 0.5
    draws = np.stack([sample_next(logits, 1.0, top_p=0.6) for _ in range(300)])
    assert set(draws[:, 0]) == {1, 2} and set(draws[:, 1]) == {0}  # 0.505 < 0.6: the second best joins
    with pytest.raises(ValueError, match="top_p"):
        sample_next(logits, 1.0, top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, -1.0)


def test_sample_next_draws_from_softmax_over_temperature():
    logits = np.log(np.array([[0.1, 0.2, 0.7]]))
    sz.manual_seed(0)
    counts = np.bincount(np.concatenate([sample_next(np.repeat(logits, 1000, 0), 2.0) for _ in range(20)]),
                         minlength=3) / 20000
    expected = np.exp(logits[0] / 2) / np.exp(logits[0] / 2).sum()
    np.testing.assert_allclose(counts, expected, atol=0.015)


def test_low_temperature_concentrates_on_the_best():
    scores = np.array([1.0, 0.5, 0.0])
    sz.manual_seed(0)
    cold = list(sample_next(np.tile(scores, (100, 1)), temperature=0.05))
    assert cold.count(0) == 100


def test_top_k_keeps_only_the_k_best_even_when_hot():
    scores = np.array([[5.0, 4.0, -2.0, 1.0, 0.0]])
    sz.manual_seed(0)
    draws = {int(sample_next(scores, temperature=2.0, top_k=2)[0]) for _ in range(200)}
    assert draws == {0, 1}  # only the two best, both drawn at a high temperature
