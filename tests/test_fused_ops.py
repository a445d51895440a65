"""Fused ops: each must equal PyTorch and the composition of primitive ops it replaces.

A fused op (one Function with a hand-written backward instead of a chain of primitives) exists only
because a benchmark showed it matters (benchmarks/vs_torch.py); these tests keep it exactly as correct as
the composition: forward and every gradient, float32 and float64, plus finite differences in float64.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo import nn, optim
from scratchzoo.autograd import DTypeError, ShapeError

from helpers import TOLERANCES, assert_close, assert_matches_torch, gradcheck, rand

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


def assert_matches_composition(fused: Callable[..., Any], composed: Callable[..., Any], inputs: list[Any],
                               dtype: Any, requires_grad: list[bool] | None = None) -> None:
    """Same inputs and upstream gradient through both; outputs and input gradients must agree."""
    dtype = np.dtype(dtype)
    rtol, atol = TOLERANCES[dtype]
    requires_grad = requires_grad or [True] * len(inputs)
    runs = []
    for fn in (fused, composed):
        tensors = [sz.Tensor(x.astype(dtype), requires_grad=flag) for x, flag in zip(inputs, requires_grad)]
        out = fn(*tensors)
        out.backward(np.random.default_rng(1234).standard_normal(out.shape).astype(dtype))
        runs.append((out, tensors))
    (fused_out, fused_inputs), (composed_out, composed_inputs) = runs
    assert fused_out.dtype == dtype
    assert_close("output", fused_out.data, composed_out.data, rtol, atol)
    for i, (a, b) in enumerate(zip(fused_inputs, composed_inputs)):
        if not a.requires_grad:
            assert a.grad is None, f"input[{i}] does not require grad but got one"
            continue
        assert a.grad.dtype == dtype, f"grad of input[{i}]: dtype {a.grad.dtype}"
        assert_close(f"grad of input[{i}]", a.grad, b.grad, rtol, atol)


# ============================================================================ linear: y = x @ W^T + b


def linear_composed(x: sz.Tensor, weight: sz.Tensor, bias: sz.Tensor | None = None) -> sz.Tensor:
    """What F.linear was before the fused LinearOp: transpose, matmul, add (three graph nodes)."""
    y = F.matmul(x, F.transpose(weight, 0, 1))
    return y if bias is None else F.add(y, bias)


LINEAR_SHAPES = {  # input shape, (out_features, in_features), bias
    "2-D": ((5, 4), (3, 4), True),
    "3-D": ((2, 5, 4), (3, 4), True),
    "4-D": ((2, 3, 2, 4), (6, 4), True),
    "1-D": ((4,), (3, 4), True),
    "no bias": ((5, 4), (3, 4), False),
    "one output": ((6, 7), (1, 7), True),
    "mlp layer": ((16, 64), (32, 64), True),
}


def _linear_inputs(name: str) -> list[np.ndarray]:
    x_shape, w_shape, has_bias = LINEAR_SHAPES[name]
    return [rand(*x_shape), rand(*w_shape)] + ([rand(w_shape[0])] if has_bias else [])


@DTYPES
@pytest.mark.parametrize("name", list(LINEAR_SHAPES))
def test_linear_matches_torch(name: str, dtype: Any) -> None:
    assert_matches_torch(F.linear, TF.linear, _linear_inputs(name), dtype=dtype)


@DTYPES
@pytest.mark.parametrize("name", list(LINEAR_SHAPES))
def test_linear_matches_composition(name: str, dtype: Any) -> None:
    assert_matches_composition(F.linear, linear_composed, _linear_inputs(name), dtype)


@DTYPES
@pytest.mark.parametrize("requires_grad", [[False, True, True], [True, False, False], [True, True, False]],
                         ids=["first layer (input needs no grad)", "frozen weights", "frozen bias"])
def test_linear_gradients_only_where_wanted(requires_grad: list[bool], dtype: Any) -> None:
    inputs = _linear_inputs("3-D")
    assert_matches_composition(F.linear, linear_composed, inputs, dtype, requires_grad)
    assert_matches_torch(F.linear, TF.linear, inputs, dtype=dtype, requires_grad=requires_grad)


@pytest.mark.parametrize("name", list(LINEAR_SHAPES))
def test_linear_gradcheck(name: str) -> None:
    gradcheck(F.linear, _linear_inputs(name))


def test_linear_non_contiguous_input() -> None:
    """A transposed (strided) input is flattened into rows correctly, and its gradient has its shape."""
    x = rand(4, 2, 5).transpose(1, 0, 2)  # (2, 4, 5), not C-contiguous
    assert_matches_torch(F.linear, TF.linear, [x, rand(3, 5), rand(3)], dtype=np.float64)
    gradcheck(F.linear, [x, rand(3, 5), rand(3)])


def test_linear_is_one_graph_node() -> None:
    x = sz.Tensor(rand(2, 4).astype(np.float32))
    layer = nn.Linear(4, 3)
    y = layer(x)
    assert type(y._ctx) is F.LinearOp
    assert y._ctx.inputs == (x, layer.weight, layer.bias)


def test_linear_module_matches_torch_in_a_training_step() -> None:
    """nn.Linear goes through the fused op: one Adam step on a two-layer net equals PyTorch's."""
    sz.manual_seed(0)
    ours = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    theirs = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x, y = rand(5, 6).astype(np.float32), np.array([0, 2, 1, 1, 0])
    ours_opt = optim.Adam(ours.parameters(), lr=1e-2)
    theirs_opt = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    for _ in range(3):
        ours_opt.zero_grad()
        F.cross_entropy(ours(sz.Tensor(x)), sz.Tensor(y)).backward()
        ours_opt.step()
        theirs_opt.zero_grad()
        TF.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        theirs_opt.step()
    for name, value in theirs.state_dict().items():
        assert_close(name, ours.state_dict()[name], value.numpy(), *TOLERANCES[np.dtype(np.float32)])


def test_linear_errors() -> None:
    x = sz.Tensor(np.ones((2, 4), np.float32))
    w = sz.Tensor(np.ones((3, 4), np.float32))
    with pytest.raises(ShapeError, match=r"\(2, 5\).*\(3, 4\)"):
        F.linear(sz.Tensor(np.ones((2, 5), np.float32)), w)
    with pytest.raises(ShapeError, match="bias"):
        F.linear(x, w, sz.Tensor(np.ones(4, np.float32)))
    with pytest.raises(DTypeError, match="float64"):
        F.linear(x, sz.Tensor(np.ones((3, 4))))
    with pytest.raises(DTypeError, match="float64"):
        F.linear(x, w, sz.Tensor(np.ones(3)))
