"""The three recipes of the foundation issue, each trained on a tiny configuration for a few dozen steps.

What a run must leave behind: a training loss that fell, metrics.json with the documented plain keys,
a complete checkpoint that `evaluate` turns back into the same metrics, and curves.png when matplotlib
is installed. Learning is asserted, never exact numbers (those live in benchmarks and the docs).
"""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from helpers import record_losses
from scratchzoo import io, losses
from scratchzoo.cli import main
from scratchzoo.recipes import RECIPES, quadratic

# Tiny configurations: a few dozen steps each, seconds in all. mlp-mnist1d generates its data set once
# (about 5 s) into the test's own cache directory.
TINY = {
    "trainer-quadratic": dict(hidden=(16, 16), steps=60, batch_size=32, lr=1e-2, n_train=256),
    "mlp-digits": dict(hidden=(32,), dropout=0.1, steps=40, batch_size=32, lr=1e-2),
    "mlp-mnist1d": dict(hidden=(64,), dropout=0.1, steps=100, batch_size=50, lr=1e-2),
}
# How far the mean loss of the last 5 steps must sit below that of the first 5 (quadratic starts far off:
# y is about 6 while the untrained net predicts about 0; MNIST-1D is the hardest of the three).
FALL = {"trainer-quadratic": 0.2, "mlp-digits": 0.5, "mlp-mnist1d": 0.85}
METRIC = {"trainer-quadratic": "test_mse", "mlp-digits": "test_accuracy", "mlp-mnist1d": "test_accuracy"}


@pytest.fixture
def recorded_losses(monkeypatch):
    """Every training loss the recipes compute, in order: the loss functions wrapped where recipes look
    them up (`losses.mse_loss`, `losses.cross_entropy`, read when `train` runs)."""
    return record_losses(monkeypatch, losses, "cross_entropy", record_losses(monkeypatch, losses, "mse_loss"))


def test_every_recipe_is_registered():
    assert set(TINY) <= set(RECIPES)
    for name, recipe in RECIPES.items():
        assert recipe.name == name and recipe.description


@pytest.mark.parametrize("name", list(TINY))
def test_recipe_trains_writes_metrics_checkpoint_and_evaluates(name, tmp_path, monkeypatch, recorded_losses):
    monkeypatch.setenv("SCRATCHZOO_DATA", str(tmp_path / "data"))
    recipe = RECIPES[name]
    run_dir = tmp_path / "run"
    config = recipe.config_class(**TINY[name], out=str(run_dir), checkpoint_every=25)
    metrics = recipe.train(config)

    # learning happened: the last steps' loss is well below the first steps'
    steps = config.steps
    assert len(recorded_losses) == steps, "one loss per training step"
    first, last = np.mean(recorded_losses[:5]), np.mean(recorded_losses[-5:])
    assert np.all(np.isfinite(recorded_losses))
    assert last < FALL[name] * first, f"{name}: loss went from {first:.4g} to {last:.4g}"

    # metrics.json: the returned metrics, with the documented plain keys
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written == metrics
    assert isinstance(written["train_seconds"], float) and written["train_seconds"] > 0
    if name == "trainer-quadratic":
        assert written["test_mse"] >= 0 and np.isfinite(written["test_mse"])
    else:
        assert 0.0 <= written["test_accuracy"] <= 1.0
        assert written["test_accuracy"] > 0.2, "at least twice chance (0.1) after a few dozen steps"

    # the final checkpoint is complete and knows its step and config
    for file in ("model.safetensors", "optimizer.safetensors", "checkpoint.json"):
        assert (run_dir / file).is_file(), file
    checkpoint = io.load_checkpoint(run_dir)
    assert checkpoint.step == steps
    assert checkpoint.extra["config"]["steps"] == steps
    assert checkpoint.extra["config"]["hidden"] == list(TINY[name]["hidden"])

    # evaluate(dir) rebuilds the model from the checkpoint alone and reproduces the run's metrics
    evaluated = recipe.evaluate(str(run_dir))
    assert METRIC[name] in evaluated
    for key, value in evaluated.items():
        assert value == pytest.approx(metrics[key], rel=1e-9, abs=1e-12), key

    # the training curve, when matplotlib is there to draw it
    curves = run_dir / "curves.png"
    if importlib.util.find_spec("matplotlib") is not None:
        assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not curves.exists()


