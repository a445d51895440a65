"""Losses: parity with torch.nn.functional (float32/float64) over every option, finite-difference
gradients, stability at huge logits, and clear errors for bad shapes and options."""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo.autograd import DTypeError, ShapeError

from helpers import assert_matches_torch, gradcheck, rand

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
REDUCTIONS = ["mean", "sum", "none"]


def labels(shape: tuple[int, ...], num_classes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=shape).astype(np.int64)


def probabilities(shape: tuple[int, ...]) -> np.ndarray:
    """A random distribution over dim 1 (or dim 0 for 1-D), as soft targets."""
    z = np.exp(rand(shape))
    return z / z.sum(axis=1 if len(shape) > 1 else 0, keepdims=True)


# ============================================================================ regression losses


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_regression_losses_match_torch(name: str, reduction: str, dtype: Any) -> None:
    assert_matches_torch(getattr(F, name), getattr(TF, name), [rand(3, 4), rand(3, 4)], dtype=dtype,
                         kwargs={"reduction": reduction})


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_regression_losses_gradcheck(name: str, reduction: str) -> None:
    gradcheck(lambda x, y: getattr(F, name)(x, y, reduction=reduction), [rand(2, 3), rand(2, 3) + 0.5])


def test_regression_loss_target_may_be_an_array_or_tensor() -> None:
    x = sz.tensor(rand(4).astype(np.float32), requires_grad=True)
    target = rand(4)  # a float64 array beside a float32 input: taken in the input's dtype
    for t in (target, target.astype(np.float32), target.tolist(), sz.tensor(target.astype(np.float32))):
        loss = F.mse_loss(x, t)
        assert loss.dtype == np.float32
        np.testing.assert_allclose(loss.item(), np.mean((x.data - target) ** 2), rtol=1e-5)


# ============================================================================ one rule for targets

# name -> (our loss, a target for a (3, 4) input): float-valued targets only (indices are never cast)
FLOAT_TARGET_LOSSES = {
    "mse_loss": (F.mse_loss, lambda: rand(3, 4)),
    "l1_loss": (F.l1_loss, lambda: rand(3, 4)),
    "binary_cross_entropy_with_logits": (F.binary_cross_entropy_with_logits,
                                         lambda: np.random.default_rng(1).uniform(size=(3, 4))),
    "cross_entropy": (F.cross_entropy, lambda: probabilities((3, 4))),
}


@pytest.mark.parametrize("target_dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", sorted(FLOAT_TARGET_LOSSES))
def test_plain_array_targets_are_taken_in_the_input_dtype(name: str, dtype: Any, target_dtype: Any) -> None:
    """A NumPy array (or list) target carries no graph: any float dtype is cast to the input's, for every loss."""
    loss_fn, make_target = FLOAT_TARGET_LOSSES[name]
    z, target = rand(3, 4), make_target()
    x = sz.tensor(z.astype(dtype), requires_grad=True)
    for t in (target.astype(target_dtype), target.tolist()):
        x.grad = None
        loss = loss_fn(x, t)
        loss.backward()
        assert loss.dtype == dtype and x.grad.dtype == dtype
        expected = getattr(TF, name)(torch.tensor(z.astype(dtype)), torch.tensor(np.asarray(t, dtype=dtype)))
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(loss.item(), expected.item(), rtol=rtol)


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "binary_cross_entropy_with_logits"])
def test_integer_tensor_targets_carry_no_graph_and_are_cast(name: str) -> None:
    x = sz.tensor(np.array([0.5, 1.5, -0.5], np.float32), requires_grad=True)
    loss = getattr(F, name)(x, sz.tensor([1, 0, 1]))
    expected = getattr(TF, name)(torch.tensor(x.data), torch.tensor([1.0, 0.0, 1.0]))
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", sorted(FLOAT_TARGET_LOSSES))
def test_a_target_that_requires_grad_gets_its_gradient(name: str, dtype: Any) -> None:
    """Only the target requires grad (the input is a constant): the target's gradient still matches torch."""
    loss_fn, make_target = FLOAT_TARGET_LOSSES[name]
    assert_matches_torch(loss_fn, getattr(TF, name), [rand(3, 4), make_target()], dtype=dtype,
                         requires_grad=[False, True])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_distillation_soft_targets_from_a_softmax_match_torch(smoothing: float, dtype: Any) -> None:
    """Soft targets computed in the graph (a teacher's softmax) pass their gradient back to the teacher."""
    def distill(student: Any, teacher: Any, F: Any) -> Any:
        return F.cross_entropy(student, F.softmax(teacher / 2.0, dim=1), label_smoothing=smoothing)

    assert_matches_torch(lambda s, t: distill(s, t, F), lambda s, t: distill(s, t, TF), [rand(4, 5), rand(4, 5)],
                         dtype=dtype)


