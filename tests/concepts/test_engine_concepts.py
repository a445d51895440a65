"""Claims the engine's docs make, each checked: activations act elementwise, MSE's mean is its sum over
N, the chain rule worked by hand equals what backward computes, a 20,000-op chain differentiates, which ops
convert integer operands, and comparisons are elementwise."""
import numpy as np
import pytest

import scratchzoo as sz
from scratchzoo import functional as F

from helpers import rand


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "gelu", "silu"])
def test_a_smooth_activation_changes_every_element(activation) -> None:
    x = sz.tensor(rand(2, 3, 10), requires_grad=True)
    y = getattr(F, activation)(x)
    assert y.shape == (2, 3, 10)
    assert np.count_nonzero(y.data != x.data) == 60  # all 2*3*10 entries were transformed
    y.sum().backward()
    assert np.count_nonzero(x.grad) == 60  # and each entry has its own nonzero derivative


def test_relu_acts_on_each_element_independently() -> None:
    values = rand(2, 3, 10)
    values[values == 0] = 1.0
    x = sz.tensor(values, requires_grad=True)
    y = F.relu(x)
    negative = values < 0
    assert np.count_nonzero(negative) > 0 and np.count_nonzero(~negative) > 0
    np.testing.assert_array_equal(y.data[negative], 0.0)  # every negative entry is zeroed...
    np.testing.assert_array_equal(y.data[~negative], values[~negative])  # ...every positive one kept
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, (~negative).astype(np.float64))  # gradient 1 where it passed
    # and the output at one position depends only on the input at that position
    x.grad = None
    y[1, 2, 7].backward()
    assert np.count_nonzero(x.grad) == (0 if negative[1, 2, 7] else 1)


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
def test_mse_mean_is_the_sum_over_n(shape) -> None:
    prediction, target = sz.tensor(rand(*shape)), sz.tensor(rand(*shape))
    n = int(np.prod(shape))
    mean = F.mse_loss(prediction, target, reduction="mean").item()
    total = F.mse_loss(prediction, target, reduction="sum").item()
    assert mean == pytest.approx(total / n, rel=1e-12)
    per_element = F.mse_loss(prediction, target, reduction="none")
    assert per_element.shape == shape
    assert per_element.sum().item() == pytest.approx(total, rel=1e-12)


def test_chain_rule_by_hand_equals_backward() -> None:
    # y_pred = w * x + b,  L = (y_pred - y)^2  with x = 2, w = 3, b = 1, y = 10
    x, y = 2.0, 10.0
    w = sz.tensor([3.0], requires_grad=True)
    b = sz.tensor([1.0], requires_grad=True)
    wx = w * x
    wx.retain_grad()
    y_pred = wx + b
    y_pred.retain_grad()
    loss = F.mse_loss(y_pred, sz.tensor([y]))
    loss.backward()

    # by hand: y_pred = 3*2 + 1 = 7, L = (7 - 10)^2 = 9
    y_pred_value = 3.0 * 2.0 + 1.0
    assert y_pred.item() == y_pred_value and loss.item() == (y_pred_value - y) ** 2 == 9.0
    dL_dy_pred = 2 * (y_pred_value - y)  # d/dy_pred of (y_pred - y)^2 = 2 (7 - 10) = -6
    dL_dwx = dL_dy_pred * 1.0  # the + b node passes the gradient through unchanged
    dL_db = dL_dy_pred * 1.0  # d(wx + b)/db = 1: -6
    dL_dw = dL_dwx * x  # d(w x)/dw = x: -6 * 2 = -12
    assert (dL_dy_pred, dL_db, dL_dw) == (-6.0, -6.0, -12.0)
    assert y_pred.grad.item() == dL_dy_pred
    assert wx.grad.item() == dL_dwx
    assert b.grad.item() == dL_db
    assert w.grad.item() == dL_dw


def test_a_chain_of_20000_multiplications_differentiates() -> None:
    """engine.md, "Order": the explicit stack lets a 20,000-op chain backpropagate (recursion stops near 1,000)."""
    x = sz.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(2, 1.0001 ** 20_000), rtol=1e-9)  # d/dx of x * 1.0001^20000


def test_integers_are_converted_by_the_elementwise_binary_ops_only() -> None:
    """engine.md, dtypes: + - * / ** and where convert an integer operand to the float dtype; matmul, linear,
    the convolutions, cat and the unary float ops raise DTypeError."""
    f = sz.tensor(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float64))
    i = sz.tensor([[1, 2], [3, 4]])
    for result in (f + i, i - f, f * i, i / f, f ** i, F.where(np.eye(2, dtype=bool), i, f)):
        assert result.dtype == np.float64
    for refused in (lambda: f @ i, lambda: F.linear(f, i), lambda: F.cat([f, i]),
                    lambda: F.conv2d(sz.zeros(1, 1, 3, 3), sz.tensor(np.ones((1, 1, 2, 2), dtype=np.int64))),
                    lambda: F.exp(i)):
        with pytest.raises(sz.DTypeError):
            refused()


def test_comparisons_are_elementwise_and_arange_follows_torch() -> None:
    """engine.md, the Tensor: `==` gives a boolean tensor ((pred == y).float().mean() is an accuracy), tensors
    are found in a list by identity, and arange is int64 for ints, float32 with a float."""
    pred, y = sz.tensor([1, 0, 2, 2]), sz.tensor([1, 1, 2, 0])
    assert (pred == y).tolist() == [True, False, True, False]
    assert (pred == y).float().mean().item() == 0.5
    a, b = sz.tensor([1.0]), sz.tensor([1.0])
    assert any(t is b for t in [a, b]) and not any(t is b for t in [a])  # identity, whatever the values
    assert {a: "a", b: "b"}[b] == "b"
    assert sz.arange(5).dtype == np.int64 and sz.arange(0.0, 5.0).dtype == np.float32
