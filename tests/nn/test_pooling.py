"""Pooling and resizing layers against torch.nn (forward and backward, float32 and float64): MaxPool1d/2d,
AvgPool2d, AdaptiveAvgPool1d/2d for any output size, Upsample nearest/(bi)linear; finite differences in
float64; Dropout2d's channel masks; reprs and clear errors."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo import nn
from scratchzoo.autograd import ShapeError

from helpers import assert_matches_torch, gradcheck, rand

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


def with_ties(*shape: int) -> np.ndarray:
    """Values on a coarse grid, half of them 0 (as after a ReLU): most windows hold a tied maximum."""
    return np.maximum(np.round(rand(*shape) * 2) / 2, 0)


MAXPOOL2D_CASES = {
    "k2": (2, {}),
    "k3-s2-p1": (3, {"stride": 2, "padding": 1}),
    "k2-s1-overlapping": (2, {"stride": 1}),
    "k3x2-dilation2": ((3, 2), {"stride": 1, "dilation": 2}),
    "k3-s2-odd": (3, {"stride": 2}),
    "tuples": ((2, 3), {"stride": (1, 2), "padding": (1, 1)}),
}


@DTYPES
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("case", MAXPOOL2D_CASES, ids=str)
def test_maxpool2d_matches_torch(case: str, ties: bool, dtype: Any) -> None:
    kernel, options = MAXPOOL2D_CASES[case]
    x = with_ties(2, 3, 9, 7) if ties else rand(2, 3, 9, 7)
    assert_matches_torch(nn.MaxPool2d(kernel, **options), torch.nn.MaxPool2d(kernel, **options), [x], dtype=dtype)


@DTYPES
@pytest.mark.parametrize("kernel, options",
                         [(2, {}), (3, {"stride": 2, "padding": 1}), (3, {"stride": 1, "dilation": 2})],
                         ids=["k2", "k3-s2-p1", "dilation2"])
def test_maxpool1d_matches_torch(kernel: int, options: dict[str, Any], dtype: Any) -> None:
    assert_matches_torch(nn.MaxPool1d(kernel, **options), torch.nn.MaxPool1d(kernel, **options),
                         [with_ties(2, 3, 11)], dtype=dtype)


def test_maxpool_with_more_than_127_taps_per_window_matches_torch() -> None:
    """Windows of 12 x 11 = 132 taps: the arg-max index no longer fits the int8 used for small windows."""
    assert_matches_torch(nn.MaxPool2d((12, 11), stride=2), torch.nn.MaxPool2d((12, 11), stride=2),
                         [with_ties(1, 2, 15, 14)], dtype=np.float64)


def test_maxpool_after_a_convolution_routes_the_gradient_alike() -> None:
    """A convolution's output is channels-last in memory; pooling it must not care."""
    conv = nn.Conv2d(2, 4, 3, padding=1).double()
    theirs = torch.nn.Conv2d(2, 4, 3, padding=1).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in conv.state_dict().items()})
    for kernel, stride in ((2, 2), (3, 1)):
        assert_matches_torch(lambda x: F.max_pool2d(F.relu(conv(x)), kernel, stride),
                             lambda x: TF.max_pool2d(TF.relu(theirs(x)), kernel, stride), [rand(2, 2, 6, 5)],
                             dtype=np.float64)


def test_maxpool_propagates_nan_as_torch() -> None:
    x = rand(1, 1, 4, 4)
    x[0, 0, 1, 0] = np.nan
    y = F.max_pool2d(sz.tensor(x), 2).data
    expected = TF.max_pool2d(torch.from_numpy(x), 2).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    assert np.isnan(y[0, 0, 0, 0])


AVGPOOL_CASES = {
    "k2": (2, {}),
    "k3-s2-p1": (3, {"stride": 2, "padding": 1}),
    "k3-s2-p1-exclude-pad": (3, {"stride": 2, "padding": 1, "count_include_pad": False}),
    "k3x2-s1": ((3, 2), {"stride": 1}),
    "tuples": ((2, 4), {"stride": (2, 1), "padding": (1, 2), "count_include_pad": False}),
}


@DTYPES
@pytest.mark.parametrize("case", AVGPOOL_CASES, ids=str)
def test_avgpool2d_matches_torch(case: str, dtype: Any) -> None:
    kernel, options = AVGPOOL_CASES[case]
    assert_matches_torch(nn.AvgPool2d(kernel, **options), torch.nn.AvgPool2d(kernel, **options), [rand(2, 3, 9, 7)],
                         dtype=dtype)


