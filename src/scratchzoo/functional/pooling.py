"""Pooling and resizing: max/average pooling, adaptive average pooling, interpolation, channel dropout.

Pooling is a convolution without weights: the same sliding window (kernel, stride, padding, dilation,
the same output-size formula as conv2d), but each window is summarised by its maximum or its mean, and
each channel on its own, so the number of channels never changes. The sliding-window ops here loop over
the KH*KW kernel taps (never over pixels): tap (i, j) of every window at once is one strided slice.

Adaptive pooling and interpolation are linear maps applied to each spatial axis separately (an
(out, in) matrix along H, another along W); their gradients are the transposed maps.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor
from scratchzoo.functional._base import as_tensor
from scratchzoo.functional.layers import apply_dropout, dropout_mask
from scratchzoo.functional.conv import _ntuple
from scratchzoo.functional.shape import squeeze, unsqueeze


def _tap(a: np.ndarray, i: int, j: int, out_hw: tuple[int, int], stride: tuple[int, int],
         dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """The strided view of a (N, C, H, W) holding kernel tap (i, j) of every window: shape (N, C, OH, OW)."""
    (oh, ow), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return a[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]


def _pad(x: np.ndarray, padding: tuple[int, int], value: float) -> np.ndarray:
    ph, pw = padding
    if not ph and not pw:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _pool_out_size(op: str, x_hw: Sequence[int], kernel: tuple[int, int], stride: tuple[int, int],
                   padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """out = (in + 2*padding - dilation*(kernel-1) - 1) // stride + 1, as for a convolution."""
    if min(kernel + stride + dilation) < 1:
        raise ValueError(f"{op}: kernel_size, stride and dilation must be positive, got {kernel}, {stride}, {dilation}")
    if any(p < 0 or p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{op}: padding {padding} must be at least 0 and at most half the kernel size {kernel}")
    out = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in zip(x_hw, kernel, stride, padding,
                                                                               dilation))
    if min(out) < 1:
        smallest = tuple(max(1, d * (k - 1) + 1 - 2 * p) for k, p, d in zip(kernel, padding, dilation))
        raise ShapeError(f"{op}: expected an input of spatial size at least {smallest} for kernel {kernel}, "
                         f"padding {padding} and dilation {dilation}, got {tuple(x_hw)}: too small")
    return out  # type: ignore[return-value]


