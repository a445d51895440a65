"""A key/value cache for incremental (token by token) decoding.

Without a cache, generating token t re-runs the model over all t previous tokens: O(t) work per layer for
every new token, O(T^2) in all. With causal attention the keys and values of past positions never change,
so each step computes k, v for the new position only, appends them here, and lets the one new query
attend over everything stored:  y_t = softmax(q_t [k_1..k_t]^T / sqrt(d)) [v_1..v_t].

Entries are keyed by a slot name per attention layer (e.g. "layer0.self"). Cross-attention keys and
values (from a fixed encoder output) are stored once with `put` and read back with `get`.
"""
from __future__ import annotations

from typing import Hashable

import numpy as np

from scratchzoo import functional as F
from scratchzoo.autograd import ShapeError, Tensor


class KVCache:
    """Per-slot keys and values, each (N, H, T, d_head), growing along T (axis 2)."""

    def __init__(self) -> None:
        self._keys: dict[Hashable, Tensor] = {}
        self._values: dict[Hashable, Tensor] = {}

    def append(self, slot: Hashable, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new positions' k, v after those already cached; return all of them."""
        if slot in self._keys:
            self._check_continues(slot, k, v)
            k = F.cat([self._keys[slot], k], dim=2)
            v = F.cat([self._values[slot], v], dim=2)
        self._keys[slot], self._values[slot] = k, v
        return k, v

    def _check_continues(self, slot: Hashable, k: Tensor, v: Tensor) -> None:
        """New keys and values must match the cached ones in all but T: one cache serves one batch of one model."""
        for what, cached, new in (("keys", self._keys[slot], k), ("values", self._values[slot], v)):
            if new.ndim != 4 or new.shape[:2] + new.shape[3:] != cached.shape[:2] + cached.shape[3:]:
                n, h, _, d = cached.shape
                raise ShapeError(f"KVCache.append: slot {slot!r} holds {what} of shape {cached.shape} "
                                 f"(N, H, T, d_head), so new {what} must have shape ({n}, {h}, T, {d}), got "
                                 f"{new.shape} (a cache serves one batch of one model: start a new KVCache "
                                 "for another)")

    def put(self, slot: Hashable, k: Tensor, v: Tensor) -> None:
        """Store fixed keys and values (cross-attention over the encoder output), replacing any."""
        self._keys[slot], self._values[slot] = k, v

    def get(self, slot: Hashable) -> tuple[Tensor, Tensor] | None:
        """The stored (k, v) of `slot`, or None before the first step."""
        if slot not in self._keys:
            return None
        return self._keys[slot], self._values[slot]

    def length(self, slot: Hashable) -> int:
        """How many positions `slot` holds (0 before the first step)."""
        return self._keys[slot].shape[2] if slot in self._keys else 0

    def reorder(self, rows: np.ndarray) -> None:
        """Keep batch rows `rows` (in that order) of every entry: beam search follows its surviving beams."""
        rows = np.asarray(rows, dtype=np.int64)
        for cache in (self._keys, self._values):
            for slot, tensor in cache.items():
                cache[slot] = F.index(tensor, rows)