@pytest.mark.parametrize("name", sorted(FLOAT_TARGET_LOSSES))
def test_target_gradcheck_with_constant_input(name: str) -> None:
    loss_fn, make_target = FLOAT_TARGET_LOSSES[name]
    target = make_target() + (0.5 if name == "l1_loss" else 0.0)  # keep |x - y| away from its kink
    gradcheck(lambda x, y: loss_fn(x, y, reduction="sum"), [rand(3, 4), target], requires_grad=[False, True])


# ============================================================================ cross-entropy

# (logits shape, index-target shape): (N, C), extra dims (N, C, d1, d2), and 1-D logits with a 0-d target
CE_SHAPES = {"N,C": ((5, 4), (5,)), "N,C,d1,d2": ((2, 4, 3, 2), (2, 3, 2)), "C": ((4,), ())}
CE_COMBOS = [pytest.param(shape, reduction, smoothing, ignore, id=f"{shape}-{reduction}-ls{smoothing}-{ignore}")
             for shape, reduction, smoothing, ignore in itertools.product(
                 CE_SHAPES, REDUCTIONS, [0.0, 0.2], ["no-ignore", "ignore=-100", "ignore=1"])
             if not (shape == "C" and ignore != "no-ignore")]  # one row: ignoring it leaves nothing


def ce_index_inputs(shape: str, ignore: str) -> tuple[list[np.ndarray], dict[str, Any]]:
    logits_shape, target_shape = CE_SHAPES[shape]
    target = labels(target_shape, 4)
    kwargs: dict[str, Any] = {}
    if ignore != "no-ignore":
        ignore_index = int(ignore.split("=")[1])
        target.reshape(-1)[::3] = ignore_index  # every third row ignored (the others keep their class)
        if ignore_index != -100:
            kwargs["ignore_index"] = ignore_index
    return [rand(logits_shape) * 2, target], kwargs


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, reduction, smoothing, ignore", CE_COMBOS)
def test_cross_entropy_indices_match_torch(shape: str, reduction: str, smoothing: float, ignore: str,
                                           dtype: Any) -> None:
    inputs, kwargs = ce_index_inputs(shape, ignore)
    kwargs.update(reduction=reduction, label_smoothing=smoothing)
    assert_matches_torch(F.cross_entropy, TF.cross_entropy, inputs, dtype=dtype, kwargs=kwargs)


@pytest.mark.parametrize("shape, reduction, smoothing, ignore", CE_COMBOS)
def test_cross_entropy_indices_gradcheck(shape: str, reduction: str, smoothing: float, ignore: str) -> None:
    inputs, kwargs = ce_index_inputs(shape, ignore)
    kwargs.update(reduction=reduction, label_smoothing=smoothing)
    gradcheck(lambda z, t: F.cross_entropy(z, t, **kwargs), inputs)


CE_PROB_COMBOS = [pytest.param(shape, reduction, smoothing, id=f"{shape}-{reduction}-ls{smoothing}")
                  for shape, reduction, smoothing in itertools.product(CE_SHAPES, REDUCTIONS, [0.0, 0.2])]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, reduction, smoothing", CE_PROB_COMBOS)
def test_cross_entropy_probabilities_match_torch(shape: str, reduction: str, smoothing: float, dtype: Any) -> None:
    logits_shape = CE_SHAPES[shape][0]
    # both the logits and the target distribution require grad: dl/dq = -(1 - eps) log_softmax(z)
    assert_matches_torch(F.cross_entropy, TF.cross_entropy, [rand(logits_shape), probabilities(logits_shape)],
                         dtype=dtype, kwargs={"reduction": reduction, "label_smoothing": smoothing})


@pytest.mark.parametrize("shape, reduction, smoothing", CE_PROB_COMBOS)
def test_cross_entropy_probabilities_gradcheck(shape: str, reduction: str, smoothing: float) -> None:
    logits_shape = CE_SHAPES[shape][0]
    gradcheck(lambda z, q: F.cross_entropy(z, q, reduction=reduction, label_smoothing=smoothing),
              [rand(logits_shape), probabilities(logits_shape)])


def test_cross_entropy_all_rows_ignored_is_nan_as_in_torch() -> None:
    logits, target = rand(3, 4), np.full(3, -100)
    ours = F.cross_entropy(sz.tensor(logits), target)
    theirs = TF.cross_entropy(torch.tensor(logits), torch.tensor(target))
    assert np.isnan(ours.item()) and torch.isnan(theirs)
    assert F.cross_entropy(sz.tensor(logits), target, reduction="sum").item() == 0.0


