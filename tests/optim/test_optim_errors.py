"""Misuse of optimizers, schedulers and clip_grad_norm_ gives a clear error naming who, what and why."""
import re

import numpy as np
import pytest

import scratchzoo as sz
from scratchzoo import nn, optim
from scratchzoo.autograd import DTypeError, ShapeError
from scratchzoo.nn.utils import clip_grad_norm_
from scratchzoo.optim import lr_scheduler


def leaf(*shape, dtype=np.float32):
    return sz.Tensor(np.zeros(shape, dtype=dtype), requires_grad=True)


@pytest.mark.parametrize("given,fragment", [
    (lambda m: m, r"got Linear; pass model\.parameters\(\)"),
    (lambda m: m.parameters, r"got method; call it: model\.parameters\(\)"),
    (lambda m: m.weight, "got a single Parameter"),
    (lambda m: 3, "got int"),
])
def test_params_that_are_not_an_iterable_of_tensors(given, fragment):
    with pytest.raises(TypeError, match=rf"SGD expects an iterable of Parameters or param-group dicts.*{fragment}"):
        optim.SGD(given(nn.Linear(3, 2)), lr=0.1)


def test_non_tensor_and_non_leaf_items():
    m = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="Adam parameter group 0 expects an iterable of Parameters"
                                      ".*ndarray at position 1"):
        optim.Adam([m.weight, np.zeros(3)])
    with pytest.raises(ValueError, match="SGD parameter group 0: can't optimize a non-leaf Tensor.*position 0"):
        optim.SGD([m.weight * 2], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([{"params": [m.bias]}, {"params": [m.weight + 1]}], lr=0.1)


def test_param_group_without_params():
    with pytest.raises(KeyError, match=r"SGD parameter group 0 has no 'params' key.*got keys \['lr'\]"):
        optim.SGD([{"lr": 0.1}], lr=0.1)
    opt = optim.SGD([leaf(2)], lr=0.1)
    with pytest.raises(TypeError, match="SGD parameter group 1 must be a dict"):
        opt.add_param_group(leaf(2))


@pytest.mark.parametrize("make,error,fragment", [
    (lambda p: optim.SGD(p, lr="0.1"), TypeError, "SGD: lr must be a real number, got str '0.1'"),
    (lambda p: optim.SGD(p, lr=-1.0), ValueError, "SGD: lr must be a real number >= 0, got -1.0"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=None), TypeError, "SGD: momentum must be a real number, got NoneType"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ValueError, "SGD: nesterov=True needs momentum > 0"),
    (lambda p: optim.Adam(p, betas=0.9), TypeError, r"Adam: betas must be a pair \(beta1, beta2\), got float 0.9"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), ValueError,
     r"Adam: betas\[1\] must be a real number in \[0, 1\), got 1.0"),
    (lambda p: optim.Adam(p, lr=None), TypeError, "Adam: lr must be a real number, got NoneType None"),
    (lambda p: optim.AdamW(p, eps=float("nan")), ValueError, "AdamW: eps must be a real number >= 0, got nan"),
    (lambda p: optim.SGD([{"params": p, "lr": -1}], lr=0.1), ValueError, "SGD parameter group 0: lr must be"),
])
def test_hyperparameters_are_checked(make, error, fragment):
    with pytest.raises(error, match=fragment):
        make([leaf(2)])


def test_loaded_group_options_are_checked_before_anything_changes():
    p = leaf(2)
    opt = optim.SGD([p], lr=0.1)
    saved = opt.state_dict()
    saved["param_groups"][0]["lr"] = "fast"
    with pytest.raises(TypeError, match="SGD loaded parameter group 0: lr must be a real number"):
        opt.load_state_dict(saved)
    assert opt.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("state_dict", [{"state": {}}, nn.Linear(3, 2).state_dict()])
def test_load_state_dict_needs_an_optimizer_state_dict(state_dict):
    opt = optim.Adam([leaf(2)])
    with pytest.raises(KeyError, match="Adam.load_state_dict expects an optimizer state dict with keys 'state' "
                                       "and 'param_groups'"):
        opt.load_state_dict(state_dict)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
@pytest.mark.parametrize("grad_shape", [(5,), (1, 3), (3,)])  # (3,) and (1, 3) would broadcast silently
def test_step_checks_grad_shape(name, grad_shape):
    other, p = leaf(4), leaf(2, 3)
    opt = getattr(optim, name)([other, p], lr=0.1)
    p.grad = np.ones(grad_shape, dtype=np.float32)
    before = p.data.copy()
    message = f"{name}.step(): parameter 1 has shape (2, 3), but its grad has shape {grad_shape}"
    with pytest.raises(ShapeError, match=re.escape(message)):
        opt.step()
    np.testing.assert_array_equal(p.data, before)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_step_checks_grad_dtype(name):
    p = leaf(2, 3)
    p.grad = np.ones((2, 3), dtype=np.float64)
    with pytest.raises(DTypeError, match=rf"{name}.step\(\): parameter 0 is float32, but its grad is float64"):
        getattr(optim, name)([p], lr=0.1).step()


@pytest.mark.parametrize("make,fragment", [
    (lambda o: lr_scheduler.StepLR(o, 0), "StepLR: step_size must be an integer >= 1, got 0"),
    (lambda o: lr_scheduler.StepLR(o, 2.5), "StepLR: step_size must be an integer, got float"),
    (lambda o: lr_scheduler.CosineAnnealingLR(o, 0), "CosineAnnealingLR: T_max must be an integer >= 1, got 0"),
    (lambda o: lr_scheduler.LinearLR(o, total_iters=0), "LinearLR: total_iters must be an integer >= 1, got 0"),
    (lambda o: lr_scheduler.LinearLR(o, start_factor=0.0), r"LinearLR: start_factor must be a real number in \(0, 1\]"),
])
def test_scheduler_arguments_are_checked(make, fragment):
    opt = optim.SGD([leaf(2)], lr=0.1)
    with pytest.raises((ValueError, TypeError), match=fragment):
        make(opt)
    assert opt.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("given,fragment", [([np.zeros(3)], "got ndarray at position 0"),
                                            (nn.Linear(3, 2), "got Linear")])
def test_clip_grad_norm_needs_tensors(given, fragment):
    with pytest.raises(TypeError, match=rf"clip_grad_norm_ expects a Tensor or an iterable of Tensors.*{fragment}"):
        clip_grad_norm_(given, 1.0)
