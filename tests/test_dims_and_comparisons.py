"""Dims are checked, never wrapped; comparisons are elementwise; arange's dtype; the helpers ops share.

Each bad dim must raise where torch raises, with a message naming the op, the dim and the number of dims
(NumPy's modulo would silently turn x.permute(0, 3) on a 2-D tensor into the identity).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo import functional as F, nn, optim
from scratchzoo.autograd import ShapeError
from scratchzoo.functional import arithmetic, routing
from scratchzoo.functional.elementwise import stable_sigmoid
from scratchzoo.functional.layers import dropout_mask

from helpers import rand


def T(*shape: int) -> sz.Tensor:
    return sz.zeros(*shape)


BAD_DIMS: list[tuple[str, Callable[[], Any], Callable[[], Any], str]] = [
    # (id, ours, torch's, the fragment naming the op, dim and ndim)
    ("permute", lambda: T(2, 3).permute(0, 3), lambda: torch.zeros(2, 3).permute(0, 3),
     r"permute: dim 3 out of range for a tensor with 2 dims \(expected a dim in \[-2, 1\]\)"),
    ("permute negative", lambda: T(2, 3).permute(-3, 0), lambda: torch.zeros(2, 3).permute(-3, 0),
     r"permute: dim -3 out of range for a tensor with 2 dims"),
    ("flatten start", lambda: T(2, 3).flatten(2), lambda: torch.zeros(2, 3).flatten(2),
     r"flatten: dim 2 out of range for a tensor with 2 dims"),
    ("flatten end", lambda: F.flatten(T(2, 3, 4), 0, -4), lambda: torch.zeros(2, 3, 4).flatten(0, -4),
     r"flatten: dim -4 out of range for a tensor with 3 dims"),
    ("stack", lambda: F.stack([T(2, 3), T(2, 3)], 3), lambda: torch.stack([torch.zeros(2, 3)] * 2, 3),
     r"stack: dim 3 out of range for a tensor with 2 dims \(expected a dim in \[-3, 2\]\)"),
    ("stack negative", lambda: F.stack([T(2), T(2)], -3), lambda: torch.stack([torch.zeros(2)] * 2, -3),
     r"stack: dim -3 out of range for a tensor with 1 dims"),
    ("transpose", lambda: T(2, 3).transpose(0, 2), lambda: torch.zeros(2, 3).transpose(0, 2),
     r"transpose: dim 2 out of range for a tensor with 2 dims"),
    ("unsqueeze", lambda: T(2, 3).unsqueeze(4), lambda: torch.zeros(2, 3).unsqueeze(4),
     r"unsqueeze: dim 4 out of range for a tensor with 2 dims"),
    ("squeeze", lambda: T(2, 1).squeeze(2), lambda: torch.zeros(2, 1).squeeze(2),
     r"squeeze: dim 2 out of range for a tensor with 2 dims"),
    ("cat", lambda: F.cat([T(2, 3), T(2, 3)], 2), lambda: torch.cat([torch.zeros(2, 3)] * 2, 2),
     r"cat: dim 2 out of range for a tensor with 2 dims"),
    ("split", lambda: T(2, 3).split(1, dim=-3), lambda: torch.zeros(2, 3).split(1, dim=-3),
     r"split: dim -3 out of range for a tensor with 2 dims"),
    ("chunk", lambda: T(2, 3).chunk(2, dim=2), lambda: torch.zeros(2, 3).chunk(2, dim=2),
     r"chunk: dim 2 out of range for a tensor with 2 dims"),
    ("softmax", lambda: F.softmax(T(2, 3), 2), lambda: torch.zeros(2, 3).softmax(2),
     r"softmax: dim 2 out of range for a tensor with 2 dims"),
    ("log_softmax", lambda: F.log_softmax(T(2, 3), -3), lambda: torch.zeros(2, 3).log_softmax(-3),
     r"log_softmax: dim -3 out of range for a tensor with 2 dims"),
    ("topk", lambda: routing.topk(T(2, 3), 1, dim=2), lambda: torch.zeros(2, 3).topk(1, dim=2),
     r"topk: dim 2 out of range for a tensor with 2 dims"),
]


@pytest.mark.parametrize("ours, theirs, message", [pytest.param(*c[1:], id=c[0]) for c in BAD_DIMS])
def test_a_bad_dim_raises_where_torch_raises(ours: Callable[[], Any], theirs: Callable[[], Any],
                                             message: str) -> None:
    with pytest.raises(IndexError):
        theirs()
    with pytest.raises(IndexError, match=message):
        ours()


@pytest.mark.parametrize("make", [lambda m: m.zeros(2, 3).permute(-1, 0), lambda m: m.zeros(2, 3, 4).flatten(-2, -1),
                                  lambda m: m.stack([m.zeros(2, 3)] * 4, -1), lambda m: m.zeros(2, 3).transpose(-1, 0),
                                  lambda m: m.zeros(2, 3).unsqueeze(-3), lambda m: m.zeros(2, 1).squeeze(-1)],
                         ids=["permute", "flatten", "stack", "transpose", "unsqueeze", "squeeze"])
def test_negative_dims_in_range_count_from_the_end_as_in_torch(make: Callable[[Any], Any]) -> None:
    assert make(sz).shape == tuple(make(torch).shape)


def test_permute_must_name_every_dim_once() -> None:
    with pytest.raises(ShapeError, match=r"permute: expected an order of all 3 dims of shape \(2, 3, 4\), each "
                                         r"once, got \(0, 0, 1\)"):
        T(2, 3, 4).permute(0, 0, 1)
    with pytest.raises(ShapeError, match=r"got \(1, 0\)"):
        T(2, 3, 4).permute(1, 0)


def test_flatten_start_after_end_is_an_error_as_in_torch() -> None:
    with pytest.raises(RuntimeError):
        torch.zeros(2, 3, 4).flatten(2, 1)
    with pytest.raises(ValueError, match="flatten: start_dim 2 comes after end_dim 1 for a tensor with 3 dims"):
        T(2, 3, 4).flatten(2, 1)


def test_zero_dim_tensors_take_dims_0_and_minus_1_as_in_torch() -> None:
    x, t = sz.tensor(2.0), torch.tensor(2.0)
    assert x.flatten().shape == tuple(t.flatten().shape) == (1,)
    assert x.unsqueeze(-1).shape == tuple(t.unsqueeze(-1).shape) == (1,)
    assert x.squeeze(0).shape == tuple(t.squeeze(0).shape) == ()
    assert x.transpose(0, -1).shape == tuple(t.transpose(0, -1).shape) == ()
    with pytest.raises(IndexError, match=r"squeeze: dim 1 out of range for a tensor with 0 dims"):
        x.squeeze(1)


def test_stack_of_nothing_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError):
        torch.stack([])
    with pytest.raises(ValueError, match="stack: needs at least one tensor, got an empty sequence"):
        F.stack([])


def test_split_and_chunk_need_positive_sizes() -> None:
    with pytest.raises(ValueError, match="split: split_size must be a positive int, got 0"):
        T(4).split(0)
    with pytest.raises(ValueError, match="chunk: chunks must be a positive int, got 0"):
        T(4).chunk(0)


def test_where_condition_must_broadcast_with_the_values() -> None:
    with pytest.raises(RuntimeError):
        torch.where(torch.ones(3, dtype=torch.bool), torch.zeros(2, 1), torch.zeros(2, 2))
    with pytest.raises(ShapeError, match=r"where: condition of shape \(3,\) does not broadcast with the values' "
                                         r"shapes \(2, 1\) and \(2, 2\)"):
        F.where(np.ones(3, dtype=bool), T(2, 1), T(2, 2))
    # a condition that broadcasts (also to a larger shape) still works, as in torch
    assert F.where(np.ones((3, 2, 1), dtype=bool), T(2, 1), T(1, 2)).shape == (3, 2, 2)


# ============================================================================ comparisons, truth, arange


def test_eq_and_ne_are_elementwise_bool_tensors_as_in_torch() -> None:
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0])
    for ours, theirs in ((sz.tensor(a) == sz.tensor(b), torch.tensor(a) == torch.tensor(b)),
                         (sz.tensor(a) != sz.tensor(b), torch.tensor(a) != torch.tensor(b)),
                         (sz.tensor(a) == 2.0, torch.tensor(a) == 2.0),
                         (b == sz.tensor(a), torch.tensor(b) == torch.tensor(a)),  # ndarray on the left
                         (sz.tensor(a) == b, torch.tensor(a) == torch.tensor(b))):
        assert isinstance(ours, sz.Tensor) and ours.dtype == np.bool_ and not ours.requires_grad
        assert ours.tolist() == theirs.tolist()


def test_accuracy_from_eq_counts_the_matches() -> None:
    pred, y = sz.tensor([0, 1, 2, 2]), sz.tensor([0, 1, 1, 2])
    assert (pred == y).float().mean().item() == pytest.approx(0.75)  # identity equality would give 0
    assert (pred == y).long().sum().item() == 3


def test_eq_with_a_tensor_that_requires_grad_stays_outside_the_graph() -> None:
    x = sz.tensor([1.0, 2.0], requires_grad=True)
    same = x == x
    assert same.tolist() == [True, True] and not same.requires_grad and same._ctx is None


def test_eq_with_non_numbers_is_false_not_an_error() -> None:
    x = sz.tensor([1.0, 2.0])
    assert (x == None) is False and (x != None) is True  # noqa: E711 (the operator is what is tested)
    assert (x == "a") is False


def test_eq_of_shapes_that_do_not_broadcast_is_a_clear_error() -> None:
    with pytest.raises(ShapeError, match=r"equal: shapes \(3,\) and \(2,\) do not broadcast"):
        sz.zeros(3) == sz.zeros(2)


def test_truth_of_a_tensor_as_in_torch() -> None:
    assert bool(sz.tensor(2.0)) and not bool(sz.tensor([0.0]))
    assert (sz.tensor([1, 2]) == sz.tensor([1, 2])).all() and not (sz.tensor([1, 2]) == sz.tensor([1, 3])).all()
    assert (sz.tensor([1, 2]) == sz.tensor([1, 3])).any()
    with pytest.raises(RuntimeError):
        bool(torch.tensor([1, 2]) == torch.tensor([1, 2]))
    with pytest.raises(RuntimeError, match=r"truth value of a tensor with 2 elements .* ambiguous; use .all\(\)"):
        bool(sz.tensor([1, 2]) == sz.tensor([1, 2]))


def test_tensors_hash_by_identity_as_in_torch() -> None:
    a, b = sz.tensor([1.0]), sz.tensor([1.0])
    assert hash(a) != hash(b) or a is b
    assert len({a, b}) == 2 and {a: 1, b: 2}[a] == 1
    assert a in {a} and b not in {a}


def test_optimizer_tells_equal_valued_parameters_apart() -> None:
    """Two parameters with equal values are still two parameters (the optimizer compares by identity)."""
    p, q = nn.Parameter(np.zeros(2, dtype=np.float32)), nn.Parameter(np.zeros(2, dtype=np.float32))
    opt = optim.SGD([p, q], lr=0.1)
    p.grad, q.grad = np.ones(2, dtype=np.float32), -np.ones(2, dtype=np.float32)
    opt.step()
    np.testing.assert_allclose(p.data, [-0.1, -0.1])
    np.testing.assert_allclose(q.data, [0.1, 0.1])
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [p]})  # the same object again is rejected; an equal-valued one is not
    opt.add_param_group({"params": [nn.Parameter(np.zeros(2, dtype=np.float32))]})


@pytest.mark.parametrize("args", [(5,), (0, 5), (1, 7, 2), (0.0, 5.0), (0, 1, 0.25), (5.0,), (-2, 2.5)])
def test_arange_dtype_follows_torch(args: tuple) -> None:
    ours, theirs = sz.arange(*args), torch.arange(*args)
    assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
    np.testing.assert_allclose(ours.data, theirs.numpy())


def test_arange_keeps_an_explicit_dtype() -> None:
    assert sz.arange(0.0, 3.0, dtype=np.float64).dtype == np.float64
    assert sz.arange(3, dtype=np.float32).dtype == np.float32


# ============================================================================ the helpers ops share


def test_topk_returns_the_same_values_indices_type_as_max() -> None:
    assert routing.ValuesIndices is arithmetic.ValuesIndices
    assert type(routing.topk(sz.tensor(rand(2, 3)), 1)) is type(sz.tensor(rand(2, 3)).max(1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_sigmoid_is_the_logistic_without_overflow(dtype: Any) -> None:
    x = np.array([-1000.0, -90.0, -3.0, 0.0, 2.5, 90.0, 1000.0], dtype=dtype)
    with np.errstate(all="raise"):  # no overflow warning anywhere
        y = stable_sigmoid(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, torch.sigmoid(torch.from_numpy(x)).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(F.sigmoid(sz.tensor(x)).data, y)  # the op is the helper


def test_dropout_mask_is_scaled_bernoulli_and_seeded() -> None:
    sz.manual_seed(3)
    mask = dropout_mask((200, 300), 0.25, np.dtype(np.float32))
    assert mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
    assert abs((mask == 0).mean() - 0.25) < 0.01 and abs(mask.mean() - 1.0) < 0.02  # E[mask] = 1
    sz.manual_seed(3)
    np.testing.assert_array_equal(dropout_mask((200, 300), 0.25, np.dtype(np.float32)), mask)
    sz.manual_seed(3)
    x = sz.ones(200, 300)
    np.testing.assert_array_equal(F.dropout(x, 0.25).data, mask)  # the op draws exactly this mask
