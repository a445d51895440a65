"""Claims the MLP page makes about the trainer (trainer-quadratic: y = 3x^2 + 5, an MLP, Adam, MSE)."""
from __future__ import annotations

import numpy as np
import pytest

from scratchzoo import losses, rng
from scratchzoo.autograd import Tensor
from scratchzoo.data import datasets
from scratchzoo.optim import Adam
from scratchzoo.recipes import quadratic
from scratchzoo.recipes.common import train_loop

STEPS = 200


@pytest.fixture(scope="module")
def split():
    return datasets.quadratic(n_train=512, seed=0)


def trained(split, tmp_path, weight_decay=0.0, steps=STEPS):
    """The recipe's model (hidden (32, 32)) trained by the recipe's loop, Adam at a constant lr 1e-2."""
    config = quadratic.QuadraticConfig(hidden=(32, 32), steps=steps, weight_decay=weight_decay)
    rng.manual_seed(0)
    model = quadratic.build(config)
    before = quadratic.evaluate(model, split)["test_mse"]
    optimizer = Adam(model.parameters(), lr=1e-2, weight_decay=weight_decay)
    train_loop(model, optimizer, split.x_train, split.y_train, losses.mse_loss, steps=steps, batch_size=64,
               seed=0, run_dir=tmp_path, config=config, progress=False)
    return model, before, quadratic.evaluate(model, split)["test_mse"]


def test_mse_mean_is_sum_over_n_and_its_gradient_is_two_over_n_times_the_error(split):
    """L = (1/N) sum_i (y_hat_i - y_i)^2,  dL/dy_hat_i = (2/N)(y_hat_i - y_i); reduction='sum' drops 1/N."""
    rng.manual_seed(0)
    model = quadratic.build(quadratic.QuadraticConfig(hidden=(8,)))
    x, y = split.x_train, split.y_train
    n = len(y)
    prediction = model(Tensor(x)).data
    y_hat = Tensor(prediction.copy(), requires_grad=True)  # a leaf, so backward keeps its gradient
    mean = losses.mse_loss(y_hat, Tensor(y))
    total = losses.mse_loss(Tensor(prediction), Tensor(y), reduction="sum")
    assert mean.item() == pytest.approx(total.item() / n, rel=1e-6)
    assert mean.item() == pytest.approx(float(((prediction.astype(np.float64) - y) ** 2).mean()), rel=1e-6)
    mean.backward()
    np.testing.assert_allclose(y_hat.grad, 2.0 / n * (prediction - y), rtol=1e-5, atol=1e-9)


def test_training_lowers_held_out_mse_by_a_large_factor(split, tmp_path):
    """An untrained net predicts about 0 where y is 5..8; a couple hundred Adam steps fit the curve."""
    _, before, after = trained(split, tmp_path)
    assert before > 10.0
    assert after < before / 100, f"held-out MSE {before:.4g} -> {after:.4g}"


def test_weight_decay_shrinks_the_weights(split, tmp_path):
    """L2 adds lambda * theta to every gradient, pulling each weight toward 0: the same run with
    weight_decay ends with a clearly smaller weight norm (and still fits the data)."""
    plain, _, plain_mse = trained(split, tmp_path / "plain", weight_decay=0.0)
    decayed, _, decayed_mse = trained(split, tmp_path / "decayed", weight_decay=0.1)

    def norm(model):
        return float(np.sqrt(sum(np.sum(p.data.astype(np.float64) ** 2) for p in model.parameters())))

    assert norm(decayed) < 0.8 * norm(plain), f"|theta| {norm(plain):.4g} without decay, {norm(decayed):.4g} with"
    assert decayed_mse < 1.0 and plain_mse < 1.0
