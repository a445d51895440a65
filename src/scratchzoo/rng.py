"""One random generator for the whole library, so `manual_seed` makes every run reproducible.

Initialisation, dropout masks, data shuffling and sampling all draw from `generator()`. Its state is
a small dict of integers, which checkpoints store to make a resumed run continue exactly.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Reset the library's generator, as torch.manual_seed does."""
    global _generator
    _generator = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    return _generator


def get_rng_state() -> dict[str, Any]:
    return _generator.bit_generator.state


def set_rng_state(state: dict[str, Any]) -> None:
    _generator.bit_generator.state = state
