"""Choosing the next token from a language model's scores, shared by every model that generates text
(models/rnn.py's CharLM, models/gpt.py's GPT): greedy, temperature, top-k and top-p (nucleus) sampling.
Draws use the library generator (scratchzoo.manual_seed), so a seeded run samples the same text again."""
from __future__ import annotations

import numpy as np

from scratchzoo import rng
from scratchzoo.autograd import ShapeError


def sample_next(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None) -> np.ndarray:
    """One token per row of logits (B, V): the argmax when temperature is 0, else a draw from
    p = softmax(logits / temperature), restricted to the top_k best tokens and then to the smallest set of
    best tokens whose probability adds up to at least top_p (nucleus sampling), renormalised."""
    if temperature < 0:
        raise ValueError(f"sample_next: temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"sample_next: top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"sample_next: top_p must lie in (0, 1], got {top_p}")
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] == 0:
        hint = " (one sequence's scores (V,): pass logits[None])" if logits.ndim == 1 else ""
        raise ShapeError(f"sample_next: logits must have shape (B, V) with V >= 1, one row of scores per "
                         f"sequence, got {logits.shape}{hint}")
    if temperature == 0:
        return logits.argmax(axis=-1)                               # greedy
    scores = logits / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        kth = np.sort(scores, axis=-1)[:, -top_k][:, None]
        scores = np.where(scores < kth, -np.inf, scores)            # keep the k best (ties at the k-th too)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)                      # p = softmax(logits / temperature)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p            # mass of the better tokens
        keep = np.zeros_like(probs, dtype=bool)
        np.put_along_axis(keep, order, before < top_p, axis=-1)     # the best token is always kept
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    cdf = np.cumsum(probs, axis=-1)
    u = rng.generator().random((probs.shape[0], 1)) * cdf[:, -1:]   # inverse-CDF draw, one per row
    return np.minimum((cdf <= u).sum(axis=-1), probs.shape[-1] - 1).astype(np.int64)