def _zeros_like_layout(shape: tuple[int, ...], dtype: np.dtype, channels_last: bool) -> np.ndarray:
    """Zeros of an (N, C, H, W) shape, laid out channels-last in memory when the input was (as a conv's output)."""
    if channels_last:
        n, c, h, w = shape
        return np.zeros((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)
    return np.zeros(shape, dtype=dtype)


def _is_channels_last(x: np.ndarray) -> bool:
    return not x.flags.c_contiguous and x.transpose(0, 2, 3, 1).flags.c_contiguous


def _blocks(a: np.ndarray, kernel: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Non-overlapping windows as a view: (N, C, H, W) -> (N, C, OH, KH, OW, KW) (extra rows/cols cut)."""
    (kh, kw), (oh, ow) = kernel, out_hw
    return a[:, :, :oh * kh, :ow * kw].reshape(a.shape[0], a.shape[1], oh, kh, ow, kw)


# ============================================================================ max pooling


class MaxPool2dOp(Function):
    """y = max over each window;  dx = dy routed to the window's arg-max (the first one on ties, as PyTorch).

    Forward keeps a running maximum over the kernel taps and, per output pixel, the index of the tap
    that won; backward sends each dy to that tap only. Every step is a whole-array operation in the
    input's own memory order (channels-last after a convolution).
    """

    def forward(self, x, kernel, stride, padding, dilation):
        self.x_shape, self.kernel, self.stride, self.padding, self.dilation = x.shape, kernel, stride, padding, dilation
        self.out_hw = out_hw = _pool_out_size("max_pool2d", x.shape[2:], kernel, stride, padding, dilation)
        self.channels_last = _is_channels_last(x)  # the gradient gets the input's memory order
        padded = _pad(x, padding, -np.inf)
        taps = kernel[0] * kernel[1]
        best = _tap(padded, 0, 0, out_hw, stride, dilation).copy(order="K")
        index_type = np.int8 if taps < 128 else np.int32
        self.argmax = np.zeros_like(best, dtype=index_type)
        check_nan = bool(np.isnan(x).any())  # a NaN wins, as in PyTorch (checked once: NaNs are rare)
        for k in range(1, taps):
            tap = _tap(padded, *divmod(k, kernel[1]), out_hw, stride, dilation)
            better = tap > best  # strict: an equal later tap does not replace the first maximum
            if check_nan:
                better |= np.isnan(tap)
            np.maximum(best, tap, out=best)
            self.argmax += better * (index_type(k) - self.argmax)  # = where(better, k, argmax), but vectorised
        return best

    def backward(self, grad):
        (kh, kw), (ph, pw) = self.kernel, self.padding
        n, c, h, w = self.x_shape
        grad_padded = _zeros_like_layout((n, c, h + 2 * ph, w + 2 * pw), grad.dtype, self.channels_last)
        # Each tap's slice gets dy where that tap won. Windows that cannot overlap write, others add.
        disjoint = self.dilation == (1, 1) and all(s >= k for s, k in zip(self.stride, self.kernel))
        for k in range(kh * kw):
            tap = _tap(grad_padded, *divmod(k, kw), self.out_hw, self.stride, self.dilation)
            routed = grad * (self.argmax == k)
            if disjoint:
                tap[...] = routed
            else:
                tap += routed
        return grad_padded[:, :, ph:ph + h, pw:pw + w]


def _checked_input(op: str, x: Any, nd: int) -> Tensor:
    """A floating (N, C, L) or (N, C, H, W) tensor, or a clear error naming the op."""
    x = as_tensor(x)
    layout = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
    if x.ndim != nd + 2:
        raise ShapeError(f"{op}: expected a {nd + 2}-D input {layout}, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise DTypeError(f"{op}: needs a floating-point tensor, got {x.dtype}")
    return x


def _pool_args(op: str, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, nd: int) -> tuple:
    x = _checked_input(op, x, nd)
    kernel = _ntuple(kernel_size, nd, "kernel_size", op)
    stride = kernel if stride is None or stride == () else _ntuple(stride, nd, "stride", op)
    return x, kernel, stride, _ntuple(padding, nd, "padding", op), _ntuple(dilation, nd, "dilation", op)


def max_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1) -> Tensor:
    """Maximum over each KH x KW window of x (N, C, H, W); stride defaults to the kernel size, padding
    counts as -inf (never the maximum). Output size as conv2d's."""
    x, kernel, stride, padding, dilation = _pool_args("max_pool2d", x, kernel_size, stride, padding, dilation, 2)
    return MaxPool2dOp.apply(x, kernel=kernel, stride=stride, padding=padding, dilation=dilation)


def max_pool1d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1) -> Tensor:
    """Maximum over each window of x (N, C, L): max_pool2d on the image (N, C, 1, L)."""
    x, (k,), (s,), (p,), (d,) = _pool_args("max_pool1d", x, kernel_size, stride, padding, dilation, 1)
    _pool_out_size("max_pool1d", x.shape[2:], (k,), (s,), (p,), (d,))  # errors in 1-D terms
    return squeeze(max_pool2d(unsqueeze(x, 2), (1, k), (1, s), (0, p), (1, d)), 2)


# ============================================================================ average pooling


class AvgPool2dOp(Function):
    """y = mean of each window (padding zeros counted when count_include_pad);  dx = dy / count, spread
    over the window. Non-overlapping windows (stride = kernel, no padding) use one reshape-mean."""

    def forward(self, x, kernel, stride, padding, count_include_pad):
        self.x_shape, self.kernel, self.stride, self.padding = x.shape, kernel, stride, padding
        self.out_hw = out_hw = _pool_out_size("avg_pool2d", x.shape[2:], kernel, stride, padding, (1, 1))
        self.blockwise = stride == kernel and padding == (0, 0)
        self.channels_last = _is_channels_last(x)
        if self.blockwise:
            return _blocks(x, kernel, out_hw).mean(axis=(3, 5))
        padded = _pad(x, padding, 0.0)
        total = _tap(padded, 0, 0, out_hw, stride).copy(order="K")
        for k in range(1, kernel[0] * kernel[1]):
            total += _tap(padded, *divmod(k, kernel[1]), out_hw, stride)
        self.count = self._count(x.shape[2:], count_include_pad).astype(x.dtype)
        return total / self.count

    def _count(self, x_hw: Sequence[int], count_include_pad: bool) -> np.ndarray:
        """How many values each window averages: KH*KW, or only those inside the image."""
        if count_include_pad:
            return np.asarray(self.kernel[0] * self.kernel[1])
        inside = []
        for n, k, s, p, o in zip(x_hw, self.kernel, self.stride, self.padding, self.out_hw):
            start = np.arange(o) * s - p  # first row (col) of each window, in image coordinates
            inside.append(np.minimum(start + k, n) - np.maximum(start, 0))
        return inside[0][:, None] * inside[1][None, :]

    def backward(self, grad):
        (kh, kw), (ph, pw), out_hw = self.kernel, self.padding, self.out_hw
        n, c, h, w = self.x_shape
        if self.blockwise:
            grad_x = _zeros_like_layout(self.x_shape, grad.dtype, self.channels_last)
            _blocks(grad_x, self.kernel, out_hw)[...] = (grad / grad.dtype.type(kh * kw))[:, :, :, None, :, None]
            return grad_x
        share = grad / self.count
        grad_padded = _zeros_like_layout((n, c, h + 2 * ph, w + 2 * pw), grad.dtype, self.channels_last)
        for k in range(kh * kw):
            _tap(grad_padded, *divmod(k, kw), out_hw, self.stride)[...] += share
        return grad_padded[:, :, ph:ph + h, pw:pw + w]


def avg_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               count_include_pad: bool = True) -> Tensor:
    """Mean over each KH x KW window of x (N, C, H, W); stride defaults to the kernel size. With padding,
    count_include_pad=True (PyTorch's default) divides by KH*KW, False by the number of real pixels."""
    x, kernel, stride, padding, _ = _pool_args("avg_pool2d", x, kernel_size, stride, padding, 1, 2)
    return AvgPool2dOp.apply(x, kernel=kernel, stride=stride, padding=padding,
                             count_include_pad=bool(count_include_pad))


