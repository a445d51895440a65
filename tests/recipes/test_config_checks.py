"""Config values a recipe cannot train with are refused before training starts: through the CLI in one
line with exit code 2 (a usage problem, like a bad flag), through Python as ConfigError (a ValueError).
The message names the recipe, the flag, what is allowed and what was given. And `--epochs` counts where
a recipe counts epochs, while the defaults still train for the documented number of steps."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np
import pytest

from scratchzoo import io
from scratchzoo.cli import main
from scratchzoo.data import datasets
from scratchzoo.recipes import RECIPES, classify
from scratchzoo.recipes.common import ConfigError, check_config

TEXT = "".join(f"def f{i % 7}(x):\n    return x * {i % 5} + {i % 3}\n" for i in range(300))


def one_line_error(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("scratchzoo: error: "), err
    return lines[0]


@pytest.fixture
def small_data(monkeypatch):
    """MNIST-1D and the text corpora replaced by small stand-ins (no generation, no download)."""
    gen = np.random.default_rng(0)

    def signals(*args, **kwargs) -> datasets.Split:
        x, y = gen.standard_normal((400, 40)).astype(np.float32), gen.integers(0, 10, size=400)
        return datasets.Split(x, y, x[:100], y[:100])

    monkeypatch.setattr(datasets, "mnist1d", signals)
    monkeypatch.setattr(datasets, "text_corpus", lambda name: TEXT)


@pytest.mark.parametrize("argv, expected", [
    (["mlp-digits", "--activation", "foo"], "--activation must be one of relu, tanh, sigmoid, gelu, silu, leaky_relu"),
    (["lstm-charlm", "--cell", "foo"], "--cell must be one of rnn, lstm, gru"),
    (["lstm-charlm", "--corpus", "foo"], "--corpus must be one of stdlib, tinyshakespeare"),
    (["gpt-char", "--corpus", "foo"], "--corpus must be one of stdlib, tinyshakespeare"),
    (["mlp-digits", "--dropout", "1.5"], "--dropout must be a number in [0, 1)"),
    (["mlp-digits", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["lstm-charlm", "--seq-len", "0"], "--seq-len must be an integer >= 1"),
    (["cnn-digits", "--pooled-size", "0"], "--pooled-size must be an integer >= 1"),
    (["mlp-mnist1d", "--steps", "0"], "--steps must be an integer >= 1"),
    (["gru-mnist1d", "--steps", "-5"], "--steps must be an integer >= 1"),
    (["mlp-digits", "--epochs", "0"], "--epochs must be an integer >= 1"),
    (["mlp-digits", "--hidden", "32,0"], "--hidden must be comma-separated integers >= 1"),
    (["trainer-quadratic", "--lr", "0.0"], "--lr must be a number > 0"),
    (["lstm-charlm", "--val-fraction", "1.0"], "--val-fraction must be a number in (0, 1)"),
    (["gpt-char", "--n-head", "0"], "--n-head must be an integer >= 1"),
    (["moe-gpt", "--lr", "nan"], "--lr must be a number > 0"),
    (["transformer-g2p", "--weight-decay", "-0.1"], "--weight-decay must be a number >= 0"),
    # combinations of fields, refused here rather than by the model's constructor deep inside training
    (["gpt-char", "--n-head", "3"], "--n-embd must be a multiple of --n-head"),
    (["moe-gpt", "--top-k", "9"], "--top-k must be at most --num-experts (4)"),
    (["moe-regression", "--top-k", "5"], "--top-k must be at most --num-experts (4)"),
    (["moe-regression", "--activation", "foo"],
     "--activation must be one of relu, tanh, sigmoid, gelu, silu, leaky_relu"),
    (["transformer-g2p", "--nhead", "3"], "--d-model must be a multiple of --nhead"),
])
def test_a_value_the_recipe_cannot_use_exits_2_in_one_line(argv, expected, capsys, tmp_path):
    assert main(["train", *argv, "--out", str(tmp_path / "run")]) == 2
    line = one_line_error(capsys)
    assert f"{argv[0]}: {expected}; got " in line and line.rstrip("'").endswith(argv[2])
    assert not (tmp_path / "run").exists(), "refused before the run directory is made"


def test_a_window_longer_than_the_streams_is_refused(small_data, capsys, tmp_path):
    assert main(["train", "lstm-charlm", "--seq-len", "100000", "--out", str(tmp_path / "run")]) == 2
    line = one_line_error(capsys)
    assert "lstm-charlm: --seq-len must be below the length of each of the --batch-size 32 streams" in line
    assert "got 100000" in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["gru-mnist1d", "lstm-mnist1d", "lstm-charlm", "rnn-charlm"])
def test_dropout_with_a_single_recurrent_layer_is_an_error(name, capsys):
    """Dropout acts between stacked layers only: with one layer it would silently do nothing."""
    recipe = RECIPES[name]
    with pytest.raises(ConfigError, match=rf"{name}: --dropout 0.3 needs --num-layers 2 or more .*got --num-layers 1"):
        recipe.train(recipe.config_class(dropout=0.3))
    assert main(["train", name, "--dropout", "0.3"]) == 2
    assert "needs --num-layers 2 or more" in one_line_error(capsys)
    recipe.check_config(recipe.config_class(dropout=0.3, num_layers=2))  # stacked: accepted


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_default_config_passes_the_check(name):
    RECIPES[name].check_config(RECIPES[name].config_class())


def test_the_python_api_raises_config_error_before_training(tmp_path):
    recipe = RECIPES["mlp-digits"]
    with pytest.raises(ConfigError, match=r"mlp-digits: --batch-size must be an integer >= 1; got 0") as caught:
        recipe.train(recipe.config_class(batch_size=0, out=str(tmp_path / "run")))
    assert isinstance(caught.value, ValueError) and not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"--steps must be an integer >= 1; got 2.5"):
        recipe.check_config(recipe.config_class(steps=2.5))


@dataclass
class Fields:
    steps: int | None = None
    seed: int = -3  # any integer
    checkpoint_every: int = 0  # 0: only at the end
    dropout: float = 0.0
    lr: float = 1e-3
    weight_decay: float = 0.0
    hidden: tuple[int, ...] = (4, 4)
    name: str = "anything"


@pytest.mark.parametrize("field, value, expected", [
    ("steps", 0, "an integer >= 1"), ("checkpoint_every", -1, "an integer >= 0"),
    ("dropout", 1.0, "a number in [0, 1)"), ("dropout", -0.1, "a number in [0, 1)"),
    ("lr", 0.0, "a number > 0"), ("lr", float("inf"), "a number > 0"),
    ("weight_decay", float("nan"), "a number >= 0"), ("hidden", (4, -1), "comma-separated integers >= 1"),
    ("steps", True, "an integer >= 1"),
])
def test_the_generic_check_by_field_name_and_type(field, value, expected):
    check_config("demo", Fields())  # the defaults pass: None, a negative seed, 0 = never
    message = f"demo: --{field.replace('_', '-')} must be {expected}; got "
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        check_config("demo", dataclasses.replace(Fields(), **{field: value}))


def test_choices_are_checked_where_they_are_given():
    check_config("demo", Fields(), {"name": ("anything", "else")})
    with pytest.raises(ConfigError, match=r"demo: --name must be one of a, b; got 'anything'"):
        check_config("demo", Fields(), {"name": ("a", "b")})


# ---- --epochs --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, steps", [("mlp-mnist1d", 6000), ("gru-mnist1d", 3000), ("lstm-mnist1d", 3000),
                                         ("mlp-digits", 100 * (1437 // 64)), ("cnn-digits", 60 * (1437 // 64))])
def test_the_default_configs_train_for_the_documented_steps(name, steps):
    """MNIST-1D: 4000 training signals; digits: 1437 training images (80% of 1797)."""
    config = RECIPES[name].config_class()
    train_rows = 4000 if "mnist1d" in name else 1437
    assert config.steps is None and classify.planned_steps(config, train_rows) == steps


@pytest.mark.parametrize("name", ["mlp-mnist1d", "gru-mnist1d", "lstm-mnist1d"])
def test_an_explicit_epochs_counts_unless_steps_is_given(name):
    config = RECIPES[name].config_class(epochs=3)
    assert classify.planned_steps(config, 4000) == 3 * 40
    assert classify.planned_steps(dataclasses.replace(config, steps=7), 4000) == 7


@pytest.mark.parametrize("name", ["gru-mnist1d", "lstm-mnist1d"])
def test_epochs_take_effect_and_steps_override_them(name, small_data, tmp_path):
    """Through the CLI, on 400 stand-in training rows in batches of 100: 4 steps an epoch."""
    small = ["--batch-size", "100", "--checkpoint-every", "0", "--hidden-size", "8"]
    assert main(["train", name, *small, "--epochs", "2", "--out", str(tmp_path / "epochs")]) == 0
    assert io.load_checkpoint(tmp_path / "epochs").step == 2 * 4
    assert main(["train", name, *small, "--epochs", "2", "--steps", "3", "--out", str(tmp_path / "steps")]) == 0
    assert io.load_checkpoint(tmp_path / "steps").step == 3
