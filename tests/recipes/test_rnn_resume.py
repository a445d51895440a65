"""lstm-charlm's own truncated-BPTT loop: a run killed just after its step-N checkpoint and resumed with
--resume ends BIT FOR BIT where the straight 2N-step run ends (weights, optimizer, RNG, schedule, and the
recurrent state carried into the next window)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import SimulatedCrash, crash_at_step
from scratchzoo import io
from scratchzoo.cli import main
from scratchzoo.recipes import RECIPES

N = 6




def assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert a == b


def test_charlm_resume_is_bit_identical(tmp_path, monkeypatch):
    # windows per pass: the stream is long, so the carried state matters at the resume point (w != 0).
    common = ["train", "lstm-charlm", "--embedding-dim", "8", "--hidden-size", "16", "--seq-len", "8",
              "--batch-size", "8", "--lr", "1e-2", "--sample-chars", "10", "--steps", str(2 * N),
              "--checkpoint-every", str(N)]
    straight, crashed, resumed = tmp_path / "straight", tmp_path / "crashed", tmp_path / "resumed"
    assert main([*common, "--out", str(straight)]) == 0

    with monkeypatch.context() as mp:
        crash_at_step(mp, N + 1)
        with pytest.raises(SimulatedCrash):
            main([*common, "--out", str(crashed)])
    middle = io.load_checkpoint(crashed)
    assert middle.step == N and middle.extra["carried_state"] is not None
    assert not (crashed / "metrics.json").exists()

    assert main([*common, "--resume", str(crashed), "--out", str(resumed)]) == 0
    a, b = io.load_checkpoint(straight), io.load_checkpoint(resumed)
    assert a.step == b.step == 2 * N
    assert_same((a.model_state, a.optimizer_state, a.rng_state, a.extra["scheduler"], a.extra["carried_state"]),
                (b.model_state, b.optimizer_state, b.rng_state, b.extra["scheduler"], b.extra["carried_state"]))
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (straight, resumed)]
    assert metrics[0]["val_loss"] == metrics[1]["val_loss"] and metrics[0]["sample"] == metrics[1]["sample"]


def test_charlm_config_has_checkpoint_fields():
    config = RECIPES["lstm-charlm"].config_class()
    assert config.checkpoint_every == 500 and config.resume is None
