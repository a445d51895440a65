"""Each schedule's lr sequence equals torch.optim.lr_scheduler's for the same settings."""
import math

import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo import optim
from scratchzoo.optim import lr_scheduler

STEPS = 40

CASES = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("CosineAnnealingLR", dict(T_max=STEPS // 2, eta_min=1e-4)),
    ("CosineAnnealingLR", dict(T_max=13)),
    ("LinearLR", dict(start_factor=0.1, end_factor=1.0, total_iters=10)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.25, total_iters=15)),
    ("LambdaLR", dict(lr_lambda=lambda t: 0.95 ** t)),
]


def optimizers():
    """Two groups with different lrs, in both libraries."""
    ours = optim.SGD([{"params": [sz.Tensor(np.ones(2), requires_grad=True)]},
                      {"params": [sz.Tensor(np.ones(3), requires_grad=True)], "lr": 0.3}], lr=0.1)
    theirs = torch.optim.SGD([{"params": [torch.ones(2, requires_grad=True)]},
                              {"params": [torch.ones(3, requires_grad=True)], "lr": 0.3}], lr=0.1)
    return ours, theirs


def lr_sequence(scheduler, opt, steps=STEPS):
    sequence = []
    for _ in range(steps):
        sequence.append([group["lr"] for group in opt.param_groups])
        assert scheduler.get_last_lr() == sequence[-1]
        opt.step()
        scheduler.step()
    return np.array(sequence)


@pytest.mark.parametrize("name,options", CASES)
def test_lr_sequence_matches_torch(name, options):
    opt, topt = optimizers()
    ours = lr_sequence(getattr(lr_scheduler, name)(opt, **options), opt)
    theirs = lr_sequence(getattr(torch.optim.lr_scheduler, name)(topt, **options), topt)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.3]


@pytest.mark.parametrize("name,options", CASES)
def test_state_dict_round_trip(name, options):
    opt, _ = optimizers()
    straight = lr_sequence(getattr(lr_scheduler, name)(opt, **options), opt)

    opt, _ = optimizers()
    first = getattr(lr_scheduler, name)(opt, **options)
    head = lr_sequence(first, opt, STEPS // 2)
    saved_opt, saved = opt.state_dict(), first.state_dict()
    assert "optimizer" not in saved and "lr_lambdas" not in saved

    opt, _ = optimizers()
    opt.load_state_dict(saved_opt)
    resumed = getattr(lr_scheduler, name)(opt, **options)
    resumed.load_state_dict(saved)
    tail = lr_sequence(resumed, opt, STEPS - STEPS // 2)
    np.testing.assert_array_equal(np.concatenate([head, tail]), straight)

    opt, _ = optimizers()  # torch's order: build both, then load both
    resumed = getattr(lr_scheduler, name)(opt, **options)
    resumed.load_state_dict(saved)
    opt.load_state_dict(saved_opt)
    np.testing.assert_array_equal(lr_sequence(resumed, opt, STEPS - STEPS // 2), tail)


def test_lambda_lr_takes_one_function_per_group():
    opt, topt = optimizers()
    fns = [lambda t: 1.0 / (t + 1), lambda t: 0.9 ** t]
    np.testing.assert_allclose(lr_sequence(lr_scheduler.LambdaLR(opt, fns), opt),
                               lr_sequence(torch.optim.lr_scheduler.LambdaLR(topt, fns), topt), rtol=1e-15)
    with pytest.raises(ValueError, match="one per group"):
        lr_scheduler.LambdaLR(opt, fns[:1])


def test_warmup_cosine():
    opt, _ = optimizers()
    lrs = lr_sequence(lr_scheduler.warmup_cosine(opt, warmup_steps=4, total_steps=20, min_lr_ratio=0.1), opt, 25)[:, 0]
    np.testing.assert_allclose(lrs[:4], [0.025, 0.05, 0.075, 0.1])  # linear warmup up to the base lr
    assert lrs[4] == pytest.approx(0.1)  # the cosine starts at the top...
    assert lrs[12] == pytest.approx(0.01 + 0.09 * (1 + math.cos(math.pi / 2)) / 2)  # ...is halfway at mid-decay...
    np.testing.assert_allclose(lrs[20:], 0.01)  # ...and stays at min_lr_ratio * lr after total_steps
    assert np.all(np.diff(lrs[4:21]) < 0)


def test_resuming_without_initial_lr_is_a_clear_error():
    opt, _ = optimizers()
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(opt, step_size=3, last_epoch=5)