@DTYPES
@pytest.mark.parametrize("size", [1, 3, (4, 5), (3, None), (9, 7), (5, 3), (12, 8)], ids=str)
def test_adaptive_avgpool2d_matches_torch_for_any_output_size(size: Any, dtype: Any) -> None:
    assert_matches_torch(nn.AdaptiveAvgPool2d(size), torch.nn.AdaptiveAvgPool2d(size), [rand(2, 3, 9, 7)], dtype=dtype)


@DTYPES
@pytest.mark.parametrize("size", [1, 4, 5, 11, 13], ids=str)
def test_adaptive_avgpool1d_matches_torch(size: int, dtype: Any) -> None:
    assert_matches_torch(nn.AdaptiveAvgPool1d(size), torch.nn.AdaptiveAvgPool1d(size), [rand(2, 3, 11)], dtype=dtype)


UPSAMPLE_CASES = {
    "nearest-x2": {"scale_factor": 2},
    "nearest-size": {"size": (5, 11)},
    "nearest-x1.5": {"scale_factor": 1.5},
    "nearest-down": {"scale_factor": (0.5, 0.75)},
    "bilinear-x2": {"scale_factor": 2, "mode": "bilinear"},
    "bilinear-x2-corners": {"scale_factor": 2, "mode": "bilinear", "align_corners": True},
    "bilinear-size": {"size": (5, 11), "mode": "bilinear"},
    "bilinear-size-corners": {"size": (13, 4), "mode": "bilinear", "align_corners": True},
    "bilinear-x1.5": {"scale_factor": (1.5, 2.5), "mode": "bilinear"},
}


@DTYPES
@pytest.mark.parametrize("case", UPSAMPLE_CASES, ids=str)
def test_upsample_matches_torch(case: str, dtype: Any) -> None:
    options = UPSAMPLE_CASES[case]
    assert_matches_torch(nn.Upsample(**options), torch.nn.Upsample(**options), [rand(2, 3, 9, 7)], dtype=dtype)


@DTYPES
@pytest.mark.parametrize("options", [{"scale_factor": 3}, {"size": 7}, {"scale_factor": 2.5, "mode": "linear"},
                                     {"size": 4, "mode": "linear", "align_corners": True}], ids=str)
def test_interpolate_1d_matches_torch(options: dict[str, Any], dtype: Any) -> None:
    assert_matches_torch(lambda x: F.interpolate(x, **options), lambda x: TF.interpolate(x, **options),
                         [rand(2, 3, 6)], dtype=dtype)


# ============================================================================ finite differences


@pytest.mark.parametrize("options", [{"kernel_size": 3, "stride": 2, "padding": 1},
                                     {"kernel_size": 2, "stride": 1, "dilation": 2}, {"kernel_size": 2}], ids=str)
def test_max_pool2d_gradcheck(options: dict[str, Any]) -> None:
    gradcheck(lambda x: F.max_pool2d(x, **options), [rand(2, 2, 5, 6)])


def test_max_pool1d_gradcheck() -> None:
    gradcheck(lambda x: F.max_pool1d(x, 3, 2, 1), [rand(2, 2, 7)])