# ============================================================================ separable linear maps


def _along(a: np.ndarray, matrix: np.ndarray, axis: int) -> np.ndarray:
    """out[..., o, ...] = sum_i matrix[o, i] * a[..., i, ...] along `axis`: one matrix product."""
    moved = np.moveaxis(a, axis, -1)
    out = moved.reshape(-1, moved.shape[-1]) @ matrix.T
    return np.moveaxis(out.reshape(moved.shape[:-1] + (matrix.shape[0],)), -1, axis)


class SeparableResample(Function):
    """y = A_H x A_W^T (and y = x A_L^T in 1-D): an (out, in) matrix along each spatial axis.

    Linear, so dx = A_H^T dy A_W: the same products with the transposed matrices. Adaptive average
    pooling and linear/bilinear interpolation are both of this form; only their matrices differ.
    """

    def forward(self, x, matrices):
        self.matrices = matrices
        for k, matrix in enumerate(matrices):
            x = _along(x, matrix.astype(x.dtype, copy=False), 2 + k)
        return x

    def backward(self, grad):
        for k, matrix in enumerate(self.matrices):
            grad = _along(grad, matrix.T.astype(grad.dtype, copy=False), 2 + k)
        return grad


# ============================================================================ adaptive average pooling


def _adaptive_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Row i averages inputs floor(i*n_in/n_out) .. ceil((i+1)*n_in/n_out) - 1 (PyTorch's bins; they may
    overlap by one when n_out does not divide n_in)."""
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):  # a loop over output bins (few), not pixels
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def _adaptive_avg_pool(op: str, x: Any, output_size: Any, nd: int) -> Tensor:
    x = _checked_input(op, x, nd)
    if output_size is None or isinstance(output_size, (int, np.integer)):
        output_size = (output_size,) * nd
    if len(output_size) != nd:
        raise ValueError(f"{op}: output_size must be an int or a tuple of {nd}, got {output_size}")
    sizes = tuple(n if o is None else int(o) for n, o in zip(x.shape[2:], output_size))  # None keeps the size
    if min(sizes) < 1:
        raise ValueError(f"{op}: output_size must be positive, got {output_size}")
    if all(n % o == 0 for n, o in zip(x.shape[2:], sizes)):
        # Equal bins: average pooling with kernel = stride = in/out (a reshape-mean).
        kernel = tuple(n // o for n, o in zip(x.shape[2:], sizes))
        if nd == 1:
            return squeeze(AvgPool2dOp.apply(unsqueeze(x, 2), kernel=(1,) + kernel, stride=(1,) + kernel,
                                             padding=(0, 0), count_include_pad=True), 2)
        return AvgPool2dOp.apply(x, kernel=kernel, stride=kernel, padding=(0, 0), count_include_pad=True)
    matrices = tuple(_adaptive_matrix(n, o) for n, o in zip(x.shape[2:], sizes))
    return SeparableResample.apply(x, matrices=matrices)


def adaptive_avg_pool2d(x: Tensor, output_size: Any) -> Tensor:
    """Average x (N, C, H, W) down to (N, C, *output_size) whatever H and W: bin i along H covers rows
    floor(i*H/out) .. ceil((i+1)*H/out) - 1. output_size=1 is the global average (one number per channel)."""
    return _adaptive_avg_pool("adaptive_avg_pool2d", x, output_size, 2)


def adaptive_avg_pool1d(x: Tensor, output_size: Any) -> Tensor:
    """Average x (N, C, L) down to (N, C, output_size) with PyTorch's bins."""
    return _adaptive_avg_pool("adaptive_avg_pool1d", x, output_size, 1)


