"""Claims the CNN docs make, each checked on the library's own layers.

- A deep-learning "convolution" is a cross-correlation: the textbook convolution with the kernel flipped.
- Channels are features: 64 kernels of 3x3x3 turn (2, 3, 224, 224) into (2, 64, 224, 224).
- out = (in + 2*padding - kernel) // stride + 1.
- BatchNorm2d keeps one mean per channel, taken over N, H and W; its learned gamma and beta then set each
  channel's scale and shift.
- Max-pooling 6x6 by 2 gives 3x3 and keeps the channels; AdaptiveAvgPool2d(1) is the spatial mean.
- Dropout2d zeroes whole channels, keeps the expectation in training and is the identity in eval.
- Two stacked 3x3 convolutions see 5x5, and a 2x2 pooling between them widens the view to 8x8. That one
  is in test_receptive_field.py, measured both ways: the calculator and the gradient's reach.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import convolve2d, correlate2d

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo import nn

from helpers import assert_close, rand


def test_convolution_in_deep_learning_is_cross_correlation_i_e_convolution_with_a_flipped_kernel() -> None:
    image, kernel = rand(7, 6), rand(3, 3)
    ours = F.conv2d(sz.tensor(image[None, None]), sz.tensor(kernel[None, None])).data[0, 0]
    # The textbook convolution flips the kernel (both axes) before sliding it ...
    assert_close("vs convolve2d on the flipped kernel", ours, convolve2d(image, kernel[::-1, ::-1], mode="valid"),
                 1e-12, 1e-12)
    # ... which is exactly cross-correlation with the kernel as it is,
    assert_close("vs correlate2d", ours, correlate2d(image, kernel, mode="valid"), 1e-12, 1e-12)
    # and differs from the convolution with the unflipped kernel (unless the kernel is symmetric).
    assert not np.allclose(ours, convolve2d(image, kernel, mode="valid"))


def test_64_kernels_of_3x3x3_with_padding_1_turn_3_channels_into_64_of_the_same_size() -> None:
    conv = nn.Conv2d(3, 64, kernel_size=3, padding=1)
    assert conv.weight.shape == (64, 3, 3, 3)  # one 3x3x3 kernel per output channel
    with sz.no_grad():
        y = conv(sz.zeros(2, 3, 224, 224))
    assert y.shape == (2, 64, 224, 224)  # (224 + 2*1 - 3) // 1 + 1 = 224


@pytest.mark.parametrize("size, kernel, stride, padding", [(28, 3, 1, 0), (28, 3, 1, 1), (28, 5, 2, 2), (9, 4, 3, 1)])
def test_output_size_formula(size: int, kernel: int, stride: int, padding: int) -> None:
    x = rand(1, 1, size, size)
    out = F.conv2d_naive(x, rand(1, 1, kernel, kernel), stride=stride, padding=padding)
    assert out.shape[-1] == (size + 2 * padding - kernel) // stride + 1
    with sz.no_grad():
        fast = F.conv2d(sz.tensor(x), sz.tensor(rand(1, 1, kernel, kernel)), stride=stride, padding=padding)
    assert fast.shape == out.shape


def test_batchnorm2d_keeps_one_mean_per_channel_over_n_h_and_w() -> None:
    x = rand(4, 64, 5, 5) * 3 + np.arange(64)[None, :, None, None]
    bn = nn.BatchNorm2d(64).double()
    y = bn(sz.tensor(x)).data
    assert bn.running_mean.shape == (64,)  # 64 channels, 64 means
    # one step from zero with momentum 0.1: running_mean = 0.9 * 0 + 0.1 * (the batch's channel means)
    assert_close("running_mean", bn.running_mean.data, 0.1 * x.mean(axis=(0, 2, 3)), 1e-12, 1e-12)
    # and each channel comes out with mean 0 and (biased) variance 1 over N, H, W
    assert_close("output means", y.mean(axis=(0, 2, 3)), np.zeros(64), 1e-9, 1e-9)
    assert_close("output variances", y.var(axis=(0, 2, 3)), np.ones(64), 1e-4, 1e-4)


def test_batchnorm2d_gamma_and_beta_set_each_channel_s_scale_and_shift() -> None:
    """y = gamma * x_hat + beta: learned per channel, they move the output off mean 0 and variance 1."""
    x = rand(8, 3, 4, 4) * 5 - 2
    bn = nn.BatchNorm2d(3).double()
    bn.weight.data[:], bn.bias.data[:] = [2.0, 0.5, 3.0], [1.0, -4.0, 0.0]  # gamma, beta
    y = bn(sz.tensor(x)).data
    assert_close("output means = beta", y.mean(axis=(0, 2, 3)), np.array([1.0, -4.0, 0.0]), 1e-9, 1e-9)
    assert_close("output sd = gamma", y.std(axis=(0, 2, 3)), np.array([2.0, 0.5, 3.0]), 1e-4, 1e-4)
    assert bn.weight.requires_grad and bn.bias.requires_grad  # learnable, so training picks them


def test_max_pooling_6x6_by_2_gives_3x3_and_keeps_the_channels() -> None:
    x = rand(2, 5, 6, 6)
    y = nn.MaxPool2d(2)(sz.tensor(x)).data
    assert y.shape == (2, 5, 3, 3)
    assert_close("each output is its window's maximum", y, x.reshape(2, 5, 3, 2, 3, 2).max(axis=(3, 5)), 0, 0)


def test_adaptive_avg_pool_to_1_is_the_spatial_mean_whatever_the_size() -> None:
    for h, w in ((7, 7), (5, 9)):
        x = rand(2, 8, h, w)
        y = nn.AdaptiveAvgPool2d(1)(sz.tensor(x)).data
        assert y.shape == (2, 8, 1, 1)
        assert_close("spatial mean", y[:, :, 0, 0], x.mean(axis=(2, 3)), 1e-12, 1e-12)


def test_dropout2d_zeroes_whole_channels_keeps_the_expectation_and_is_the_identity_in_eval() -> None:
    sz.manual_seed(0)
    layer = nn.Dropout2d(0.5)
    x = sz.tensor(np.ones((400, 50, 3, 3)))
    y = layer(x).data
    channel_values = y.reshape(400, 50, 9)
    assert np.all(channel_values.min(axis=2) == channel_values.max(axis=2))  # a channel is all 0 or all 2
    assert set(np.unique(y)) == {0.0, 2.0}
    assert abs(y.mean() - 1.0) < 0.02  # E[y] = x
    layer.eval()
    assert layer(x) is x


def test_max_pooling_tolerates_a_small_shift_inside_its_window() -> None:
    """A feature that moves by a pixel but stays inside the same 2x2 window gives the same pooled output:
    the layer after the pool does not see the shift (the robustness the CNN page describes)."""
    image = np.zeros((1, 1, 6, 6))
    image[0, 0, 2, 2] = 1.0
    shifted = np.zeros((1, 1, 6, 6))
    shifted[0, 0, 3, 3] = 1.0  # one pixel down and right, the same window (rows 2-3, columns 2-3)
    pool = nn.MaxPool2d(2)
    assert np.array_equal(pool(sz.Tensor(image)).data, pool(sz.Tensor(shifted)).data)
    conv = nn.Conv2d(1, 1, 3, padding=1).double()  # without the pool the shift shows
    assert not np.allclose(conv(sz.Tensor(image)).data, conv(sz.Tensor(shifted)).data)