@pytest.mark.parametrize("options", [{"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
                                     {"kernel_size": 2}], ids=["padded", "blocks"])
def test_avg_pool2d_gradcheck(options: dict[str, Any]) -> None:
    gradcheck(lambda x: F.avg_pool2d(x, **options), [rand(2, 2, 5, 6)])


@pytest.mark.parametrize("size", [(3, 4), (2, 3)], ids=["uneven-bins", "even-bins"])
def test_adaptive_avg_pool2d_gradcheck(size: tuple[int, int]) -> None:
    gradcheck(lambda x: F.adaptive_avg_pool2d(x, size), [rand(2, 2, 4, 6)])


def test_adaptive_avg_pool1d_gradcheck() -> None:
    gradcheck(lambda x: F.adaptive_avg_pool1d(x, 3), [rand(2, 2, 7)])


@pytest.mark.parametrize("options", [{"scale_factor": 2}, {"size": (3, 7)}, {"scale_factor": 2, "mode": "bilinear"},
                                     {"size": (5, 3), "mode": "bilinear", "align_corners": True}], ids=str)
def test_interpolate_gradcheck(options: dict[str, Any]) -> None:
    gradcheck(lambda x: F.interpolate(x, **options), [rand(1, 2, 3, 4)])


# ============================================================================ Dropout2d


def test_dropout2d_zeroes_whole_channels_and_scales_the_rest() -> None:
    sz.manual_seed(0)
    x = sz.tensor(rand(8, 16, 5, 4) + 10.0, requires_grad=True)  # no entry is 0 by chance
    y = nn.Dropout2d(0.25)(x)
    per_channel = y.data.reshape(8, 16, -1)
    dropped = np.all(per_channel == 0, axis=2)
    kept = np.all(np.isclose(per_channel, x.data.reshape(8, 16, -1) / 0.75), axis=2)
    assert np.all(dropped | kept)  # every channel entirely dropped or entirely kept (and rescaled)
    assert 0 < dropped.sum() < dropped.size
    y.backward(np.ones(y.shape))
    np.testing.assert_allclose(x.grad, (y.data != 0) / 0.75)  # the same mask and scale go backward


def test_dropout2d_is_the_identity_in_eval_and_with_p_0() -> None:
    x = sz.tensor(rand(2, 3, 4, 4))
    layer = nn.Dropout2d(0.5).eval()
    assert layer(x) is x
    assert F.dropout2d(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout2d(x, 1.0).data, 0.0)


# ============================================================================ repr and errors


@pytest.mark.parametrize("make", [lambda m: m.AvgPool2d(3, 2, 1), lambda m: m.AdaptiveAvgPool2d((2, 3)),
                                  lambda m: m.AdaptiveAvgPool1d(4),
                                  lambda m: m.Upsample(scale_factor=2, mode="bilinear"),
                                  lambda m: m.Upsample(size=(4, 5))],
                         ids=["AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveAvgPool1d", "Upsample-scale", "Upsample-size"])
def test_repr_matches_torch(make: Any) -> None:
    assert repr(make(nn)) == repr(make(torch.nn))


def test_maxpool_repr_names_its_window() -> None:
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1)"


def test_wrong_inputs_are_clear_errors() -> None:
    with pytest.raises(ShapeError, match=r"MaxPool2d\(.*\) expected 4-D input \(N, C, H, W\), got shape \(3, 8, 8\)"):
        nn.MaxPool2d(2)(sz.zeros(3, 8, 8))
    with pytest.raises(ShapeError, match=r"expected 3-D input \(N, C, L\)"):
        nn.MaxPool1d(2)(sz.zeros(2, 3, 8, 8))
    with pytest.raises(ShapeError, match="too small"):
        F.max_pool2d(sz.zeros(1, 1, 2, 8), 3)
    with pytest.raises(ValueError, match="at most half the kernel"):
        F.max_pool2d(sz.zeros(1, 1, 8, 8), 2, padding=2)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        nn.Upsample()
    with pytest.raises(ShapeError, match="'bilinear' takes a 4-D input"):
        F.interpolate(sz.zeros(1, 2, 5), scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match="align_corners"):
        F.interpolate(sz.zeros(1, 2, 5, 5), scale_factor=2, align_corners=True)
    with pytest.raises(ShapeError, match="4-D input"):
        nn.Dropout2d()(sz.zeros(2, 3))


def test_too_small_an_input_names_the_pooling_layer() -> None:
    with pytest.raises(ShapeError, match=r"^MaxPool2d\(kernel_size=3, stride=3, padding=0, dilation=1\) expected an "
                                         r"input of spatial size at least \(3, 3\) .* got \(2, 8\): too small"):
        nn.MaxPool2d(3)(sz.zeros(1, 1, 2, 8))
    with pytest.raises(ShapeError, match=r"^MaxPool1d\(.*\) expected an input of spatial size at least \(5,\)"):
        nn.MaxPool1d(3, dilation=2)(sz.zeros(1, 1, 4))
    with pytest.raises(ShapeError, match=r"^AvgPool2d\(.*\) expected an input of spatial size at least \(4, 4\)"):
        nn.AvgPool2d(4)(sz.zeros(1, 1, 3, 8))
    with pytest.raises(ShapeError, match=r"^max_pool2d: expected"):  # the op itself keeps its name
        F.max_pool2d(sz.zeros(1, 1, 2, 8), 3)


def test_dropout2d_layer_gradcheck_with_the_mask_fixed_by_the_seed() -> None:
    layer = nn.Dropout2d(0.4)

    def fn(x):
        sz.manual_seed(7)  # the same mask on every call
        return layer(x)
    dropped = fn(sz.tensor(np.ones((3, 4, 2, 3)))).data == 0
    assert dropped.any() and not dropped.all()  # the mask both keeps and drops: the check is not trivial
    gradcheck(fn, [rand(3, 4, 2, 3)])


def test_dropout2d_rejects_a_bad_probability_naming_the_layer() -> None:
    with pytest.raises(ValueError, match=r"Dropout2d: probability must lie in \[0, 1\], got 1.5"):
        nn.Dropout2d(1.5)
