"""Claims the docs make about Adam and AdamW, each checked."""
import numpy as np
import pytest

import scratchzoo as sz
from scratchzoo import optim


def param(values):
    return sz.Tensor(np.array(values, dtype=np.float64), requires_grad=True)


def test_first_update_is_lr_times_bias_corrected_ratio():
    """step_size = lr / (1 - b1^t): the update is lr * m_hat / (sqrt(v_hat) + eps)."""
    lr, (b1, b2), eps = 0.01, (0.9, 0.999), 1e-8
    g = np.array([0.3, -2.0, 1e-4])
    p = param([1.0, 2.0, 3.0])
    opt = optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps)
    p.grad = g.copy()
    opt.step()
    m_hat = (1 - b1) * g / (1 - b1)
    v_hat = (1 - b2) * g ** 2 / (1 - b2)
    np.testing.assert_allclose(np.array([1.0, 2.0, 3.0]) - p.data, lr * m_hat / (np.sqrt(v_hat) + eps), rtol=1e-12)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_first_step_moves_each_parameter_by_about_lr(scale):
    """m_hat / sqrt(v_hat) = g / |g| on the first step: the move is lr whatever the gradient's scale."""
    lr = 1e-3
    g = scale * np.random.default_rng(0).standard_normal(50)
    p = param(np.zeros(50))
    opt = optim.Adam([p], lr=lr)
    p.grad = g
    opt.step()
    np.testing.assert_allclose(np.abs(p.data), lr, rtol=0.01)


def loss_grad(theta):
    """Gradient of an arbitrary loss L(theta) = sum(sin(theta) + theta^3 / 10)."""
    return np.cos(theta) + 0.3 * theta ** 2


def test_l2_weight_decay_equals_adding_half_lambda_theta_squared_to_the_loss():
    lam = 0.1
    start = np.linspace(-2.0, 2.0, 9)
    decayed, penalised = param(start.copy()), param(start.copy())
    opt_decay = optim.Adam([decayed], lr=0.05, weight_decay=lam)
    opt_penalty = optim.Adam([penalised], lr=0.05, weight_decay=0.0)
    for _ in range(30):
        decayed.grad = loss_grad(decayed.data)
        opt_decay.step()
        theta = sz.Tensor(penalised.data, requires_grad=True)
        ((lam / 2) * (theta * theta).sum()).backward()  # d/dtheta (lambda/2) * sum(theta^2) = lambda * theta
        penalised.grad = loss_grad(penalised.data) + theta.grad
        opt_penalty.step()
    np.testing.assert_allclose(decayed.data, penalised.data, rtol=1e-12, atol=1e-14)


def test_adamw_decay_is_decoupled_from_the_moments():
    """AdamW shrinks theta by lr * wd directly; Adam's L2 term goes through m / sqrt(v) and differs."""
    lr, wd = 0.05, 0.1
    start = np.linspace(-2.0, 2.0, 9)
    adamw, adam_l2, plain = param(start.copy()), param(start.copy()), param(start.copy())
    opts = [optim.AdamW([adamw], lr=lr, weight_decay=wd), optim.Adam([adam_l2], lr=lr, weight_decay=wd),
            optim.Adam([plain], lr=lr)]
    # One step from the same gradient: AdamW = (1 - lr*wd) * theta - (the plain Adam move).
    for p, opt in zip([adamw, adam_l2, plain], opts):
        p.grad = loss_grad(start)
        opt.step()
    np.testing.assert_allclose(adamw.data, (1 - lr * wd) * start + (plain.data - start), rtol=1e-12)
    assert not np.allclose(adamw.data, adam_l2.data, rtol=1e-3)
    for _ in range(30):
        for p, opt in zip([adamw, adam_l2], opts):
            p.grad = loss_grad(p.data)
            opt.step()
    assert not np.allclose(adamw.data, adam_l2.data, rtol=1e-3)


def test_a_gradient_that_keeps_flipping_sign_gets_small_steps():
    """v tracks the gradient's size and m its direction: a parameter whose gradient is always +1 moves about
    lr per step, one whose gradient alternates +1, -1 (noisy: no consistent direction) barely moves, though
    both gradients have the same size."""
    lr, steps = 1e-2, 200
    p = param([0.0, 0.0])
    opt = optim.Adam([p], lr=lr)
    for t in range(steps):
        p.grad = np.array([1.0, (-1.0) ** t])
        opt.step()
    steady, flipping = np.abs(p.data)
    assert steady == pytest.approx(lr * steps, rel=0.01)
    assert flipping < 0.1 * lr * steps


def test_the_defaults_are_kingma_and_ba_s():
    """Adam (adaptive moment estimation) defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay."""
    group = optim.Adam([param([1.0])]).param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (1e-3, (0.9, 0.999), 1e-8, 0)
