"""The engine itself: graph recording, the backward walk, gradient bookkeeping, dtypes and errors."""
from __future__ import annotations

import gc
import sys

import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo.autograd import DTypeError, ShapeError

from helpers import assert_matches_torch, rand


def leaf(*shape: int, dtype=np.float32) -> sz.Tensor:
    return sz.tensor(rand(*shape).astype(dtype), requires_grad=True)


# ============================================================================ gradient bookkeeping


def test_gradients_accumulate_over_two_backward_calls() -> None:
    x = leaf(2, 3)
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 3.0 + 2 * x.data, rtol=1e-6)
    x.zero_grad()
    assert x.grad is None


def test_a_tensor_used_twice_gets_the_sum_of_its_consumers_gradients() -> None:
    x = leaf(4, dtype=np.float64)
    y = x * x + x.exp() + x  # three consumers of x, one of them (mul) using it twice
    y.backward(np.ones(4))
    np.testing.assert_allclose(x.grad, 2 * x.data + np.exp(x.data) + 1, rtol=1e-12)
    z = leaf(3)
    (z + z).sum().backward()
    np.testing.assert_array_equal(z.grad, np.full(3, 2.0, np.float32))


def test_diamond_graph_matches_torch() -> None:
    def f(x):
        a = x * 2.0
        b, c = a.exp(), a * a  # a feeds two branches that meet again
        return (b + c) * a
    assert_matches_torch(f, f, [rand(3, 2)], dtype=np.float64)


def test_retain_grad_on_a_non_leaf() -> None:
    x = leaf(3, dtype=np.float64)
    y = x * 2.0
    y.retain_grad()
    h = y + 1.0  # not retained
    (h * y).sum().backward()
    np.testing.assert_allclose(y.grad, 2 * y.data + 1.0)  # d/dy (y + 1) y
    assert h.grad is None and not y.is_leaf and x.is_leaf
    np.testing.assert_allclose(x.grad, 2 * (2 * y.data + 1.0))


def test_leaf_grads_are_copies_not_views_of_the_upstream() -> None:
    x = leaf(3)
    upstream = np.ones(3, np.float32)
    (x * 1.0).backward(upstream)
    upstream[:] = 5
    np.testing.assert_array_equal(x.grad, np.ones(3, np.float32))


def test_backward_accepts_a_tensor_gradient() -> None:
    x = leaf(2)
    (x * 3.0).backward(sz.tensor([1.0, 2.0]))
    np.testing.assert_array_equal(x.grad, np.array([3.0, 6.0], np.float32))


# ============================================================================ no_grad and detach


def test_no_grad_records_nothing() -> None:
    x = leaf(3)
    with sz.no_grad():
        assert not sz.is_grad_enabled()
        y = x * 2.0 + 1.0
        z = F.softmax(y, 0)
    assert sz.is_grad_enabled()
    for t in (y, z):
        assert not t.requires_grad and t._ctx is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        z.sum().backward()


def test_no_grad_as_decorator_and_restored_after_an_exception() -> None:
    @sz.no_grad()
    def double(t):
        return t * 2.0

    x = leaf(2)
    assert not double(x).requires_grad
    assert (x * 2.0).requires_grad
    with pytest.raises(ZeroDivisionError):
        with sz.no_grad():
            1 / 0
    assert sz.is_grad_enabled()
    with sz.no_grad():
        with sz.enable_grad():
            assert (x * 2.0).requires_grad
        assert not (x * 2.0).requires_grad


def test_detach_cuts_the_graph() -> None:
    x = leaf(3, dtype=np.float64)
    d = x.detach()
    assert not d.requires_grad and d._ctx is None
    np.testing.assert_array_equal(d.data, x.data)
    (d * x).sum().backward()  # gradient flows through x only: d is a constant
    np.testing.assert_array_equal(x.grad, x.data)


def test_item_numpy_tolist() -> None:
    x = sz.tensor([[3.5]])
    assert x.item() == 3.5 and isinstance(x.item(), float)
    a = sz.tensor([1.0, 2.0])
    assert isinstance(a.numpy(), np.ndarray) and a.numpy() is a.data
    assert a.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError):
        a.item()


# ============================================================================ errors


def test_backward_of_a_non_scalar_needs_a_gradient() -> None:
    y = leaf(2, 3) * 2.0
    with pytest.raises(RuntimeError, match=r"scalar.*\(2, 3\)"):
        y.backward()