# ============================================================================ interpolation


def _linear_matrix(n_in: int, n_out: int, scale: float | None, align_corners: bool, dtype: np.dtype) -> np.ndarray:
    """Row i mixes the two inputs around source position src(i) with weights (1 - frac, frac).

    align_corners=True: the corner pixels' centres line up, src = i * (in - 1) / (out - 1).
    align_corners=False: pixel areas line up, src = (i + 0.5) * in/out - 0.5, clamped at 0.
    (Computed in the input's precision, as PyTorch does.)
    """
    if align_corners:
        step = dtype.type((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        src = np.arange(n_out, dtype=dtype) * step
    else:
        step = dtype.type(1.0 / scale) if scale else dtype.type(n_in) / dtype.type(n_out)
        src = np.maximum((np.arange(n_out, dtype=dtype) + dtype.type(0.5)) * step - dtype.type(0.5), 0)
    low = np.minimum(src.astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = src - low
    matrix = np.zeros((n_out, n_in), dtype=dtype)
    rows = np.arange(n_out)
    matrix[rows, low] += 1 - frac  # each row once per statement; low == high at the border sums to 1
    matrix[rows, high] += frac
    return matrix


def _nearest_source(n_in: int, n_out: int, scale: float | None) -> np.ndarray:
    """Output i copies input floor(i * in/out) (or floor(i / scale_factor)), in float32 as PyTorch."""
    step = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * step).astype(np.int64), n_in - 1)


class NearestOp(Function):
    """y copies input pixel src(i) along each axis (src non-decreasing);  dx sums dy over the copies."""

    def forward(self, x, sources):
        self.sources, self.x_shape = sources, x.shape
        for k, src in enumerate(sources):
            x = np.take(x, src, axis=2 + k)
        return x

    def backward(self, grad):
        for k, src in enumerate(self.sources):
            axis, n_in = 2 + k, self.x_shape[2 + k]
            counts = np.bincount(src, minlength=n_in)  # how many outputs copied each input
            used = np.flatnonzero(counts)
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[used]  # copies sit side by side
            summed = np.add.reduceat(grad, starts, axis=axis)
            shape = list(grad.shape)
            shape[axis] = n_in
            full = np.zeros(shape, dtype=grad.dtype)
            index = [slice(None)] * grad.ndim
            index[axis] = used
            full[tuple(index)] = summed  # inputs no output copied (downsampling) get zero
            grad = full
        return grad


_MODES = {"nearest": (1, 2), "linear": (1,), "bilinear": (2,)}


def interpolate(x: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                align_corners: bool | None = None) -> Tensor:
    """Resize x (N, C, L) or (N, C, H, W) to `size`, or by `scale_factor` (out = floor(in * scale)).

    mode 'nearest' copies the nearest pixel; 'linear' (3-D) and 'bilinear' (4-D) blend the two (2x2)
    nearest with weights given by the distance; align_corners as in PyTorch (bilinear/linear only).
    """
    x = as_tensor(x)
    if mode not in _MODES:
        raise ValueError(f"interpolate: mode must be one of {sorted(_MODES)}, got {mode!r}")
    nd = x.ndim - 2
    if nd not in _MODES[mode]:
        raise ShapeError(f"interpolate: mode {mode!r} takes a {'/'.join(str(n + 2) for n in _MODES[mode])}-D "
                         f"input, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise DTypeError(f"interpolate: needs a floating-point tensor, got {x.dtype}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("interpolate: align_corners can only be set with mode 'linear' or 'bilinear'")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    if size is not None:
        sizes, scales = _ntuple(size, nd, "size", "interpolate"), (None,) * nd
    else:
        scales = (float(scale_factor),) * nd if isinstance(scale_factor, (int, float)) else \
            tuple(float(s) for s in scale_factor)
        if len(scales) != nd:
            raise ValueError(f"interpolate: scale_factor must be a number or a tuple of {nd}, got {scale_factor}")
        sizes = tuple(math.floor(n * s) for n, s in zip(x.shape[2:], scales))
    if min(sizes) < 1:
        raise ValueError(f"interpolate: output size must be positive, got {sizes}")
    if mode == "nearest":
        sources = tuple(_nearest_source(n, o, s) for n, o, s in zip(x.shape[2:], sizes, scales))
        return NearestOp.apply(x, sources=sources)
    matrices = tuple(_linear_matrix(n, o, s, bool(align_corners), x.dtype)
                     for n, o, s in zip(x.shape[2:], sizes, scales))
    return SeparableResample.apply(x, matrices=matrices)


# ============================================================================ channel dropout


class Dropout2dOp(Function):
    """Training: y = x * m / (1 - p) with one m ~ Bernoulli(1 - p) per (sample, channel): a whole feature
    map is kept or zeroed, so E[y] = x;  dx = dy * m / (1 - p)."""

    def forward(self, x, p):
        self.scaled_mask = dropout_mask(x.shape[:2], p, x.dtype).reshape(x.shape[:2] + (1,) * (x.ndim - 2))
        return x * self.scaled_mask

    def backward(self, grad):
        return grad * self.scaled_mask


def dropout2d(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero whole channels of x (N, C, H, W) with probability p and scale the rest by 1/(1-p).

    Neighbouring pixels of a feature map are strongly correlated, so dropping single pixels hardly
    regularises a CNN; dropping the whole map does. Identity when not training.
    """
    x = as_tensor(x)
    if x.ndim != 4:
        raise ShapeError(f"dropout2d: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    return apply_dropout(Dropout2dOp, "dropout2d", x, p, training)