def test_cross_entropy_accepts_target_tensors_and_lists() -> None:
    logits = sz.tensor(rand(3, 4))
    expected = F.cross_entropy(logits, np.array([0, 3, 1])).item()
    assert F.cross_entropy(logits, sz.tensor([0, 3, 1])).item() == expected
    assert F.cross_entropy(logits, [0, 3, 1]).item() == expected


# ============================================================================ nll_loss


NLL_COMBOS = [pytest.param(shape, reduction, ignore, id=f"{shape}-{reduction}-{ignore}")
              for shape, reduction, ignore in itertools.product(
                  CE_SHAPES, REDUCTIONS, ["no-ignore", "ignore=-100", "ignore=1"])
              if not (shape == "C" and ignore != "no-ignore")]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, reduction, ignore", NLL_COMBOS)
def test_nll_loss_matches_torch(shape: str, reduction: str, ignore: str, dtype: Any) -> None:
    inputs, kwargs = ce_index_inputs(shape, ignore)
    kwargs["reduction"] = reduction
    assert_matches_torch(F.nll_loss, TF.nll_loss, inputs, dtype=dtype, kwargs=kwargs)


@pytest.mark.parametrize("shape, reduction, ignore", NLL_COMBOS)
def test_nll_loss_gradcheck(shape: str, reduction: str, ignore: str) -> None:
    inputs, kwargs = ce_index_inputs(shape, ignore)
    gradcheck(lambda z, t: F.nll_loss(z, t, reduction=reduction, **kwargs), inputs)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nll_of_log_softmax_is_cross_entropy(dtype: Any) -> None:
    logits, target = sz.tensor(rand(5, 4).astype(dtype)), labels((5,), 4)
    np.testing.assert_allclose(F.nll_loss(F.log_softmax(logits, 1), target).item(),
                               F.cross_entropy(logits, target).item(), rtol=1e-6)


# ============================================================================ binary cross-entropy with logits


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(3, 4), (5,), (2, 1, 3)])
def test_bce_with_logits_matches_torch(shape: tuple[int, ...], reduction: str, dtype: Any) -> None:
    target = np.random.default_rng(1).uniform(size=shape)  # soft targets in [0, 1]; hard ones below
    target.reshape(-1)[::2] = np.round(target.reshape(-1)[::2])
    assert_matches_torch(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits,
                         [rand(shape) * 3, target], dtype=dtype, kwargs={"reduction": reduction})  # dl/dy = -z


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_gradcheck(reduction: str) -> None:
    gradcheck(lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction=reduction),
              [rand(3, 4) * 3, np.random.default_rng(1).uniform(size=(3, 4))])


# ============================================================================ huge logits stay finite


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("loss", ["ce-index", "ce-smoothing", "ce-probabilities", "bce"])
def test_logits_of_1e4_give_finite_loss_and_grad(loss: str, dtype: Any) -> None:
    logits_array = (np.sign(rand(4, 5)) * 1e4).astype(dtype)
    logits_array[0] = [1e4, -1e4, 1e4, 0.0, -1e4]
    logits = sz.tensor(logits_array, requires_grad=True)
    target_index = np.array([1, 0, 3, 4])  # includes classes the logits rate 2e4 below the winner
    if loss == "ce-index":
        out = F.cross_entropy(logits, target_index)
    elif loss == "ce-smoothing":
        out = F.cross_entropy(logits, target_index, label_smoothing=0.1)
    elif loss == "ce-probabilities":
        out = F.cross_entropy(logits, probabilities((4, 5)).astype(dtype))
    else:
        out = F.binary_cross_entropy_with_logits(logits, (rand(4, 5) > 0).astype(dtype))
    out.backward()
    assert np.isfinite(out.item()) and out.item() > 1e3  # the wrong confident classes cost ~1e4
    assert np.all(np.isfinite(logits.grad))
    assert out.dtype == dtype and logits.grad.dtype == dtype
    # and the values still agree with PyTorch, whose losses are stable too
    if loss.startswith("ce"):
        assert_matches_torch(F.cross_entropy, TF.cross_entropy, [logits_array.astype(np.float64), target_index],
                             dtype=dtype, kwargs={"label_smoothing": 0.1 if loss == "ce-smoothing" else 0.0})


# ============================================================================ clear errors

