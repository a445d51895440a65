"""Loss modules: each equals its functional form (same numbers) and torch.nn's module (forward and
backward) for every reduction; options are checked when the module is built."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo import nn

from helpers import assert_matches_torch, rand

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
REDUCTIONS = ["mean", "sum", "none"]


def labels(*shape: int, num_classes: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=shape).astype(np.int64)


def with_ignored(target: np.ndarray, ignore_index: int) -> np.ndarray:
    target = target.copy()
    target.flat[::3] = ignore_index  # every third row is ignored
    return target


def soft_targets(*shape: int) -> np.ndarray:
    z = np.exp(rand(shape))
    return z / z.sum(axis=1, keepdims=True)


# name, our options, torch options (equal here), inputs, which inputs require grad
CASES = [
    ("MSELoss", {}, lambda: [rand(3, 4), rand(3, 4)], None),
    ("L1Loss", {}, lambda: [rand(3, 4), rand(3, 4)], None),
    ("CrossEntropyLoss", {}, lambda: [rand(6, 5), labels(6)], None),
    ("CrossEntropyLoss", {"ignore_index": 2}, lambda: [rand(6, 5), with_ignored(labels(6), 2)], None),
    ("CrossEntropyLoss", {"label_smoothing": 0.1}, lambda: [rand(2, 5, 3), labels(2, 3)], None),
    ("CrossEntropyLoss", {}, lambda: [rand(4, 5), soft_targets(4, 5)], [True, False]),
    ("NLLLoss", {}, lambda: [rand(6, 5), labels(6)], None),
    ("NLLLoss", {"ignore_index": -1}, lambda: [rand(2, 5, 4), with_ignored(labels(2, 4), -1)], None),
    ("BCEWithLogitsLoss", {}, lambda: [rand(3, 4) * 3, np.random.default_rng(1).uniform(size=(3, 4))],
     [True, False]),  # our op treats the target as a constant
]
CASE_IDS = ["mse", "l1", "ce", "ce-ignore", "ce-smoothing-3d", "ce-probabilities", "nll", "nll-ignore-3d", "bce"]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name, options, inputs, requires_grad", CASES, ids=CASE_IDS)
def test_loss_module_matches_torch(name: str, options: dict[str, Any], inputs: Any, requires_grad: Any,
                                   reduction: str, dtype: Any) -> None:
    ours = getattr(nn, name)(reduction=reduction, **options)
    theirs = getattr(torch.nn, name)(reduction=reduction, **options)
    assert_matches_torch(ours, theirs, inputs(), dtype=dtype, requires_grad=requires_grad)


FUNCTIONAL = {"MSELoss": F.mse_loss, "L1Loss": F.l1_loss, "CrossEntropyLoss": F.cross_entropy,
              "NLLLoss": F.nll_loss, "BCEWithLogitsLoss": F.binary_cross_entropy_with_logits}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name, options, inputs, requires_grad", CASES, ids=CASE_IDS)
def test_loss_module_equals_its_functional_form(name: str, options: dict[str, Any], inputs: Any,
                                                requires_grad: Any, reduction: str) -> None:
    arrays = inputs()
    x = arrays[0]
    target = sz.tensor(arrays[1] if arrays[1].dtype.kind == "i" else arrays[1].astype(np.float32))
    grads = []
    results = []
    for loss in (getattr(nn, name)(reduction=reduction, **options),
                 lambda a, b: FUNCTIONAL[name](a, b, reduction=reduction, **options)):
        x_tensor = sz.tensor(x.astype(np.float32), requires_grad=True)
        out = loss(x_tensor, target)
        out.sum().backward()
        results.append(out.data)
        grads.append(x_tensor.grad)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(grads[0], grads[1])


def test_loss_modules_have_no_state_and_default_to_mean() -> None:
    for name in FUNCTIONAL:
        loss = getattr(nn, name)()
        assert loss.reduction == "mean" and loss.state_dict() == {} and list(loss.parameters()) == []
    assert nn.CrossEntropyLoss().ignore_index == -100 and nn.CrossEntropyLoss().label_smoothing == 0.0
    assert nn.NLLLoss().ignore_index == -100


@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_loss_module_rejects_an_unknown_reduction(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name}: reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        getattr(nn, name)(reduction="avg")


def test_loss_module_repr() -> None:
    # torch prints MSELoss() whatever the reduction; ours shows a reduction that is not the default
    assert repr(nn.MSELoss()) == repr(torch.nn.MSELoss()) == "MSELoss()"
    assert repr(nn.L1Loss(reduction="sum")) == "L1Loss(reduction='sum')"
