"""The recurrent recipes on tiny configurations: gru-mnist1d and lstm-mnist1d (through the shared
classifier recipe) and lstm-charlm / rnn-charlm (their own truncated-BPTT loop). Learning is asserted
(the loss falls), never the published figures (those are measured by full runs, see docs/en/rnn.md)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import record_losses
from scratchzoo import io, losses
from scratchzoo.data import datasets
from scratchzoo.recipes import RECIPES, rnn


def easy_signals(n_train: int = 400, n_test: int = 200) -> datasets.Split:
    """A stand-in for MNIST-1D with its shapes ((N, 40), 10 classes) but easy to learn in a few dozen steps:
    each signal is a noisy ramp whose slope is set by the class. (A recurrent net needs thousands of steps
    before MNIST-1D's loss starts to fall; the full runs measure that, see docs/en/rnn.md.)"""
    gen = np.random.default_rng(0)

    def make(n):
        y = gen.integers(0, 10, size=n)
        x = (y[:, None] - 4.5) / 4.5 * np.linspace(0, 1, 40)[None, :] + 0.05 * gen.standard_normal((n, 40))
        return x.astype(np.float32), y

    return datasets.Split(*make(n_train), *make(n_test))


@pytest.fixture
def data_dir(monkeypatch):
    """MNIST-1D replaced by `easy_signals` where the recipe loads it (no generation, no download)."""
    monkeypatch.setattr(datasets, "mnist1d", lambda *args, **kwargs: easy_signals())


@pytest.fixture
def recorded_losses(monkeypatch):
    return record_losses(monkeypatch, losses, "cross_entropy", training_only=True)  # not the summed validation


def test_recurrent_recipes_are_registered():
    for name in ("gru-mnist1d", "lstm-mnist1d", "lstm-charlm", "rnn-charlm"):
        assert RECIPES[name].name == name
    assert RECIPES["rnn-charlm"].config_class().cell == "rnn"
    assert RECIPES["lstm-charlm"].config_class().cell == "lstm"


def test_mnist1d_is_read_as_40_steps_of_one_feature(data_dir):
    split = rnn.mnist1d_sequences()
    assert split.x_train.shape == (400, 40, 1) and split.x_test.shape == (200, 40, 1)
    assert np.array_equal(split.x_train[:, :, 0], easy_signals().x_train)


@pytest.mark.parametrize("name", ["gru-mnist1d", "lstm-mnist1d"])
def test_mnist1d_recipe_learns(name, data_dir, tmp_path, recorded_losses):
    recipe = RECIPES[name]
    config = recipe.config_class(hidden_size=32, steps=60, batch_size=50, lr=1e-2, out=str(tmp_path))
    metrics = recipe.train(config)
    assert len(recorded_losses) == 60
    first, last = np.mean(recorded_losses[:5]), np.mean(recorded_losses[-5:])
    assert last < 0.7 * first, f"{name}: loss went from {first:.4g} to {last:.4g}"
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == metrics and 0.3 < written["test_accuracy"] <= 1.0
    evaluated = recipe.evaluate(str(tmp_path))
    assert evaluated["test_accuracy"] == pytest.approx(metrics["test_accuracy"])


def test_as_streams_cuts_consecutive_rows():
    rows = rnn.as_streams(np.arange(23), 4)
    assert rows.shape == (4, 5)
    assert np.array_equal(rows.reshape(-1), np.arange(20))


@pytest.mark.parametrize("name", ["lstm-charlm", "rnn-charlm"])
def test_charlm_recipe_learns_and_evaluates(name, tmp_path, recorded_losses):
    recipe = RECIPES[name]
    config = recipe.config_class(embedding_dim=16, hidden_size=32, seq_len=16, batch_size=16, steps=60, lr=1e-2,
                                 sample_chars=40, out=str(tmp_path))
    metrics = recipe.train(config)
    assert len(recorded_losses) == 60
    first, last = np.mean(recorded_losses[:5]), np.mean(recorded_losses[-5:])
    assert last < 0.8 * first, f"{name}: loss went from {first:.4g} to {last:.4g}"
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == metrics
    assert 0 < written["val_loss"] < np.log(96) and written["train_seconds"] > 0
    assert written["sample"].startswith("def ") and len(written["sample"]) == 44
    assert io.load_checkpoint(tmp_path).step == 60
    assert recipe.evaluate(str(tmp_path))["val_loss"] == pytest.approx(metrics["val_loss"], rel=1e-9)
