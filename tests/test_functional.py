"""Every op in functional.py: parity with PyTorch (float32 and float64) and finite-difference gradients.

Each case is one line: our callable, torch's, and the inputs. The same table drives the parity test
(both dtypes) and the gradient check (float64), so a new op is one new line here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo.autograd import DTypeError, ShapeError

from helpers import assert_matches_torch, gradcheck, rand

DTYPES = [np.float32, np.float64]


def pos(*shape: Any) -> np.ndarray:
    """Positive inputs, away from 0 (log, sqrt, divisors, bases of x ** y)."""
    return np.asarray(np.abs(rand(*shape)) + 0.5)


def away(*shape: Any) -> np.ndarray:
    """Inputs at least 0.1 from 0 (the kink of relu, abs, leaky_relu)."""
    x = rand(*shape)
    return np.asarray(np.sign(x) * (np.abs(x) + 0.1))


def ints(*values: Any) -> np.ndarray:
    return np.array(values, dtype=np.int64)


@dataclass
class Case:
    id: str
    ours: Callable[..., Any]
    theirs: Callable[..., Any]
    make: Callable[[], list[Any]]  # builds the inputs (called inside the test, so rand is seeded)
    smooth: bool = True  # False: parity only (no float output; a finite difference would straddle a tie;
    #                      or the gradient departs from the derivative by design, as embedding's padding row)


CASES: list[Case] = []


def case(id: str, ours: Callable[..., Any], theirs: Callable[..., Any], make: Callable[[], list[Any]],
         smooth: bool = True) -> None:
    CASES.append(Case(id, ours, theirs, make, smooth))


def same(id: str, fn: Callable[..., Any], make: Callable[[], list[Any]], smooth: bool = True) -> None:
    """The same Python code runs on both libraries (operators, methods, indexing)."""
    case(id, fn, fn, make, smooth)


# ============================================================================ arithmetic

BINARY_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 4)), ((), (2, 3)), ((2, 3), ()),
                 ((5, 1, 3), (4, 1)), ((1,), (1,)), ((2, 1, 1), (1, 3, 1))]
for _name, _ours, _theirs in [("add", F.add, torch.add), ("sub", F.sub, torch.sub), ("mul", F.mul, torch.mul)]:
    for _a, _b in BINARY_SHAPES:
        case(f"{_name}{_a}{_b}", _ours, _theirs, lambda a=_a, b=_b: [rand(a), rand(b)])
for _a, _b in BINARY_SHAPES:
    case(f"div{_a}{_b}", F.div, torch.div, lambda a=_a, b=_b: [rand(a), away(b) * 3])

same("op a+b", lambda a, b: a + b, lambda: [rand(2, 3), rand(3)])
same("op a-b", lambda a, b: a - b, lambda: [rand(2, 3), rand(2, 1)])
same("op a*b", lambda a, b: a * b, lambda: [rand(3), rand(2, 3)])
same("op a/b", lambda a, b: a / b, lambda: [rand(2, 3), pos(3)])
same("op 2.0*x", lambda x: 2.0 * x, lambda: [rand(2, 3)])
same("op x+3", lambda x: x + 3, lambda: [rand(2, 3)])
same("op 3-x", lambda x: 3 - x, lambda: [rand(2, 3)])
same("op x-1.5", lambda x: x - 1.5, lambda: [rand(2, 3)])
same("op x/4", lambda x: x / 4.0, lambda: [rand(2, 3)])
same("op 2/x", lambda x: 2.0 / x, lambda: [away(2, 3)])
same("op -x", lambda x: -x, lambda: [rand(2, 3)])
case("neg", F.neg, torch.neg, lambda: [rand(4)])
same("pow x**2", lambda x: x ** 2, lambda: [rand(2, 3)])
same("pow x**3.0", lambda x: x ** 3.0, lambda: [rand(2, 3)])
same("pow x**0.5", lambda x: x ** 0.5, lambda: [pos(2, 3)])
same("pow x**-1.5", lambda x: x ** -1.5, lambda: [pos(2, 3)])
same("pow 2.0**x", lambda x: 2.0 ** x, lambda: [rand(2, 3)])
case("pow(x,2.5)", lambda x: F.pow(x, 2.5), lambda x: torch.pow(x, 2.5), lambda: [pos(5)])
case("pow(3,x)", lambda x: F.pow(3.0, x), lambda x: torch.pow(3.0, x), lambda: [rand(5)])
case("pow(a,b)", F.pow, torch.pow, lambda: [pos(2, 3), rand(2, 3)])
case("pow(a,b) broadcast", F.pow, torch.pow, lambda: [pos(2, 1), rand(3)])
# zero bases: torch masks 0 * inf to 0 (dx where e = 0; de where x = 0 and e >= 0); inf and NaN elsewhere match
same("pow x**0.0 at 0", lambda x: x ** 0.0, lambda: [np.array([0.0, -1.5, 0.0, 2.0])])
same("pow x**2 at 0", lambda x: x ** 2, lambda: [np.array([0.0, -1.5, 0.0, 2.0])])
case("pow(0,x)", lambda x: F.pow(0.0, x), lambda x: torch.pow(0.0, x), lambda: [pos(5)])
case("pow(a,b) zero base", F.pow, torch.pow, lambda: [np.array([0.0, 0.0, 0.0, 0.0, 0.0, 2.0, -1.5]),
                                                      np.array([0.0, 2.0, 3.5, 0.5, -1.0, 0.0, 3.0])], smooth=False)
case("pow(a,b) zero base broadcast", F.pow, torch.pow,
     lambda: [np.array([[0.0], [1.5]]), np.array([0.0, 1.0, 2.5])], smooth=False)

MATMUL_SHAPES = [((4,), (4,)), ((3,), (3, 5)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((1, 1), (1, 1)),
                 ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)),
                 ((3, 4), (2, 4, 5))]
for _a, _b in MATMUL_SHAPES:
    case(f"matmul{_a}{_b}", F.matmul, torch.matmul, lambda a=_a, b=_b: [rand(a), rand(b)])
same("op a@b", lambda a, b: a @ b, lambda: [rand(2, 3), rand(3, 2)])

# ============================================================================ reductions

for _dim in [None, 0, -1, 1, (0, 2), (-1, 0)]:
    for _keep in [False, True]:
        _tag = f"dim={_dim},keepdim={_keep}"
        case(f"sum {_tag}", lambda x, d=_dim, k=_keep: F.sum(x, d, k),
             lambda x, d=_dim, k=_keep: torch.sum(x, dim=d, keepdim=k), lambda: [rand(2, 3, 4)])
        case(f"mean {_tag}", lambda x, d=_dim, k=_keep: F.mean(x, d, k),
             lambda x, d=_dim, k=_keep: torch.mean(x, dim=d, keepdim=k), lambda: [rand(2, 3, 4)])
        for _unbiased in [True, False]:
            case(f"var {_tag},unbiased={_unbiased}", lambda x, d=_dim, k=_keep, u=_unbiased: F.var(x, d, k, u),
                 lambda x, d=_dim, k=_keep, u=_unbiased: torch.var(x, dim=d, keepdim=k, correction=int(u)),
                 lambda: [rand(2, 3, 4)])
same("sum method", lambda x: x.sum(1), lambda: [rand(3, 4)])
same("sum 0-d", lambda x: x.sum(), lambda: [rand()])
same("mean size-1", lambda x: x.mean(0), lambda: [rand(1, 3)])
same("var method", lambda x: x.var(dim=1, keepdim=True), lambda: [rand(3, 4)])
same("std method", lambda x: x.std(dim=0), lambda: [rand(3, 4)])
same("std whole", lambda x: x.std(), lambda: [rand(5)])
case("std unbiased=False", lambda x: x.std(1, unbiased=False), lambda x: x.std(1, correction=0), lambda: [rand(2, 5)])

TIES = lambda: [np.array([[1.0, 3.0, 3.0], [0.0, 3.0, -1.0], [-1.0, 2.0, -1.0]])]  # noqa: E731
for _name, _ours, _theirs in [("max", F.max, torch.max), ("min", F.min, torch.min)]:
    case(f"{_name} whole", _ours, _theirs, lambda: [rand(3, 4)])
    case(f"{_name} whole ties", _ours, _theirs, TIES, smooth=False)  # gradient shared by the ties
    for _dim in [0, 1, -1]:
        for _keep in [False, True]:
            case(f"{_name} dim={_dim},keepdim={_keep}", lambda x, f=_ours, d=_dim, k=_keep: f(x, d, k),
                 lambda x, f=_theirs, d=_dim, k=_keep: f(x, d, k), lambda: [rand(3, 4)])
    case(f"{_name} dim ties", lambda x, f=_ours: f(x, 1), lambda x, f=_theirs: f(x, 1), TIES, smooth=False)
same("max method dim", lambda x: x.max(dim=1), lambda: [rand(2, 5)])
same("min method keepdim", lambda x: x.min(0, keepdim=True), lambda: [rand(2, 5)])
same("max().values pipeline", lambda x: x.max(1).values * x.min(1)[0], lambda: [rand(3, 4)])
# integer outputs: nothing to differentiate, so parity only
case("argmax", F.argmax, torch.argmax, lambda: [rand(3, 4)], smooth=False)
case("argmax dim", lambda x: F.argmax(x, 1), lambda x: torch.argmax(x, 1), lambda: [rand(3, 4)], smooth=False)
case("argmin dim keepdim", lambda x: F.argmin(x, 0, True), lambda x: torch.argmin(x, 0, True), lambda: [rand(3, 4)],
     smooth=False)
case("argmax dim -1", lambda x: F.argmax(x, -1), lambda x: torch.argmax(x, -1), lambda: [rand(2, 3, 4)], smooth=False)
case("argmax 0-d dim 0", lambda x: F.argmax(x, 0), lambda x: torch.argmax(x, 0), lambda: [rand()], smooth=False)
case("argmin 0-d dim -1 keepdim", lambda x: F.argmin(x, -1, True), lambda x: torch.argmin(x, -1, True),
     lambda: [rand()], smooth=False)

# ============================================================================ elementwise

case("exp", F.exp, torch.exp, lambda: [rand(2, 3)])
case("log", F.log, torch.log, lambda: [pos(2, 3)])
case("sqrt", F.sqrt, torch.sqrt, lambda: [pos(2, 3)])
case("abs", F.abs, torch.abs, lambda: [away(2, 3)])
case("clamp min", lambda x: F.clamp(x, min=-0.3), lambda x: torch.clamp(x, min=-0.3), lambda: [rand(4, 5)])
case("clamp max", lambda x: F.clamp(x, max=0.2), lambda x: torch.clamp(x, max=0.2), lambda: [rand(4, 5)])
case("clamp both", lambda x: F.clamp(x, -0.5, 0.5), lambda x: torch.clamp(x, -0.5, 0.5), lambda: [rand(4, 5)])
same("clamp method", lambda x: x.clamp(min=0.1), lambda: [rand(4, 5)])
case("tanh", F.tanh, torch.tanh, lambda: [rand(2, 3) * 3])
case("sigmoid", F.sigmoid, torch.sigmoid, lambda: [rand(2, 3) * 3])
case("sigmoid large", F.sigmoid, torch.sigmoid, lambda: [rand(2, 3) * 40])
case("relu", F.relu, torch.relu, lambda: [away(2, 3, 4)])
case("leaky_relu", F.leaky_relu, TF.leaky_relu, lambda: [away(2, 3, 4)])
case("leaky_relu 0.2", lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2), lambda: [away(2, 3)])
case("gelu", F.gelu, TF.gelu, lambda: [rand(2, 3, 4) * 3])
case("gelu tanh", lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh"),
     lambda: [rand(2, 3, 4) * 3])
case("silu", F.silu, TF.silu, lambda: [rand(2, 3, 4) * 3])
same("methods exp log sqrt abs tanh sigmoid relu",
     lambda x: x.exp() + x.log() + x.sqrt() + x.abs() + x.tanh() + x.sigmoid() + x.relu(), lambda: [pos(3)])

# ============================================================================ softmax family

for _dim in [0, 1, -1, 2]:
    case(f"softmax dim={_dim}", lambda x, d=_dim: F.softmax(x, d), lambda x, d=_dim: torch.softmax(x, d),
         lambda: [rand(2, 3, 4)])
    case(f"log_softmax dim={_dim}", lambda x, d=_dim: F.log_softmax(x, d),
         lambda x, d=_dim: torch.log_softmax(x, d), lambda: [rand(2, 3, 4)])
case("softmax 1-D large", lambda x: F.softmax(x, 0), lambda x: torch.softmax(x, 0), lambda: [rand(5) * 100],
     smooth=False)
same("softmax method", lambda x: x.softmax(0), lambda: [rand(3, 2)])
same("log_softmax method", lambda x: x.log_softmax(-1), lambda: [rand(3, 2)])
case("softmax default dim -1", F.softmax, lambda x: torch.softmax(x, -1), lambda: [rand(3, 2)])

# ============================================================================ shape

same("reshape -1", lambda x: x.reshape(4, -1), lambda: [rand(2, 3, 4)])
same("reshape tuple", lambda x: x.reshape((3, 8)), lambda: [rand(2, 3, 4)])
case("reshape F", lambda x: F.reshape(x, (-1, 2)), lambda x: torch.reshape(x, (-1, 2)), lambda: [rand(2, 3, 4)])
same("view -1", lambda x: x.view(-1), lambda: [rand(2, 3, 4)])
same("view to 0-d and back", lambda x: x.view(()).view(1, 1), lambda: [rand(1)])
same("transpose", lambda x: x.transpose(0, 2), lambda: [rand(2, 3, 4)])
same("transpose negative", lambda x: x.transpose(-1, -2), lambda: [rand(2, 3, 4)])
case("transpose F", lambda x: F.transpose(x, 1, 0), lambda x: torch.transpose(x, 1, 0), lambda: [rand(2, 3)])
same("permute", lambda x: x.permute(2, 0, 1), lambda: [rand(2, 3, 4)])
same("permute tuple negative", lambda x: x.permute((-1, 0, 1)), lambda: [rand(2, 3, 4)])
same(".T", lambda x: x.T, lambda: [rand(2, 3)])
same("expand", lambda x: x.expand(2, 3, 4), lambda: [rand(3, 1)])
same("expand -1", lambda x: x.expand(-1, 5), lambda: [rand(3, 1)])
case("expand F", lambda x: F.expand(x, (2, 1, 3)), lambda x: x.expand(2, 1, 3), lambda: [rand(3)])
for _d in [0, 1, -1, -3]:
    same(f"unsqueeze {_d}", lambda x, d=_d: x.unsqueeze(d), lambda: [rand(2, 3)])
same("squeeze all", lambda x: x.squeeze(), lambda: [rand(1, 3, 1, 2)])
same("squeeze 0", lambda x: x.squeeze(0), lambda: [rand(1, 3, 1, 2)])
same("squeeze -2", lambda x: x.squeeze(-2), lambda: [rand(1, 3, 1, 2)])
same("squeeze non-1 dim is a no-op", lambda x: x.squeeze(1) * 1.0, lambda: [rand(1, 3, 1, 2)])
for _args in [(), (1,), (0, 1), (-2,), (1, -2)]:
    same(f"flatten{_args}", lambda x, a=_args: x.flatten(*a), lambda: [rand(2, 3, 4, 2)])
same("flatten 0-d", lambda x: x.flatten(), lambda: [rand()])

# ============================================================================ indexing

_X = lambda: [rand(4, 5, 6)]  # noqa: E731
same("index slice", lambda x: x[1:3], _X)
same("index slices and steps", lambda x: x[::2, 1:4, 1::3], _X)
same("index int", lambda x: x[1], _X)
same("index negative ints", lambda x: x[-1, 2], _X)
same("index to 0-d", lambda x: x[1, 2, 3], _X)
same("index Ellipsis", lambda x: x[..., 1], _X)
same("index Ellipsis step", lambda x: x[..., ::2], _X)
same("index None", lambda x: x[None, 1:3], _X)
same("index Nones", lambda x: x[:, None, :, None], _X)
same("index int Ellipsis None", lambda x: x[1, ..., None], _X)
# PyTorch has no negative steps: compare with flip
case("index [::-1]", lambda x: x[::-1], lambda x: torch.flip(x, [0]), _X)
case("index [:, ::-2]", lambda x: x[:, ::-2], lambda x: torch.flip(x, [1])[:, ::2], _X)
case("index [3:0:-1]", lambda x: x[3:0:-1], lambda x: torch.flip(x[1:4], [0]), _X)
# integer arrays: repeated indices scatter-add their gradients
same("index int array repeated", lambda x, i: x[i], lambda: [rand(4, 5, 6), ints(0, 2, 2, 0, 3)])
same("index int array negative", lambda x, i: x[i], lambda: [rand(4, 5, 6), ints(-1, 0, -1)])
same("index int array dim 1", lambda x, i: x[:, i], lambda: [rand(4, 5, 6), ints(1, 1, 4)])
same("index two int arrays", lambda x, i, j: x[i, j], lambda: [rand(4, 5, 6), ints(0, 1, 1), ints(2, 2, 2)])
same("index 2-D int array", lambda x, i: x[i], lambda: [rand(4, 5), np.array([[0, 1, 1], [3, 3, 3]])])
same("index slice and int array", lambda x, i: x[1:3, i], lambda: [rand(4, 5, 6), ints(4, 4, 0)])
same("index list", lambda x: x[[0, 0, 2]], _X)
same("index bool mask full", lambda x, m: x[m], lambda: [rand(4, 5, 6), rand(4, 5, 6) > 0])
same("index bool mask dim 0", lambda x, m: x[m], lambda: [rand(4, 5, 6), np.array([True, False, True, True])])
same("index bool mask dim 1", lambda x, m: x[:, m], lambda: [rand(4, 5, 6), np.array([True, False, True, False, True])])

# ============================================================================ joining and splitting

case("cat dim 0", lambda a, b: F.cat([a, b]), lambda a, b: torch.cat([a, b]), lambda: [rand(2, 3), rand(4, 3)])
case("cat dim -1 three", lambda a, b, c: F.cat([a, b, c], dim=-1), lambda a, b, c: torch.cat([a, b, c], dim=-1),
     lambda: [rand(2, 3), rand(2, 1), rand(2, 2)])
case("cat one", lambda a: sz.cat([a], 1), lambda a: torch.cat([a], 1), lambda: [rand(2, 3)])
for _d in [0, 1, -1, 2]:
    case(f"stack dim={_d}", lambda a, b, d=_d: F.stack([a, b], d), lambda a, b, d=_d: torch.stack([a, b], d),
         lambda: [rand(2, 3), rand(2, 3)])
case("split int uneven", lambda x: F.split(x, 3), lambda x: torch.split(x, 3), lambda: [rand(7, 3)])
case("split list", lambda x: F.split(x, [1, 4, 2]), lambda x: torch.split(x, [1, 4, 2]), lambda: [rand(7, 3)])
case("split dim 1", lambda x: F.split(x, 2, dim=1), lambda x: torch.split(x, 2, dim=1), lambda: [rand(2, 5)])
same("split method dim -1", lambda x: x.split([2, 3], -1), lambda: [rand(2, 5)])
case("chunk 3 of 7", lambda x: F.chunk(x, 3), lambda x: torch.chunk(x, 3), lambda: [rand(7, 2)])
case("chunk 4 of 6", lambda x: F.chunk(x, 4, dim=-1), lambda x: torch.chunk(x, 4, dim=-1), lambda: [rand(2, 6)])
same("chunk method", lambda x: x.chunk(2, 1), lambda: [rand(2, 4)])
case("where", F.where, torch.where, lambda: [rand(3, 1) > 0, rand(3, 4), rand(4)])
case("where scalar", lambda c, a: F.where(c, a, 0.0), lambda c, a: torch.where(c, a, 0.0),
     lambda: [rand(3, 4) > 0, rand(3, 4)])
case("masked_fill", lambda x, m: F.masked_fill(x, m, -2.5), lambda x, m: x.masked_fill(m, -2.5),
     lambda: [rand(4, 5), rand(1, 5) > 0])
same("masked_fill method", lambda x, m: x.masked_fill(m, 0.0), lambda: [rand(4, 5), rand(4, 5) > 0])
case("embedding", F.embedding, TF.embedding, lambda: [np.array([[0, 2, 2], [5, 1, 2]]), rand(6, 3)])
case("embedding padding_idx", lambda i, w: F.embedding(i, w, padding_idx=2),  # the padding row gets no
     lambda i, w: TF.embedding(i, w, padding_idx=2), lambda: [np.array([[0, 2, 2], [5, 1, 2]]), rand(6, 3)],
     smooth=False)  # gradient by design, though it is used: a finite difference would disagree

# ============================================================================ layers' ops

case("linear", F.linear, TF.linear, lambda: [rand(2, 5, 4), rand(3, 4), rand(3)])
case("linear no bias", F.linear, TF.linear, lambda: [rand(2, 4), rand(3, 4)])
case("linear 1-D", F.linear, TF.linear, lambda: [rand(4), rand(1, 4), rand(1)])
case("layer_norm", lambda x, w, b: F.layer_norm(x, (4,), w, b), lambda x, w, b: TF.layer_norm(x, (4,), w, b),
     lambda: [rand(2, 3, 4) * 2 + 1, rand(4), rand(4)])
case("layer_norm 2 dims", lambda x, w, b: F.layer_norm(x, (3, 4), w, b, eps=1e-3),
     lambda x, w, b: TF.layer_norm(x, (3, 4), w, b, eps=1e-3), lambda: [rand(2, 3, 4), rand(3, 4), rand(3, 4)])
case("layer_norm no affine", lambda x: F.layer_norm(x, (5,)), lambda x: TF.layer_norm(x, (5,)),
     lambda: [rand(3, 5)])
case("dropout p=0", lambda x: F.dropout(x, 0.0), lambda x: TF.dropout(x, 0.0), lambda: [rand(3, 4)])
case("dropout eval", lambda x: F.dropout(x, 0.5, training=False), lambda x: TF.dropout(x, 0.5, training=False),
     lambda: [rand(3, 4)])


# ============================================================================ the tests


def _params(smooth_only: bool = False) -> list[Any]:
    return [pytest.param(c, id=c.id) for c in CASES if c.smooth or not smooth_only]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("c", _params())
def test_matches_torch(c: Case, dtype: Any) -> None:
    assert_matches_torch(c.ours, c.theirs, c.make(), dtype=dtype)


@pytest.mark.parametrize("c", _params(smooth_only=True))
def test_gradcheck(c: Case) -> None:
    gradcheck(c.ours, c.make())


# ---- random broadcastable shapes ------------------------------------------------------------

BINARY = {"add": (F.add, torch.add), "sub": (F.sub, torch.sub), "mul": (F.mul, torch.mul),
          "div": (F.div, torch.div), "pow": (F.pow, torch.pow)}


def _binary_inputs(op: str, shapes: tuple[tuple[int, ...], ...], seed: int) -> list[np.ndarray]:
    a, b = rand(shapes[0], seed=seed), rand(shapes[1], seed=seed + 1)
    if op == "div":
        b = np.sign(b) * (np.abs(b) + 0.5)
    if op == "pow":
        a = np.abs(a) + 0.5
    return [a, b]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
       op=st.sampled_from(sorted(BINARY)), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 10_000))
def test_binary_ops_random_broadcast_match_torch(shapes: Any, op: str, dtype: Any, seed: int) -> None:
    assert_matches_torch(*BINARY[op], _binary_inputs(op, shapes.input_shapes, seed), dtype=dtype)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       op=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 10_000))
def test_binary_ops_random_broadcast_gradcheck(shapes: Any, op: str, seed: int) -> None:
    gradcheck(BINARY[op][0], _binary_inputs(op, shapes.input_shapes, seed))


@settings(max_examples=15, deadline=None, derandomize=True)
@given(batch=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3),
       n=st.integers(1, 3), k=st.integers(1, 3), m=st.integers(1, 3), dtype=st.sampled_from(DTYPES))
def test_matmul_random_batch_broadcast(batch: Any, n: int, k: int, m: int, dtype: Any) -> None:
    a_batch, b_batch = batch.input_shapes
    assert_matches_torch(F.matmul, torch.matmul, [rand(a_batch + (n, k)), rand(b_batch + (k, m))], dtype=dtype)


def test_pow_exponent_gradcheck_at_zero_base() -> None:
    """0^e = 0 for every e > 0: the exponent's gradient there is 0 (not 0 * log 0 = NaN)."""
    gradcheck(F.pow, [np.array([0.0, 0.0, 1.5]), np.array([0.5, 2.0, 1.0])], requires_grad=[False, True])
    gradcheck(lambda x: x ** 0.0, [np.array([0.0, -2.0, 3.0])])


