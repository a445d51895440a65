"""The routing ops of functional/routing.py (used by models/moe.py): softplus and topk, against PyTorch and
finite differences."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_matches_torch, gradcheck, rand

import scratchzoo as sz
from scratchzoo.functional.routing import gather_rows, softplus, topk


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_matches_torch(dtype):
    x = np.concatenate([rand(3, 4).ravel() * 3, [0.0, -50.0, 50.0, 15.0, -15.0]])  # both tails and exactly 0
    assert_matches_torch(softplus, torch.nn.functional.softplus, [x], dtype=dtype)


def test_softplus_does_not_overflow_and_has_slope_one_half_at_zero():
    x = sz.tensor(np.array([-1000.0, 0.0, 1000.0]), requires_grad=True)
    y = softplus(x)
    y.sum().backward()
    assert np.allclose(y.data, [0.0, np.log(2.0), 1000.0])
    assert np.allclose(x.grad, [0.0, 0.5, 1.0])


def test_softplus_gradcheck():
    gradcheck(softplus, [rand(2, 5) * 2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, k, dim", [((5, 7), 3, -1), ((4, 6, 3), 2, 1), ((8,), 8, 0)])
def test_topk_matches_torch(dtype, shape, k, dim):
    def ours(x):
        return tuple(topk(x, k, dim))

    def theirs(x):
        return tuple(torch.topk(x, k, dim))

    assert_matches_torch(ours, theirs, [rand(*shape)], dtype=dtype)


def test_topk_gradcheck_and_ties_keep_index_order():
    gradcheck(lambda x: topk(x, 2, dim=0).values, [rand(5, 3)])
    values, indices = topk(sz.tensor(np.array([1.0, 3.0, 3.0, 0.0])), 2)
    assert indices.tolist() == [1, 2] and values.tolist() == [3.0, 3.0]


def test_topk_rejects_k_out_of_range():
    with pytest.raises(ValueError, match="topk: k must lie in"):
        topk(sz.tensor(np.zeros((2, 3))), 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_rows_matches_torch_index_select(dtype):
    index = np.array([3, 0, 3, 1, 3, 4, 0, 2, 1, 3])  # repeats (row 3 four times), any order
    assert_matches_torch(gather_rows, lambda x, i: torch.index_select(x, 0, i), [rand(6, 4, 2), index], dtype=dtype)


def test_gather_rows_gradcheck_and_edge_cases():
    gradcheck(lambda x: gather_rows(x, np.array([2, 2, 0, 2, 1])), [rand(4, 3)])  # row 3 never picked: grad 0
    x = sz.tensor(np.ones((3, 2)), requires_grad=True)
    gather_rows(x, np.zeros(0, dtype=np.int64)).sum().backward()
    assert np.array_equal(x.grad, np.zeros((3, 2)))
    with pytest.raises(IndexError, match=r"gather_rows: index must lie in \[0, 3\)"):
        gather_rows(x, np.array([0, 3]))
