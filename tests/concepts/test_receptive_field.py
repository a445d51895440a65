"""The receptive field, as docs/*/cnn.md explains it, checked two ways: the calculator's arithmetic
(`nn.receptive_field`) and an experiment (which input pixels the gradient of one output pixel reaches).

One output pixel of a k x k convolution sees a k x k patch; a second k x k convolution on top sees k
neighbouring outputs of the first, each k wide, overlapping: k + (k - 1) in all, so 3x3 + 3x3 = 5x5 and
three of them 7x7. After a pooling by 2 neighbouring outputs sit 2 input pixels apart, so every later
kernel tap adds 2 to the field instead of 1.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import rand

import scratchzoo as sz
from scratchzoo import nn
from scratchzoo.models.cnn import CNN, CNNConfig
from scratchzoo.nn import receptive_field


def _positive(layer: nn.Module) -> nn.Module:
    """float64, all weights positive: no sum of contributions can cancel to exactly zero."""
    layer.double()
    layer.weight.data = np.abs(layer.weight.data) + 0.1
    return layer


def _seen_window(model: nn.Module, size: tuple[int, ...]) -> tuple[int, ...]:
    """Backpropagate from the centre output pixel and return the extent of the input pixels that got a
    non-zero gradient, per spatial dim, after checking that they fill that window completely."""
    x = sz.Tensor(np.abs(rand(1, 1, *size)) + 0.1, requires_grad=True)  # positive input: every path alive
    y = model(x)
    grad = np.zeros(y.shape)
    grad[(0, 0, *(s // 2 for s in y.shape[2:]))] = 1.0
    y.backward(grad)
    seen = x.grad[0, 0] != 0
    where = np.nonzero(seen)
    extent = tuple(int(w.max() - w.min() + 1) for w in where)
    window = tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)
    assert seen[window].all() and seen.sum() == np.prod(extent), "the gradient's support is a full window"
    return extent


def _claimed(model: nn.Module, size: tuple[int, ...]) -> tuple[int, ...]:
    return receptive_field(model, size)[-1].receptive_field


def _convs(count: int, **kwargs) -> list[nn.Module]:
    sz.manual_seed(0)
    return [_positive(nn.Conv2d(1, 1, 3, **kwargs)) for _ in range(count)]


@pytest.mark.parametrize("count, field", [(1, 3), (2, 5), (3, 7)])
def test_stacked_3x3_convolutions_see_3_5_7(count, field):
    model = nn.Sequential(*_convs(count))
    assert _claimed(model, (15, 15)) == (field, field)
    assert _seen_window(model, (15, 15)) == (field, field)


def test_a_pooling_by_2_doubles_the_growth_of_later_layers():
    """conv3 -> pool2 -> conv3: 3, then 4 (the pool adds one input pixel), then 4 + 2*(3-1) = 8,
    where without the pool the second conv would reach only 5."""
    first, second = _convs(2)
    model = nn.Sequential(first, nn.AvgPool2d(2), second)
    rows = receptive_field(model, (16, 16))
    assert [row.receptive_field for row in rows] == [(3, 3), (4, 4), (8, 8)]
    assert [row.jump for row in rows] == [(1, 1), (2, 2), (2, 2)]
    assert [row.output_size for row in rows] == [(14, 14), (7, 7), (5, 5)]
    assert _seen_window(model, (16, 16)) == (8, 8)
    # one more conv after the pool adds 2 * 2 = 4 again: growth 4 per layer instead of 2
    third = _convs(3)[2]
    deeper = nn.Sequential(first, nn.AvgPool2d(2), second, third)
    assert _claimed(deeper, (20, 20)) == (12, 12) == _seen_window(deeper, (20, 20))


@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    (3, 1, 0, 1), (3, 1, 1, 1), (3, 2, 1, 1), (5, 2, 2, 1), (3, 1, 2, 2), (3, 2, 0, 2), (4, 3, 1, 1)])
@pytest.mark.parametrize("size", [9, 10, 16])
def test_output_sizes_follow_the_formula(size, kernel, stride, padding, dilation):
    """out = (H + 2p - d(k - 1) - 1) // s + 1, which with d = 1 is the familiar (H + 2p - k) // s + 1."""
    expected = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if dilation == 1:
        assert expected == (size + 2 * padding - kernel) // stride + 1
    conv = nn.Conv2d(1, 2, kernel, stride=stride, padding=padding, dilation=dilation)
    out = conv(sz.Tensor(rand(1, 1, size, size).astype(np.float32)))
    assert out.shape == (1, 2, expected, expected)
    assert receptive_field(conv, (size, size))[0].output_size == (expected, expected)


@pytest.mark.parametrize("layers", [
    [dict(kernel_size=3, dilation=2), dict(kernel_size=3)],             # a dilated 3x3 reaches 5x5
    [dict(kernel_size=3, stride=2), dict(kernel_size=3)],               # a strided conv doubles growth too
    [dict(kernel_size=5, padding=2), dict(kernel_size=3, dilation=3)],  # 5, then 5 + 3*2 = 11
])
def test_calculator_and_gradient_agree_with_stride_and_dilation(layers):
    sz.manual_seed(0)
    model = nn.Sequential(*(_positive(nn.Conv2d(1, 1, **kwargs)) for kwargs in layers))
    assert _claimed(model, (31, 31)) == _seen_window(model, (31, 31))


def test_1d_receptive_field_with_avg_pool():
    sz.manual_seed(0)
    first, second = (_positive(nn.Conv1d(1, 1, 5, padding=2)) for _ in range(2))
    model = nn.Sequential(first, nn.AdaptiveAvgPool1d(20), second)  # 40 -> 20: an exact pool by 2
    assert _claimed(model, (40,)) == (14,) == _seen_window(model, (40,))  # 5, 6, 6 + 2*4


def test_cnn_digits_table():
    """The table printed in docs/*/cnn.md for the cnn-digits network (64, 128 channels, 8x8 input)."""
    sz.manual_seed(0)
    model = CNN(CNNConfig(channels=(64, 128), pooled_size=2))
    rows = [(row.name, row.layer, row.output_size, row.receptive_field, row.jump)
            for row in receptive_field(model, (8, 8))]
    assert rows == [("features.0.0", "Conv2d", (8, 8), (3, 3), (1, 1)),
                    ("features.0.3", "MaxPool2d", (4, 4), (4, 4), (2, 2)),
                    ("features.1.0", "Conv2d", (4, 4), (8, 8), (2, 2)),
                    ("features.1.3", "MaxPool2d", (2, 2), (10, 10), (4, 4)),
                    ("features.2", "AdaptiveAvgPool2d", (2, 2), (10, 10), (4, 4))]
