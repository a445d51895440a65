"""Convolution layers: Conv1d, Conv2d, ConvTranspose2d, with PyTorch's arguments, parameter names and shapes.

A Conv2d(C_in, C_out, K) owns C_out kernels of shape (C_in/groups, K, K): each kernel slides over the
input and makes one output channel (one feature map). Channels are features: 3 colour channels in,
64 learned detectors out, each looking at every input channel of its group under a K x K window.
"""
from __future__ import annotations

import math
from typing import Any

from scratchzoo import functional as F
from scratchzoo.autograd import ShapeError, Tensor
from scratchzoo.functional.conv import _ntuple
from scratchzoo.nn import init
from scratchzoo.nn.module import Module, check_input, empty_parameter, op_errors

_LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)"}


def check_channels(layer: Module, x: Any, ndims: tuple[int, ...], channels: int) -> None:
    """Raise a clear error unless x is a float tensor with one of `ndims` dims and `channels` at dim 1.

    e.g. "Conv2d(3->8, k=3) expected 4-D input (N, C, H, W) with 3 channels, got shape (2, 4, 9, 9)".
    """
    check_input(layer, x, dtype=None)
    if x.ndim not in ndims or x.shape[1] != channels:
        expected = " or ".join(f"{n}-D input {_LAYOUTS.get(n - 2, '(N, C)')}" for n in ndims)
        raise ShapeError(f"{layer.describe()} expected {expected} with {channels} channels, got shape {x.shape}")
    check_input(layer, x)  # float, and the dtype of the layer's parameters


class _ConvNd(Module):
    """What Conv1d, Conv2d and ConvTranspose2d share: arguments, checks, initialisation and repr."""

    def __init__(self, nd: int, in_channels: int, out_channels: int, kernel_size: Any, stride: Any, padding: Any,
                 dilation: Any, groups: int, bias: bool, padding_mode: str, transposed: bool,
                 output_padding: Any = 0):
        super().__init__()
        name = type(self).__name__
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                             f"divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is implemented, got {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _ntuple(kernel_size, nd, "kernel_size", name)
        self.stride = _ntuple(stride, nd, "stride", name)
        self.dilation = _ntuple(dilation, nd, "dilation", name)
        self.output_padding = _ntuple(output_padding, nd, "output_padding", name)
        self.padding_mode, self.transposed, self.nd = padding_mode, transposed, nd
        if isinstance(padding, str):
            if padding not in ("same", "valid") or transposed:
                raise ValueError(f"{name}: padding must be an int or a tuple" +
                                 ("" if transposed else ", 'same' or 'valid'") + f", got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions")
            self.padding: Any = padding
        else:
            self.padding = _ntuple(padding, nd, "padding", name)
        # Conv: (out, in/groups, *kernel); transposed: (in, out/groups, *kernel), as PyTorch.
        shape = (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
        self.weight = empty_parameter(*shape, *self.kernel_size)
        if bias:
            self.bias = empty_parameter(out_channels)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias U(+-1/sqrt(fan_in))."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            init.default_bias_(self.bias, self.weight)

    def _check(self, x: Tensor) -> None:
        check_channels(self, x, (self.nd + 2,), self.in_channels)

    def describe(self) -> str:
        k = self.kernel_size[0] if len(set(self.kernel_size)) == 1 else self.kernel_size
        return f"{type(self).__name__}({self.in_channels}->{self.out_channels}, k={k})"

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self.nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self.nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self.nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv1d(_ConvNd):
    """1-D convolution over (N, C_in, L) -> (N, C_out, L_out); weight (C_out, C_in/groups, K)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros"):
        super().__init__(1, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, transposed=False)

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        with op_errors(self, "conv1d"):
            return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv2d(_ConvNd):
    """2-D convolution over (N, C_in, H, W) -> (N, C_out, OH, OW); weight (C_out, C_in/groups, KH, KW).

    OH = (H + 2*padding - dilation*(KH - 1) - 1) // stride + 1 (likewise OW); padding='same' keeps H, W.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros"):
        super().__init__(2, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, transposed=False)

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        with op_errors(self, "conv2d"):
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    """Transposed convolution (N, C_in, H, W) -> (N, C_out, OH, OW), the upsampling layer of decoders.

    OH = (H - 1)*stride - 2*padding + dilation*(KH - 1) + output_padding + 1; weight (C_in, C_out/groups,
    KH, KW). It is the gradient of a Conv2d with respect to its input, used as a layer.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, groups: int = 1, bias: bool = True, dilation: Any = 1,
                 padding_mode: str = "zeros"):
        super().__init__(2, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, transposed=True, output_padding=output_padding)
        if any(not 0 <= p < max(s, d) for p, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} must be smaller than stride "
                             f"{self.stride} or dilation {self.dilation}")

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        with op_errors(self, "conv_transpose2d"):
            return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                      self.groups, self.dilation)