def test_backward_with_a_wrong_shaped_gradient() -> None:
    y = leaf(2, 3) * 2.0
    with pytest.raises(ShapeError, match=r"\(3, 2\).*\(2, 3\)"):
        y.backward(np.ones((3, 2)))


def test_mixing_float32_and_float64_is_a_clear_error() -> None:
    a, b = leaf(3), leaf(3, dtype=np.float64)
    for op in (lambda: a + b, lambda: a * b, lambda: b / a, lambda: a - b, lambda: a ** b,
               lambda: F.where(np.ones(3, bool), a, b), lambda: a @ b):
        with pytest.raises(DTypeError) as info:
            op()
        message = str(info.value)
        assert "float32" in message and "float64" in message and ".to(" in message


def test_mismatched_shapes_name_both_shapes() -> None:
    a, b = leaf(2, 3), leaf(4, 5)
    for op, name in ((lambda: a + b, "add"), (lambda: a - b, "sub"), (lambda: a * b, "mul"),
                     (lambda: a / b, "div"), (lambda: a @ b, "matmul")):
        with pytest.raises(ShapeError) as info:
            op()
        assert name in str(info.value) and "(2, 3)" in str(info.value) and "(4, 5)" in str(info.value)


def test_a_backward_returning_a_wrong_gradient_is_caught() -> None:
    class BadShape(sz.Function):
        def forward(self, x):
            return x * 2

        def backward(self, grad):
            return grad.sum()

    class BadDType(sz.Function):
        def forward(self, x):
            return x * 2

        def backward(self, grad):
            return grad.astype(np.float64)

    with pytest.raises(ShapeError, match=r"BadShape.*\(\).*\(3,\)"):
        BadShape.apply(leaf(3)).sum().backward()
    with pytest.raises(DTypeError, match="BadDType.*float64.*float32"):
        BadDType.apply(leaf(3)).sum().backward()


# ============================================================================ deep graphs


def test_a_chain_5000_ops_deep_backprops_without_recursion_error() -> None:
    x = sz.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    limit = sys.getrecursionlimit()
    y.sum().backward()
    assert sys.getrecursionlimit() == limit
    np.testing.assert_allclose(x.grad, np.full(2, 1.0001 ** 5000), rtol=1e-9)
    del y
    gc.collect()  # freeing the chain must not recurse either


# ============================================================================ dtypes


def test_default_dtypes() -> None:
    assert sz.tensor([1.0]).dtype == np.float32
    assert sz.tensor(1.5).dtype == np.float32
    assert sz.tensor(np.array([1.0])).dtype == np.float64  # arrays keep their dtype, as torch.from_numpy
    assert sz.tensor(np.array([1.0], np.float32)).dtype == np.float32
    assert sz.tensor(np.float64(1.0)).dtype == np.float64  # NumPy scalars too, as torch.tensor
    assert sz.tensor([1, 2]).dtype == np.int64
    assert sz.tensor(np.array([1, 2], np.int32)).dtype == np.int32
    assert sz.tensor([True]).dtype == np.bool_
    assert sz.zeros(2, 3).dtype == np.float32 and sz.ones((2,)).dtype == np.float32
    assert sz.tensor([1.0], dtype=np.float64).dtype == np.float64


def test_ops_on_0d_results_keep_the_dtype() -> None:
    # NumPy ufuncs turn 0-d arrays into NumPy scalars; float64 must not fall back to float32
    x = leaf(4, dtype=np.float64)
    for y in (x @ x, x.sum().sqrt(), x.max().exp(), x.var().log(), x[1].tanh(), x.mean() * 2.0):
        assert y.dtype == np.float64 and y.shape == ()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_operators_with_python_and_numpy_numbers_keep_the_tensor_dtype(dtype) -> None:
    x = leaf(3, dtype=dtype)
    results = [2.0 * x, x * 2.0, x / 3, 3 / x, x + 1, 1 - x, x - 0.5, x ** 2, 2 ** x,
               np.float32(2) * x, x * np.float64(2), np.float64(1.5) + x, x / np.int64(2),
               x + np.ones(3, np.int64), np.arange(3) * x, x * np.ones(3, dtype), np.ones(3, dtype) - x,
               F.where(np.ones(3, bool), x, 0.0), F.masked_fill(x, np.ones(3, bool), 7.0)]
    for i, y in enumerate(results):
        assert isinstance(y, sz.Tensor), f"result {i} is a {type(y).__name__}"
        assert y.dtype == dtype, f"result {i} has dtype {y.dtype}"
    sum(r.sum() for r in results).backward()
    assert x.grad.dtype == dtype


