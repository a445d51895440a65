"""Pooling and resizing layers: MaxPool1d/2d, AvgPool2d, AdaptiveAvgPool1d/2d, Upsample, Dropout2d.

Pooling gathers ("pools") each window of a feature map into one number: the strongest response (max)
or the average. It shrinks the map, keeps every channel, learns nothing, and makes the next layer's
kernels see a larger part of the input. Adaptive pooling picks the windows itself so the output has a
fixed size whatever the input size: AdaptiveAvgPool2d(1) turns each channel into its mean, one number
per feature, ready for a Linear classifier.
"""
from __future__ import annotations

from typing import Any

from scratchzoo import functional as F
from scratchzoo.autograd import ShapeError, Tensor
from scratchzoo.functional.layers import check_probability
from scratchzoo.nn.module import Module, check_input, op_errors

_LAYOUTS = {3: "(N, C, L)", 4: "(N, C, H, W)"}


def _check_rank(layer: Module, x: Any, ndims: tuple[int, ...]) -> None:
    check_input(layer, x)
    if x.ndim not in ndims:
        expected = " or ".join(f"{n}-D input {_LAYOUTS[n]}" for n in ndims)
        raise ShapeError(f"{layer.describe()} expected {expected}, got shape {x.shape}")


class _MaxPoolNd(Module):
    _nd = 2

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride  # as PyTorch: stride defaults to the window
        self.padding, self.dilation = padding, dilation

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}"

    def forward(self, x: Tensor) -> Tensor:
        _check_rank(self, x, (self._nd + 2,))
        pool = F.max_pool1d if self._nd == 1 else F.max_pool2d
        with op_errors(self, pool.__name__):
            return pool(x, self.kernel_size, self.stride, self.padding, self.dilation)


class MaxPool1d(_MaxPoolNd):
    """Maximum over each window of (N, C, L); the gradient goes to the arg-max only."""

    _nd = 1


class MaxPool2d(_MaxPoolNd):
    """Maximum over each window of (N, C, H, W): MaxPool2d(2) halves H and W and keeps the channels."""

    _nd = 2


class AvgPool2d(Module):
    """Mean over each window of (N, C, H, W); with padding, count_include_pad=True divides by the full window."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, count_include_pad: bool = True):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.count_include_pad = padding, count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        _check_rank(self, x, (4,))
        with op_errors(self, "avg_pool2d"):
            return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool1d(Module):
    """Average (N, C, L) down to (N, C, output_size) for any L."""

    def __init__(self, output_size: Any):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        _check_rank(self, x, (3,))
        with op_errors(self, "adaptive_avg_pool1d"):
            return F.adaptive_avg_pool1d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(Module):
    """Average (N, C, H, W) down to (N, C, *output_size) for any H, W (an int means a square; None keeps
    that size). AdaptiveAvgPool2d(1) is global average pooling."""

    def __init__(self, output_size: Any):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        _check_rank(self, x, (4,))
        with op_errors(self, "adaptive_avg_pool2d"):
            return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Upsample(Module):
    """Resize (N, C, L) or (N, C, H, W) to `size` or by `scale_factor`: mode 'nearest' copies pixels,
    'linear'/'bilinear' blend neighbours (align_corners as PyTorch)."""

    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: bool | None = None):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        self.size = size
        if isinstance(scale_factor, (tuple, list)):
            self.scale_factor: Any = tuple(float(s) for s in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor is not None else None
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x: Tensor) -> Tensor:
        _check_rank(self, x, (3, 4))
        with op_errors(self, "interpolate"):
            return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners)

    def extra_repr(self) -> str:
        info = f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None else f"size={self.size!r}"
        return info + f", mode={self.mode!r}"


class Dropout2d(Module):
    """In training, zero each whole channel (feature map) of (N, C, H, W) with probability p and scale
    the kept ones by 1/(1-p); identity in eval."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        check_probability("Dropout2d", p)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        _check_rank(self, x, (4,))
        return F.dropout2d(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
