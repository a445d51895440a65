"""clip_grad_norm_ against torch.nn.utils.clip_grad_norm_: returned norm and clipped gradients."""
import math

import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo.nn.utils import clip_grad_norm_


@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])  # clipped, and left alone
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(norm_type, max_norm, dtype):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(shape).astype(dtype) for shape in [(5,), (3, 4), (2, 2, 3)]]
    ours = [sz.Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True) for g in grads]
    for p, t, g in zip(ours, theirs, grads):
        p.grad, t.grad = g.copy(), torch.from_numpy(g.copy())
    ours.append(sz.Tensor(np.zeros(2), requires_grad=True))  # no grad: skipped
    total = clip_grad_norm_(ours, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert isinstance(total, float) and total == pytest.approx(expected.item(), rel=tol)
    for p, t in zip(ours, theirs):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=tol, atol=tol)


def test_single_tensor_and_no_grads():
    p = sz.Tensor(np.zeros(2), requires_grad=True)
    assert clip_grad_norm_(p, 1.0) == 0.0
    p.grad = np.array([3.0, 4.0])
    assert clip_grad_norm_(p, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(np.linalg.norm(p.grad), 1.0, rtol=1e-5)
