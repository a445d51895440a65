"""Sequence metrics: edit distance, word and phoneme error rates (G2P), token and sequence accuracy (pinyin).

All take token sequences (tuples of strings or of ids); references may list several acceptable answers.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning `a` into `b`.

    D[i, j] = min(D[i-1, j] + 1, D[i, j-1] + 1, D[i-1, j-1] + [a_i != b_j]), one row per token of `a`.
    The deletion and substitution terms are vectorised over j; the insertion term chains along the row,
    D[i, j] = min_k<=j (E[k] + (j - k)) for the row E of the other two terms, which is a running minimum
    of E[k] - k, plus j: `np.minimum.accumulate`. So each row is a handful of NumPy calls.
    """
    if len(a) == 0 or len(b) == 0:
        return max(len(a), len(b))
    b_arr = np.array(list(b), dtype=object)
    j = np.arange(len(b) + 1)
    row = j.copy()  # D[0, j] = j
    for i, token in enumerate(a, start=1):
        other = np.empty_like(row)
        other[0] = i
        other[1:] = np.minimum(row[1:] + 1, row[:-1] + (b_arr != token))  # deletion, substitution
        row = np.minimum.accumulate(other - j) + j  # insertion: chain left to right
    return int(row[-1])


def closest_reference(hypothesis: Sequence, references: Sequence[Sequence]) -> tuple[int, int]:
    """(edit distance, length) of the reference closest to the hypothesis (the first one on a tie)."""
    best = min(range(len(references)), key=lambda r: edit_distance(hypothesis, references[r]))
    return edit_distance(hypothesis, references[best]), len(references[best])


def word_phoneme_error_rates(hypotheses: Sequence[Sequence], references: Sequence[Sequence[Sequence]]
                             ) -> dict[str, float]:
    """G2P's two figures over a test set, where references[i] lists every acceptable pronunciation of word i:

    WER = (words whose hypothesis equals none of its references) / words
    PER = sum_i d(hyp_i, closest ref_i) / sum_i len(closest ref_i)   (edit distance, pooled over words)
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"word_phoneme_error_rates: {len(hypotheses)} hypotheses for {len(references)} words")
    wrong = sum(tuple(h) not in {tuple(r) for r in refs} for h, refs in zip(hypotheses, references))
    distances, lengths = zip(*(closest_reference(h, refs) for h, refs in zip(hypotheses, references)))
    return {"wer": wrong / len(hypotheses), "per": sum(distances) / sum(lengths)}


def token_sequence_accuracy(hypotheses: Sequence[Sequence], references: Sequence[Sequence]) -> dict[str, float]:
    """Position-wise token accuracy and whole-sequence exact match (pinyin: syllables and phrases):

    token_accuracy = sum_i #{t < len(ref_i): hyp_i[t] == ref_i[t]} / sum_i len(ref_i)
    sequence_accuracy = #{i: hyp_i == ref_i} / N
    A hypothesis shorter than its reference loses the missing positions; extra tokens cost no positions
    but make the sequence wrong.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"token_sequence_accuracy: {len(hypotheses)} hypotheses for {len(references)} references")
    correct = sum(sum(x == y for x, y in zip(h, r)) for h, r in zip(hypotheses, references))
    total = sum(len(r) for r in references)
    exact = sum(tuple(h) == tuple(r) for h, r in zip(hypotheses, references))
    return {"token_accuracy": correct / total, "sequence_accuracy": exact / len(references)}
