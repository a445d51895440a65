"""Shared pytest set-up: make `from helpers import ...` work from any folder below tests/, and give
every test the same `rand` stream however the suite is run (alone, in any order, in parallel)."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import helpers  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_rand() -> None:
    helpers.reset_rand(0)
