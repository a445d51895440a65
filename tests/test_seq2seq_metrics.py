"""metrics.py: edit distance against the textbook dynamic programme; WER/PER with several references;
position-wise token accuracy and exact match."""
from __future__ import annotations

import numpy as np
import pytest

from scratchzoo.metrics import edit_distance, token_sequence_accuracy, word_phoneme_error_rates


def reference_levenshtein(a, b) -> int:
    """The full (len(a)+1) x (len(b)+1) table, one cell at a time."""
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return table[-1][-1]


def test_edit_distance_known_cases():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance(("AH",), ()) == 1
    assert edit_distance(("K", "AE", "T"), ("K", "AE", "T")) == 0
    assert edit_distance("abc", "cab") == 2


def test_edit_distance_matches_the_full_table():
    gen = np.random.default_rng(0)
    for _ in range(300):
        a = [str(t) for t in gen.integers(0, 4, size=gen.integers(0, 9))]
        b = [str(t) for t in gen.integers(0, 4, size=gen.integers(0, 9))]
        assert edit_distance(a, b) == reference_levenshtein(a, b)


def test_wer_and_per_use_the_closest_listed_pronunciation():
    references = [[("R", "EH", "D"), ("R", "IY", "D")], [("K", "AE", "T")], [("D", "AO", "G")]]
    hypotheses = [("R", "IY", "D"), ("K", "AH", "T"), ("D", "AO", "G", "Z")]
    scores = word_phoneme_error_rates(hypotheses, references)
    assert scores["wer"] == pytest.approx(2 / 3)
    assert scores["per"] == pytest.approx((0 + 1 + 1) / (3 + 3 + 3))


def test_token_accuracy_is_position_wise_and_exact_match_whole():
    references = [("yín", "háng"), ("xíng", "zǒu"), ("yí", "gè")]
    hypotheses = [("yín", "háng"), ("háng", "zǒu"), ("yí",)]
    scores = token_sequence_accuracy(hypotheses, references)
    assert scores["token_accuracy"] == pytest.approx(4 / 6)
    assert scores["sequence_accuracy"] == pytest.approx(1 / 3)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        word_phoneme_error_rates([("A",)], [])
    with pytest.raises(ValueError):
        token_sequence_accuracy([], [("a",)])
