"""Convolutions: Conv1d, Conv2d, ConvTranspose2d and their ops against PyTorch (forward, input and parameter
gradients, float32 and float64) for every option, finite differences in float64, the loop reference
conv2d_naive, state-dict interchange both ways, default initialisation, repr and clear errors."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo import nn
from scratchzoo.autograd import DTypeError, ShapeError

from helpers import assert_close, assert_matches_torch, gradcheck, rand

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])

# torch warns that its own 'same' padding with an even kernel copies the input; not our concern here
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

CONV2D_CASES = {  # name: (in, out, kernel, options); the input is (2, in, 9, 7): odd and not square
    "basic": (3, 8, 3, {}),
    "stride2-pad1": (3, 8, 3, {"stride": 2, "padding": 1}),
    "dilation2": (3, 4, 3, {"dilation": 2, "padding": 1}),
    "groups2": (4, 6, 3, {"groups": 2, "padding": 1}),
    "depthwise": (4, 8, 3, {"groups": 4, "padding": 1}),
    "same-odd": (3, 5, 3, {"padding": "same"}),
    "same-even-dilated": (3, 5, (4, 2), {"padding": "same", "dilation": (1, 2)}),
    "valid": (3, 5, (2, 3), {"padding": "valid"}),
    "tuples": (3, 4, (3, 2), {"stride": (2, 1), "padding": (1, 2), "dilation": (1, 2)}),
    "no-bias": (3, 4, 3, {"bias": False, "stride": 3}),
    "1x1": (3, 6, 1, {}),
    "wide": (16, 32, 3, {"padding": 1}),  # K*O = 144*32 > 4096: dW as one product, not per sample
}


@DTYPES
@pytest.mark.parametrize("case", CONV2D_CASES, ids=str)
def test_conv2d_matches_torch(case: str, dtype: Any) -> None:
    cin, cout, k, options = CONV2D_CASES[case]
    assert_matches_torch(nn.Conv2d(cin, cout, k, **options), torch.nn.Conv2d(cin, cout, k, **options),
                         [rand(2, cin, 9, 7)], dtype=dtype)


CONV1D_CASES = {
    "basic": (3, 5, 3, {}),
    "stride2-pad1": (3, 5, 3, {"stride": 2, "padding": 1}),
    "dilation2": (3, 4, 3, {"dilation": 2}),
    "groups": (4, 6, 3, {"groups": 2, "padding": 2}),
    "depthwise": (4, 4, 5, {"groups": 4, "padding": "same"}),
    "same-even": (3, 4, 4, {"padding": "same"}),
    "valid-no-bias": (3, 4, 2, {"padding": "valid", "bias": False}),
}


@DTYPES
@pytest.mark.parametrize("case", CONV1D_CASES, ids=str)
def test_conv1d_matches_torch(case: str, dtype: Any) -> None:
    cin, cout, k, options = CONV1D_CASES[case]
    assert_matches_torch(nn.Conv1d(cin, cout, k, **options), torch.nn.Conv1d(cin, cout, k, **options),
                         [rand(2, cin, 11)], dtype=dtype)


TRANSPOSED_CASES = {
    "basic": (3, 4, 3, {}),
    "stride2-pad1-outpad1": (3, 4, 3, {"stride": 2, "padding": 1, "output_padding": 1}),
    "stride2-kernel2": (4, 2, 2, {"stride": 2}),
    "groups2": (4, 6, 3, {"groups": 2, "stride": 2}),
    "dilation2": (3, 2, 3, {"dilation": 2, "padding": 1}),
    "tuples": (3, 4, (3, 2), {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2)}),
    "outpad-below-dilation": (2, 3, 3, {"dilation": 3, "output_padding": 2}),
    "no-bias": (3, 4, 3, {"bias": False, "stride": 2}),
    "wide": (32, 16, 3, {"stride": 2}),  # dW as one product (K*O > 4096)
}


@DTYPES
@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=str)
def test_conv_transpose2d_matches_torch(case: str, dtype: Any) -> None:
    cin, cout, k, options = TRANSPOSED_CASES[case]
    assert_matches_torch(nn.ConvTranspose2d(cin, cout, k, **options),
                         torch.nn.ConvTranspose2d(cin, cout, k, **options), [rand(2, cin, 5, 4)], dtype=dtype)


@DTYPES
def test_functional_convolutions_take_weights_as_inputs(dtype: Any) -> None:
    """The ops alone, weight and bias as differentiable inputs (as a model sharing kernels would use them)."""
    assert_matches_torch(F.conv2d, TF.conv2d, [rand(2, 4, 6, 5), rand(6, 2, 3, 3), rand(6), (2, 1), 1, 1, 2],
                         dtype=dtype)
    assert_matches_torch(F.conv1d, TF.conv1d, [rand(2, 4, 9), rand(2, 4, 3), None, 2, "valid"], dtype=dtype)
    assert_matches_torch(F.conv_transpose2d, TF.conv_transpose2d,
                         [rand(2, 4, 3, 3), rand(4, 3, 3, 3), rand(3), 2, 1, 1], dtype=dtype)


def test_conv_layers_run_in_float32_by_default_and_follow_double() -> None:
    conv = nn.Conv2d(2, 3, 3)
    assert conv.weight.dtype == np.float32 and conv(sz.tensor(rand(1, 2, 5, 5).astype(np.float32))).dtype == np.float32
    conv.double()
    assert conv(sz.tensor(rand(1, 2, 5, 5))).dtype == np.float64


# ============================================================================ finite differences


def test_conv2d_gradcheck() -> None:
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, dilation=(1, 2), groups=2),
              [rand(2, 4, 5, 6), rand(4, 2, 3, 2), rand(4)])


def test_conv2d_same_even_kernel_gradcheck() -> None:
    gradcheck(lambda x, w: F.conv2d(x, w, padding="same"), [rand(1, 2, 4, 5), rand(3, 2, 2, 4)])


def test_conv1d_gradcheck() -> None:
    gradcheck(lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=2, dilation=2, groups=3),
              [rand(2, 3, 9), rand(6, 1, 3), rand(6)])


def test_conv_transpose2d_gradcheck() -> None:
    gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2),
              [rand(1, 4, 3, 2), rand(4, 1, 3, 2), rand(2)])


# ============================================================================ the loop reference


@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 1), (2, 1), (3, 2)])
def test_conv2d_naive_equals_the_fast_op(stride: int, padding: int) -> None:
    x, w, b = rand(2, 3, 9, 7), rand(4, 3, 3, 2), rand(4)
    expected = F.conv2d(sz.tensor(x), sz.tensor(w), sz.tensor(b), stride=stride, padding=padding)
    got = F.conv2d_naive(x, w, b, stride=stride, padding=padding)
    out_h, out_w = (9 + 2 * padding - 3) // stride + 1, (7 + 2 * padding - 2) // stride + 1
    assert got.shape == expected.shape == (2, 4, out_h, out_w)
    assert_close("conv2d_naive", got, expected.data, 1e-12, 1e-12)
    assert_close("conv2d_naive without bias", F.conv2d_naive(x, w, stride=stride, padding=padding),
                 F.conv2d(sz.tensor(x), sz.tensor(w), stride=stride, padding=padding).data, 1e-12, 1e-12)


# ============================================================================ state dicts and init


@pytest.mark.parametrize("make", [lambda m: m.Conv2d(3, 8, 3), lambda m: m.Conv1d(4, 6, 5, groups=2),
                                  lambda m: m.ConvTranspose2d(4, 6, 3, groups=2, stride=2, output_padding=1)],
                         ids=["Conv2d", "Conv1d", "ConvTranspose2d"])
def test_state_dict_moves_from_ours_to_torch_with_equal_outputs(make: Any) -> None:
    sz.manual_seed(0)
    ours, theirs = make(nn), make(torch.nn)
    state = ours.state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    x = rand(2, theirs.in_channels, 6, 5)[..., 0] if isinstance(ours, nn.Conv1d) else rand(2, theirs.in_channels, 6, 5)
    x = x.astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    assert_close("output", ours(sz.tensor(x)).data, expected, 1e-5, 1e-6)


def test_weight_shapes_follow_torch() -> None:
    assert nn.Conv2d(6, 8, (3, 2), groups=2).weight.shape == (8, 3, 3, 2)
    assert nn.Conv1d(6, 9, 5, groups=3).weight.shape == (9, 2, 5)
    assert nn.ConvTranspose2d(6, 8, 3, groups=2).weight.shape == (6, 4, 3, 3)
    assert nn.Conv2d(3, 8, 3).bias.shape == (8,) and nn.Conv2d(3, 8, 3, bias=False).bias is None
    assert [name for name, _ in nn.Conv2d(3, 8, 3).named_parameters()] == ["weight", "bias"]


@pytest.mark.parametrize("layer, fan_in", [(lambda: nn.Conv2d(16, 32, 3), 16 * 9),
                                           (lambda: nn.Conv2d(16, 32, 3, groups=4), 4 * 9),
                                           (lambda: nn.ConvTranspose2d(16, 32, 3), 32 * 9)],
                         ids=["conv", "grouped", "transposed"])
def test_default_init_is_torch_s_uniform_with_bound_one_over_sqrt_fan_in(layer: Any, fan_in: int) -> None:
    sz.manual_seed(0)
    conv = layer()
    bound = 1 / math.sqrt(fan_in)
    for p in (conv.weight.data, conv.bias.data):
        assert np.abs(p).max() <= bound
    assert abs(conv.weight.data.std() - bound / math.sqrt(3)) < 0.05 * bound  # the std of U(-b, b)
    sz.manual_seed(0)
    np.testing.assert_array_equal(layer().weight.data, conv.weight.data)  # reproducible under manual_seed


@pytest.mark.parametrize("make", [
    lambda m: m.Conv2d(3, 8, 3),
    lambda m: m.Conv2d(3, 8, (3, 2), stride=2, padding=1, dilation=2, groups=1, bias=False),
    lambda m: m.Conv2d(4, 8, 3, padding="same", groups=2),
    lambda m: m.Conv1d(4, 8, 5, stride=2, padding="valid"),
    lambda m: m.ConvTranspose2d(4, 8, 3, stride=2, padding=1, output_padding=1, groups=4),
], ids=["Conv2d", "Conv2d-options", "Conv2d-same", "Conv1d", "ConvTranspose2d"])
def test_repr_matches_torch(make: Any) -> None:
    assert repr(make(nn)) == repr(make(torch.nn))


# ============================================================================ errors


def test_wrong_channels_name_the_layer_and_the_expected_layout() -> None:
    with pytest.raises(ShapeError, match=r"Conv2d\(3->8, k=3\) expected 4-D input \(N, C, H, W\) with 3 channels, "
                                         r"got shape \(2, 4, 9, 9\)"):
        nn.Conv2d(3, 8, 3)(sz.zeros(2, 4, 9, 9))
    with pytest.raises(ShapeError, match=r"Conv2d\(3->8, k=3\) expected 4-D input .* got shape \(3, 9, 9\)"):
        nn.Conv2d(3, 8, 3)(sz.zeros(3, 9, 9))
    with pytest.raises(ShapeError, match=r"Conv1d\(2->4, k=5\) expected 3-D input \(N, C, L\) with 2 channels"):
        nn.Conv1d(2, 4, 5)(sz.zeros(1, 3, 9))
    with pytest.raises(ShapeError, match=r"ConvTranspose2d\(2->4, k=\(3, 2\)\) expected 4-D input"):
        nn.ConvTranspose2d(2, 4, (3, 2))(sz.zeros(1, 3, 9, 9))


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="not supported for strided"):
        nn.Conv2d(3, 8, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="not supported for strided"):
        F.conv2d(sz.zeros(1, 3, 5, 5), sz.zeros(2, 3, 3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 8, 3, groups=2)
    with pytest.raises(ValueError, match="padding must be"):
        nn.Conv2d(3, 8, 3, padding="full")
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 8, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="output_padding"):
        nn.ConvTranspose2d(3, 8, 3, stride=2, output_padding=2)
    with pytest.raises(ShapeError, match="too small"):
        nn.Conv2d(3, 8, 5)(sz.zeros(1, 3, 4, 9))
    with pytest.raises(ShapeError, match="does not fit a weight"):
        F.conv2d(sz.zeros(1, 4, 5, 5), sz.zeros(2, 3, 3, 3))
    with pytest.raises(ShapeError, match="bias of shape"):
        F.conv2d(sz.zeros(1, 3, 5, 5), sz.zeros(2, 3, 3, 3), sz.zeros(3))


def test_mixing_float32_and_float64_is_a_clear_error() -> None:
    with pytest.raises(DTypeError, match=r"Conv2d\(3->8, k=3\) has float32 parameters but got float64 input"):
        nn.Conv2d(3, 8, 3)(sz.tensor(rand(1, 3, 5, 5)))
    with pytest.raises(DTypeError, match="cannot mix"):
        F.conv2d(sz.tensor(rand(1, 3, 5, 5)), sz.zeros(2, 3, 3, 3))


@pytest.mark.parametrize("make, shape, message", [
    (lambda m: m.Conv2d(3, 8, 5), (1, 3, 4, 9),
     r"Conv2d\(3->8, k=5\) expected an input of spatial size at least \(5, 5\) for the kernel, padding and "
     r"dilation, got shape \(1, 3, 4, 9\): too small \(output size would be \(0, 5\)\)"),
    (lambda m: m.Conv2d(3, 8, 3, padding=1, dilation=3), (1, 3, 9, 4),
     r"Conv2d\(3->8, k=3\) expected an input of spatial size at least \(5, 5\)"),
    (lambda m: m.Conv1d(2, 4, 7), (1, 2, 6),
     r"Conv1d\(2->4, k=7\) expected an input of spatial size at least \(7,\) .* got shape \(1, 2, 6\)"),
    (lambda m: m.ConvTranspose2d(2, 4, 3, padding=2), (1, 2, 2, 5),
     r"ConvTranspose2d\(2->4, k=3\) expected an input of spatial size at least \(3, 3\) .* got shape \(1, 2, 2, 5\)"),
], ids=["Conv2d", "Conv2d dilated", "Conv1d", "ConvTranspose2d"])
def test_too_small_an_input_names_the_layer_expected_and_given(make: Any, shape: tuple, message: str) -> None:
    with pytest.raises(RuntimeError):
        make(torch.nn)(torch.zeros(shape))
    with pytest.raises(ShapeError, match=message):
        make(nn)(sz.zeros(*shape))


@pytest.mark.parametrize("make, smallest", [(lambda m: m.Conv2d(3, 8, 5), (5, 5)),
                                            (lambda m: m.Conv2d(3, 8, 3, padding=1, dilation=3), (5, 5)),
                                            (lambda m: m.ConvTranspose2d(2, 4, 3, padding=2), (3, 3))],
                         ids=["Conv2d", "Conv2d dilated", "ConvTranspose2d"])
def test_the_smallest_size_the_error_names_is_accepted(make: Any, smallest: tuple) -> None:
    layer = make(nn)
    channels = layer.in_channels
    assert min(layer(sz.zeros(1, channels, *smallest)).shape[2:]) == 1
    assert min(make(torch.nn)(torch.zeros(1, channels, *smallest)).shape[2:]) == 1


def test_the_functional_op_keeps_its_own_name() -> None:
    with pytest.raises(ShapeError, match=r"^conv2d: expected an input of spatial size at least \(5, 5\)"):
        F.conv2d(sz.zeros(1, 3, 4, 9), sz.zeros(8, 3, 5, 5))