def test_an_array_of_the_other_float_dtype_is_an_error() -> None:
    with pytest.raises(DTypeError, match="float32.*float64|float64.*float32"):
        leaf(3) * np.ones(3)  # a float64 array beside a float32 tensor (PyTorch would promote)
    with pytest.raises(DTypeError):
        np.ones(3) + leaf(3)


@pytest.mark.parametrize("cast", ["to64", "double", "to_sz64", "float_of_64", "to32"])
def test_casts_send_the_gradient_back_in_the_original_dtype(cast: str) -> None:
    source = np.float64 if cast in ("float_of_64", "to32") else np.float32
    x = leaf(3, dtype=source)
    y = {"to64": lambda: x.to(np.float64), "double": x.double, "to_sz64": lambda: x.to(sz.float64),
         "float_of_64": x.float, "to32": lambda: x.to("float32")}[cast]()
    target = np.float32 if source == np.float64 else np.float64
    assert y.dtype == target and y.requires_grad
    (y * 3.0).sum().backward()
    assert x.grad.dtype == source
    np.testing.assert_array_equal(x.grad, np.full(3, 3.0, source))


def test_cast_to_the_same_dtype_and_int_casts() -> None:
    x = leaf(3)
    assert x.float() is x and x.to(np.float32) is x
    ids = sz.tensor([1.7, 2.2]).long()
    assert ids.dtype == np.int64 and ids.tolist() == [1, 2]
    assert sz.tensor([1, 2]).float().dtype == np.float32
    assert sz.tensor([0.0, 1.0]).bool().tolist() == [False, True]


def test_cast_matches_torch() -> None:
    assert_matches_torch(lambda x: x.double().float() * 2.0, lambda x: x.double().float() * 2.0, [rand(3)])


# ============================================================================ small API facts


def test_tensor_facts_and_comparisons() -> None:
    x = sz.tensor(np.arange(6.0).reshape(2, 3))
    assert x.shape == (2, 3) and x.ndim == 2 and x.dim() == 2 and x.numel() == 6 and len(x) == 2
    assert x.size() == (2, 3) and x.size(1) == 3
    assert (x > 2).dtype == np.bool_ and (x > 2).tolist() == [[False, False, False], [True, True, True]]
    assert (x <= 1).data.sum() == 2 and (x >= 5).data.sum() == 1 and (x < x).data.sum() == 0
    assert x.eq(x).data.all() and not x.ne(x).data.any()
    assert x.argmax().item() == 5 and x.argmin(1).tolist() == [0, 0]
    assert "grad_fn=<Mul>" in repr(leaf(2) * 2.0) and "requires_grad=True" in repr(leaf(2))
    assert "float64" in repr(x)
    t = {x: 1}  # hashable by identity
    assert t[x] == 1


def test_requires_grad_flags() -> None:
    x = sz.tensor([1.0, 2.0])
    assert not x.requires_grad and not (x * 2.0).requires_grad
    x.requires_grad_()
    assert (x * 2.0).requires_grad
    with pytest.raises(DTypeError, match="int64"):
        sz.tensor([1, 2]).requires_grad_()
    # only inputs that require grad receive one
    w = leaf(2)
    (x * w).sum().backward()
    assert w.grad is not None and x.grad is not None
    c = sz.tensor([1.0, 1.0])
    (c * w).sum().backward()
    assert c.grad is None


def test_matches_torch_on_a_small_mlp_graph() -> None:
    def mlp(x, w1, b1, w2):
        return (F.relu(x @ w1 + b1) @ w2).tanh().mean()

    def mlp_torch(x, w1, b1, w2):
        return (torch.relu(x @ w1 + b1) @ w2).tanh().mean()

    for dtype in (np.float32, np.float64):
        assert_matches_torch(mlp, mlp_torch, [rand(4, 3), rand(3, 5), rand(5), rand(5, 2)], dtype=dtype)


@pytest.mark.parametrize("dtype, there_and_back", [(np.float32, lambda x: x.double().float() * 2.0),
                                                   (np.float64, lambda x: x.float().double() * 2.0)],
                         ids=["float32 via float64", "float64 via float32"])
def test_cast_matches_torch_in_both_dtypes(dtype: np.dtype, there_and_back) -> None:
    # float64 -> float32 -> float64 rounds the values and the gradient to float32 on the way, in both libraries
    assert_matches_torch(there_and_back, there_and_back, [rand(3, 4)], dtype=dtype)
