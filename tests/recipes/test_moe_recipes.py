"""The MoE recipes on tiny configurations: moe-regression and moe-gpt (on a small stand-in corpus). Learning
is asserted (the loss falls) and the metrics' shapes; the measured figures live in docs/en/moe.md."""
from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest

from helpers import record_losses
from scratchzoo import losses
from scratchzoo.autograd import Tensor
from scratchzoo.cli import main
from scratchzoo.data import datasets
from scratchzoo.recipes import RECIPES, moe


@pytest.fixture
def recorded(monkeypatch):
    """Every training loss (mean reduction) of mse_loss and cross_entropy, in call order."""
    return {"mse": record_losses(monkeypatch, losses, "mse_loss", training_only=True),
            "ce": record_losses(monkeypatch, losses, "cross_entropy", training_only=True)}


def test_moe_recipes_are_registered():
    assert RECIPES["moe-regression"] is moe.MOE_REGRESSION and RECIPES["moe-gpt"] is moe.MOE_GPT


def test_regimes_are_four_functions_with_jumps():
    x = np.array([-1.5, -1e-6, 0.0, 0.5, 1 - 1e-6, 1.0])
    y = moe.regimes(x)
    assert y[1] == pytest.approx(1.0, abs=1e-4) and y[2] == pytest.approx(-1.0)  # a jump at 0
    assert y[3] == pytest.approx(1.0) and y[4] == pytest.approx(-1.0, abs=1e-4) and y[5] == pytest.approx(-0.5)


def test_moe_regression_learns(tmp_path, recorded):
    config = moe.MoERegressionConfig(d_model=8, hidden=8, steps=150, batch_size=64, lr=1e-2, n_train=512,
                                     out=str(tmp_path))
    metrics = moe.MOE_REGRESSION.train(config)
    moe_losses = recorded["mse"][:150]  # the MoE trains first, then the dense baseline
    assert np.mean(moe_losses[-10:]) < 0.6 * np.mean(moe_losses[:10]), (moe_losses[:10], moe_losses[-10:])
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == metrics
    assert set(metrics) >= {"test_mse", "dense_test_mse", "expert_load", "regime_experts", "train_seconds"}
    assert len(metrics["expert_load"]) == 4 and sum(metrics["expert_load"]) == pytest.approx(1.0, abs=1e-3)
    assert metrics["active_parameters"] < metrics["total_parameters"]
    assert moe.MOE_REGRESSION.evaluate(str(tmp_path))["test_mse"] == pytest.approx(metrics["test_mse"], rel=1e-5)
    pytest.importorskip("matplotlib")
    assert (tmp_path / "experts.png").stat().st_size > 0


CORPUS = "".join(f"def f{i % 7}(x):\n    return x * {i % 5} + {i % 3}\n" for i in range(300))


def test_moe_gpt_learns_and_reports_load(tmp_path, monkeypatch, recorded):
    monkeypatch.setattr(datasets, "text_corpus", lambda name: CORPUS)
    config = moe.MoEGPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=8, max_iters=40,
                              lr=1e-2, warmup_iters=5, lr_decay_iters=40, sample_chars=10, load_windows=8,
                              out=str(tmp_path))
    metrics = moe.MOE_GPT.train(config)
    for run in range(3):  # MoE + balancing, MoE without, dense: each learns
        seen = recorded["ce"][run * 40:(run + 1) * 40]
        assert np.mean(seen[-5:]) < 0.7 * np.mean(seen[:5]), (run, seen[:5], seen[-5:])
    assert set(metrics) >= {"val_loss", "dense_val_loss", "no_balance_val_loss", "expert_load",
                            "no_balance_expert_load", "train_seconds"}
    load = np.asarray(metrics["expert_load"])
    assert load.shape == (1, 4) and np.allclose(load.sum(axis=1), 1.0, atol=1e-3)
    vocab = len(set(CORPUS))
    assert max(metrics["val_loss"], metrics["dense_val_loss"]) < 0.8 * np.log(vocab)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert moe.MOE_GPT.evaluate(str(tmp_path))["val_loss"] == pytest.approx(metrics["val_loss"], rel=1e-5)
    assert (tmp_path / "dense" / "metrics.json").exists() and (tmp_path / "no_balance" / "metrics.json").exists()
    for prefix in ("", "no_balance_"):  # load extremes relative to a fair share of 1/E; no capacity: no drops
        extremes = np.asarray(metrics[f"{prefix}expert_load"]) * config.num_experts
        assert metrics[f"{prefix}max_load_over_fair_share"] == pytest.approx(extremes.max(), abs=1e-3)  # load: 4 digits
        assert metrics[f"{prefix}min_load_over_fair_share"] == pytest.approx(extremes.min(), abs=1e-3)
        assert metrics[f"{prefix}dropped"] == 0.0
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["sample", "moe-gpt", "--ckpt", str(tmp_path), "--prompt", "def ", "--max-new-tokens", "12"]) == 0
    assert terminal.getvalue().startswith("def ") and len(terminal.getvalue()) == 4 + 12 + 1
    pytest.importorskip("matplotlib")
    assert (tmp_path / "load.png").stat().st_size > 0


@pytest.mark.parametrize("share_down_projection", [False, True])
def test_measured_drops_are_those_of_the_training_capacity(share_down_projection):
    """measure_load reads the load in eval mode (no capacity limit there by default) and reports the
    fraction of assignments over training's capacity: for a one-layer model, what it drops in training mode."""
    config = moe.MoEGPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, load_windows=4, capacity_factor=0.6,
                              share_down_projection=share_down_projection)
    model = moe.build_moe_gpt(config, vocab_size=20)
    ids = np.random.default_rng(0).integers(0, 20, size=200)
    load, dropped = moe.measure_load(model, ids, config)
    assert model.training and all(layer.last_dropped == 0 for layer in moe.moe_layers(model))  # eval: no limit
    model(Tensor(ids[:4 * 16].reshape(4, 16)))  # training mode, the same windows
    expected = np.mean([layer.last_dropped for layer in moe.moe_layers(model)])
    assert dropped == pytest.approx(expected) and dropped > 0
    assert np.allclose(load, [layer.last_load for layer in moe.moe_layers(model)])  # no noise: the same routing


def test_gate_matrix_places_each_gate_under_its_expert():
    from scratchzoo.viz.moe import gate_matrix
    weights = gate_matrix(np.array([[2, 0], [1, 3]]), np.array([[0.7, 0.3], [0.6, 0.4]]), 4)
    assert np.allclose(weights, [[0.3, 0, 0.7, 0], [0, 0.6, 0, 0.4]])