# ---- dropout (random: statistics instead of parity) ------------------------------------------


def test_dropout_p0_and_eval_are_the_identity() -> None:
    x = sz.tensor(rand(3, 4), requires_grad=True)
    for y in (F.dropout(x, 0.0), F.dropout(x, 0.7, training=False)):
        np.testing.assert_array_equal(y.data, x.data)
    F.dropout(x, 0.7, training=False).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((3, 4), np.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_train_mask_statistics_and_gradient(p: float, dtype: Any) -> None:
    sz.manual_seed(0)
    x = sz.tensor(np.ones((200, 300), dtype=dtype), requires_grad=True)
    y = F.dropout(x, p)
    assert y.dtype == dtype
    kept = y.data != 0
    np.testing.assert_allclose(y.data[kept], 1.0 / (1.0 - p), rtol=1e-6)  # survivors scaled by 1/(1-p)
    assert abs(1.0 - kept.mean() - p) < 0.01  # about p of the entries dropped (60000 draws: sd < 0.002)
    assert abs(y.data.mean() - 1.0) < 0.03  # so the expectation is kept
    upstream = rand(200, 300).astype(dtype)
    y.backward(upstream)
    np.testing.assert_allclose(x.grad, upstream * kept / (1.0 - p), rtol=1e-6)  # dx = dy * mask / (1 - p)
    assert x.grad.dtype == dtype


def test_dropout_reproducible_with_manual_seed_and_edge_probabilities() -> None:
    x = sz.ones(5, 6)
    sz.manual_seed(3)
    first = F.dropout(x, 0.5).data
    sz.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.5).data, first)
    np.testing.assert_array_equal(F.dropout(x, 1.0).data, np.zeros((5, 6), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\].*1.5"):
        F.dropout(x, 1.5)


def test_var_of_too_few_elements_is_nan_as_in_torch() -> None:
    x = sz.tensor(rand(2, 1), requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = x.var(1)
        v.sum().backward()
    assert np.isnan(v.data).all() and np.isnan(x.grad).all()
    t = torch.tensor(rand(2, 1), requires_grad=True)
    with pytest.warns(UserWarning):
        t.var(1).sum().backward()
    assert torch.isnan(t.grad).all()


# ---- int tensors pass through shape ops without a graph ---------------------------------------


def test_int_tensors_through_shape_ops() -> None:
    ids = sz.tensor([[1, 2, 3], [4, 5, 6]])
    assert ids.dtype == np.int64
    out = F.cat([ids.reshape(3, 2).T, ids[:, ::-1]], 0).sum()
    assert out.item() == 42 and not out.requires_grad


# ---- clear errors ----------------------------------------------------------------------------

T = lambda *shape: sz.tensor(rand(*shape))  # noqa: E731
ERRORS = [
    ("add shapes", lambda: F.add(T(2, 3), T(4)), ShapeError, ["(2, 3)", "(4,)"]),
    ("mul shapes", lambda: T(2, 3) * T(3, 2), ShapeError, ["(2, 3)", "(3, 2)"]),
    ("matmul inner", lambda: F.matmul(T(2, 3), T(4, 5)), ShapeError, ["(2, 3)", "(4, 5)", "3 != 4"]),
    ("matmul 0-d", lambda: F.matmul(T(), T(3)), ShapeError, ["at least 1 dim"]),
    ("matmul dtypes", lambda: F.matmul(T(2, 3), T(3).float()), DTypeError, ["float32", "float64"]),
    ("reshape", lambda: T(2, 3).reshape(4, -1), ShapeError, ["(2, 3)", "(4, -1)"]),
    ("reshape two -1", lambda: T(2, 3).reshape(-1, -1), ShapeError, ["(-1, -1)"]),
    ("permute", lambda: T(2, 3).permute(0, 0), ShapeError, ["(0, 0)", "(2, 3)"]),
    ("expand", lambda: T(2, 3).expand(4, 3), ShapeError, ["(2, 3)", "(4, 3)"]),
    ("expand fewer dims", lambda: T(2, 3).expand(3), ShapeError, ["fewer"]),
    ("expand -1 in a new dim", lambda: T(3).expand(-1, 3), ShapeError, ["-1", "(-1, 3)"]),
    ("unsqueeze range", lambda: T(2, 3).unsqueeze(4), IndexError, ["dim 4", "2 dims"]),
    ("cat shapes", lambda: F.cat([T(2, 3), T(2, 4)]), ShapeError, ["(2, 3)", "(2, 4)"]),
    ("cat dtypes", lambda: F.cat([T(2, 3).float(), T(2, 3)]), DTypeError, ["float32", "float64"]),
    ("cat empty", lambda: F.cat([]), ValueError, ["at least one"]),
    ("stack shapes", lambda: F.stack([T(2, 3), T(3, 2)]), ShapeError, ["(2, 3)", "(3, 2)"]),
    ("split sizes", lambda: F.split(T(5, 2), [2, 2]), ShapeError, ["[2, 2]", "5"]),
    ("dim out of range", lambda: T(2, 3).sum(2), IndexError, ["dim 2"]),
    ("argmax dim", lambda: F.argmax(T(2, 3), 2), IndexError, ["argmax", "dim 2", "2 dims"]),
    ("argmax negative dim", lambda: T(2, 3).argmax(-3), IndexError, ["argmax", "dim -3", "2 dims"]),
    ("argmin dim", lambda: T(4).argmin(1, keepdim=True), IndexError, ["argmin", "dim 1", "1 dims"]),
    ("argmin 0-d dim", lambda: F.argmin(T(), 1), IndexError, ["argmin", "dim 1", "0 dims"]),
    ("argmax tuple dim", lambda: F.argmax(T(2, 3), (0, 1)), TypeError, ["argmax", "(0, 1)"]),
    ("index out of range", lambda: T(2, 3)[5], IndexError, ["(2, 3)"]),
    ("where shapes", lambda: F.where(np.ones(2, bool), T(2), T(3)), ShapeError, ["(2,)", "(3,)"]),
    ("masked_fill shapes", lambda: F.masked_fill(T(2, 3), np.ones(4, bool), 0.0), ShapeError, ["(4,)", "(2, 3)"]),
    ("masked_fill grows", lambda: F.masked_fill(T(1, 3), np.ones((2, 3), bool), 0.0), ShapeError, ["(2, 3)", "(1, 3)"]),
    ("embedding range", lambda: F.embedding(np.array([0, 6]), T(6, 2)), IndexError, ["[0, 6)", "6"]),
    ("embedding float ids", lambda: F.embedding(np.array([0.0]), T(6, 2)), DTypeError, ["integers"]),
    ("layer_norm shape", lambda: F.layer_norm(T(2, 3), (4,)), ShapeError, ["(4,)", "(2, 3)"]),
    ("clamp nothing", lambda: F.clamp(T(2)), ValueError, ["min", "max"]),
    ("gelu approximate", lambda: F.gelu(T(2), approximate="fast"), ValueError, ["'fast'"]),
    ("exp of ints", lambda: F.exp(sz.tensor([1, 2])), DTypeError, ["int64"]),
    ("mean of ints", lambda: F.mean(sz.tensor([1, 2])), DTypeError, ["int64"]),
    ("int requires grad", lambda: sz.tensor([1, 2], requires_grad=True), DTypeError, ["int64"]),
]


@pytest.mark.parametrize("make, error, fragments", [pytest.param(*e[1:], id=e[0]) for e in ERRORS])
def test_clear_errors(make: Callable[[], Any], error: type, fragments: list[str]) -> None:
    with pytest.raises(error) as info:
        make()
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in the message {str(info.value)!r}"


# ---- dropout ops against finite differences (the seed fixes the mask, so every evaluation sees the same one)


@pytest.mark.parametrize("drop, shape", [(lambda x: F.dropout(x, 0.4), (3, 5)),
                                         (lambda x: F.dropout2d(x, 0.4), (3, 4, 2, 3))], ids=["dropout", "dropout2d"])
def test_dropout_gradcheck_with_the_mask_fixed_by_the_seed(drop: Callable[[Any], Any], shape: tuple) -> None:
    def fn(x: Any) -> Any:
        sz.manual_seed(7)  # the same mask on every call
        return drop(x)
    dropped = fn(sz.tensor(np.ones(shape))).data == 0
    assert dropped.any() and not dropped.all()  # the mask both keeps and drops: the check is not trivial
    gradcheck(fn, [rand(*shape)])