T = lambda *shape: sz.tensor(rand(*shape))  # noqa: E731
ERRORS = [
    ("mse shapes", lambda: F.mse_loss(T(3, 4), T(4, 3)), ShapeError, ["mse_loss", "(3, 4)", "(4, 3)"]),
    ("l1 shapes", lambda: F.l1_loss(T(3), T(3, 1)), ShapeError, ["l1_loss", "(3,)", "(3, 1)"]),
    ("mse reduction", lambda: F.mse_loss(T(3), T(3), reduction="avg"), ValueError, ["mse_loss", "'avg'", "mean"]),
    ("l1 reduction", lambda: F.l1_loss(T(3), T(3), reduction="max"), ValueError, ["l1_loss", "'max'"]),
    ("ce target shape", lambda: F.cross_entropy(T(5, 4), np.zeros(4, int)), ShapeError,
     ["cross_entropy", "(5, 4)", "(5,)", "(4,)"]),
    ("ce extra dims target", lambda: F.cross_entropy(T(2, 4, 3), np.zeros((2, 4), int)), ShapeError,
     ["(2, 4, 3)", "(2, 3)", "(2, 4)"]),
    ("ce probability shape", lambda: F.cross_entropy(T(5, 4), np.full((5, 3), 1 / 3)), ShapeError,
     ["(5, 4)", "(5, 3)"]),
    ("ce class range", lambda: F.cross_entropy(T(2, 4), np.array([0, 4])), IndexError, ["[0, 4)", "max 4"]),
    ("ce negative class", lambda: F.cross_entropy(T(2, 4), np.array([-1, 0])), IndexError, ["[0, 4)", "min -1"]),
    ("ce reduction", lambda: F.cross_entropy(T(2, 4), np.array([0, 1]), reduction="avg"), ValueError,
     ["cross_entropy", "'avg'"]),
    ("ce reduction probabilities", lambda: F.cross_entropy(T(2, 4), np.full((2, 4), 0.25), reduction="avg"),
     ValueError, ["cross_entropy", "'avg'"]),
    ("ce smoothing", lambda: F.cross_entropy(T(2, 4), np.array([0, 1]), label_smoothing=1.5), ValueError,
     ["label_smoothing", "1.5"]),
    ("ce int logits", lambda: F.cross_entropy(sz.tensor([[1, 2]]), np.array([0])), DTypeError, ["int64"]),
    ("nll target shape", lambda: F.nll_loss(T(5, 4), np.zeros(3, int)), ShapeError, ["nll_loss", "(5, 4)", "(3,)"]),
    ("nll target shape, same count", lambda: F.nll_loss(T(4, 3), np.zeros((2, 2), int)), ShapeError,
     ["nll_loss", "(4, 3)", "(2, 2)"]),
    ("nll class range", lambda: F.nll_loss(T(2, 4), np.array([0, 7])), IndexError, ["nll_loss", "[0, 4)"]),
    ("nll float target", lambda: F.nll_loss(T(2, 4), np.array([0.0, 1.0])), DTypeError, ["nll_loss", "float64"]),
    ("nll reduction", lambda: F.nll_loss(T(2, 4), np.array([0, 1]), reduction="avg"), ValueError,
     ["nll_loss", "'avg'"]),
    ("bce shapes", lambda: F.binary_cross_entropy_with_logits(T(3, 4), T(3)), ShapeError,
     ["binary_cross_entropy_with_logits", "(3, 4)", "(3,)"]),
    ("bce reduction", lambda: F.binary_cross_entropy_with_logits(T(3), T(3), reduction="x"), ValueError, ["'x'"]),
    # a float Tensor target is part of the graph, so it never mixes dtypes with the input
    ("mse target dtype", lambda: F.mse_loss(T(3), T(3).float()), DTypeError, ["mse_loss", "float32", "float64"]),
    ("l1 target dtype", lambda: F.l1_loss(T(3).float(), T(3)), DTypeError, ["l1_loss", "float64", "float32"]),
    ("bce target dtype", lambda: F.binary_cross_entropy_with_logits(T(3), T(3).float()), DTypeError,
     ["binary_cross_entropy_with_logits", "float32", "float64"]),
    ("ce probability dtype", lambda: F.cross_entropy(T(2, 4), sz.tensor(np.full((2, 4), 0.25, np.float32))),
     DTypeError, ["cross_entropy", "float32", "float64"]),
    ("mse int input", lambda: F.mse_loss(sz.tensor([1, 2]), np.array([1.0, 2.0])), DTypeError, ["mse_loss", "int64"]),
]


@pytest.mark.parametrize("make, error, fragments", [pytest.param(*e[1:], id=e[0]) for e in ERRORS])
def test_clear_errors(make: Any, error: type, fragments: list[str]) -> None:
    with pytest.raises(error) as info:
        make()
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in the message {str(info.value)!r}"