def test_checkpoint_every_writes_mid_run(tmp_path):
    """checkpoint_every=10 of a 25-step run: the directory holds step 10, then 20, then the final 25."""
    recipe = RECIPES["trainer-quadratic"]
    saved_steps = []
    original = io.save_checkpoint

    def spy(directory, model_state, optimizer_state, step, *args, **kwargs):
        saved_steps.append(step)
        return original(directory, model_state, optimizer_state, step, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(io, "save_checkpoint", spy)
        recipe.train(recipe.config_class(**{**TINY["trainer-quadratic"], "steps": 25}, checkpoint_every=10,
                                         out=str(tmp_path)))
    assert saved_steps == [10, 20, 25]
    assert io.load_checkpoint(tmp_path).step == 25


# ---- show_backward: the worked chain-rule example ---------------------------------------------------------
def test_show_backward_matches_the_chain_rule_by_hand():
    """x=2, w=3, b=1, y=10: y_pred = w*x + b = 7, L = (y_pred - y)^2 = 9.

    dL/dy_pred = 2 (y_pred - y) = -6; y_pred = wx + b passes it on unchanged to b and to wx;
    wx = w * x gives each factor the upstream gradient times the other factor:
    dL/dw = -6 * x = -12, dL/dx = -6 * w = -18. dL/dL = 1.
    """
    x, w, b, y = 2, 3, 1, 10
    y_pred = w * x + b
    d_pred = 2 * (y_pred - y)
    expected = {"x": (x, d_pred * w), "w": (w, d_pred * x), "b": (b, d_pred), "w*x": (w * x, d_pred),
                "y_pred": (y_pred, d_pred), "loss": ((y_pred - y) ** 2, 1.0)}
    assert (d_pred, d_pred * x, d_pred, d_pred * w, (y_pred - y) ** 2) == (-6, -12, -6, -18, 9)
    table = quadratic.show_backward(x=x, w=w, b=b, y=y, echo=False)
    assert table.keys() == expected.keys()
    for name, (value, grad) in expected.items():  # pytest.approx takes no nested containers
        assert table[name] == (pytest.approx(value), pytest.approx(grad)), name
    assert list(table) == list(expected)


def test_show_backward_prints_nothing_unless_asked(capsys):
    quadratic.show_backward(echo=False)
    assert capsys.readouterr().out == ""
    quadratic.show_backward()
    out = capsys.readouterr().out
    assert "dloss/dnode" in out and len(out.splitlines()) == 7


def test_cli_show_backward_prints_the_table(tmp_path, capsys):
    assert main(["train", "trainer-quadratic", "--show-backward", "--steps", "2", "--hidden", "4",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if "dloss/dnode" in line)
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in out[header + 1:header + 7]}
    assert rows == {"x": [2, -18], "w": [3, -12], "b": [1, -6], "w*x": [6, -6], "y_pred": [7, -6], "loss": [9, 1]}
    assert any(line.startswith("test_mse:") for line in out), "then it trains and prints the metrics"
    assert io.load_checkpoint(tmp_path).step == 2


def test_the_mlp_pages_describe_the_default_models():
    """docs/*/mlp.md: the recipes table's parameter counts and the mlp-digits diagram are those of the
    default configurations."""
    from pathlib import Path

    from scratchzoo.models.mlp import MLP, MLPConfig
    pages = [(Path(__file__).parents[2] / "docs" / language / "mlp.md").read_text() for language in ("en", "zh")]
    for name, inputs, outputs, count in (("trainer-quadratic", 1, 1, 4_353), ("mlp-digits", 64, 10, 167_178),
                                         ("mlp-mnist1d", 40, 10, 288_778)):
        hidden = tuple(RECIPES[name].config_class().hidden)
        assert MLP(MLPConfig(inputs, hidden, outputs)).num_parameters() == count, name
        assert all(f"{count:,}" in page for page in pages), name
    digits = RECIPES["mlp-digits"].config_class()
    (first, second), p = digits.hidden, digits.dropout
    diagram = (f"64 -> Linear(64,{first}) -> ReLU -> Dropout({p}) -> Linear({first},{second}) -> ReLU -> "
               f"Dropout({p}) -> Linear({second},10)")
    assert all(diagram in page for page in pages)
