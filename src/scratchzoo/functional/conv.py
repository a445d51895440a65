"""Convolutions: conv2d (conv1d on top of it), conv_transpose2d, and conv2d_naive, the loop reference.

What a convolution layer computes
---------------------------------
Each output pixel is a dot product between one kernel (C/G x KH x KW numbers) and the input patch under
it, plus a bias; the kernel slides over the image with a step `stride`, reads taps `dilation` pixels
apart, and the image is framed by `padding` zeros. Along one axis the output has
    out = (in + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1
positions (with dilation 1 and symmetric padding p: (H + 2p - K) // stride + 1). Deep-learning libraries
do not flip the kernel: what they call convolution is the cross-correlation sum_k x[i + k] * w[k].

How the fast op computes it (im2col)
------------------------------------
Copy every patch into a row of one matrix `col` (N*OH*OW rows, KH*KW*C columns), then all outputs of all
kernels are one matrix product col @ Wm, with Wm the kernels laid out as columns. The copy is made
channels-last, so each patch reads contiguous memory and the product needs no transpose. With
`groups` G the channels split into G independent convolutions: col becomes (G, M, K) and the product
one batched matmul. The backward is the same picture read in reverse:
    dWm = col^T @ dY                     (every patch times the gradient of the pixel it made)
    dcol = dY @ Wm^T, then col2im        (each patch's gradient added back where the patch came from)
col2im loops over the KH*KW kernel taps only; each iteration adds one strided slice for every pixel and
sample at once. The transposed convolution is this adjoint used as a forward pass: its forward is
col2im and its backward an im2col + matmul, so both ops share the helpers below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor
from scratchzoo.functional._base import as_tensor
from scratchzoo.functional.shape import squeeze, unsqueeze

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def _ntuple(value: Any, n: int, what: str, op: str) -> tuple[int, ...]:
    """3 -> (3, 3); (3, 2) stays; anything else of the wrong length is an error naming the op."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{op}: {what} must be an int or a tuple of {n} ints, got {value}")
    return value


@dataclass(frozen=True)
class ConvGeometry:
    """Where the kernel taps of a 2-D convolution land; every pair is (height, width)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: Pads
    groups: int

    def out_size(self, in_hw: Sequence[int]) -> tuple[int, int]:
        """out = (in + pad_before + pad_after - dilation*(kernel-1) - 1) // stride + 1, per axis."""
        return tuple((n + lo + hi - d * (k - 1) - 1) // s + 1  # type: ignore[return-value]
                     for n, (lo, hi), k, s, d in zip(in_hw, self.pads, self.kernel, self.stride, self.dilation))

    def min_in_size(self) -> tuple[int, int]:
        """The smallest input with out >= 1: the dilated kernel, dilation*(kernel-1) + 1, must fit in the padded input."""
        return tuple(max(1, d * (k - 1) + 1 - lo - hi)  # type: ignore[return-value]
                     for (lo, hi), k, d in zip(self.pads, self.kernel, self.dilation))


def conv_pads(padding: Any, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
              op: str) -> Pads:
    """PyTorch's padding argument -> explicit (before, after) zeros per axis.

    'valid' is no padding; 'same' keeps the size (stride 1 only): dilation*(kernel-1) zeros in total,
    half before and the rest after, so an even kernel gets one more zero on the bottom/right.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride {stride})")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)  # type: ignore[return-value]
    ph, pw = _ntuple(padding, 2, "padding", op)
    if ph < 0 or pw < 0:
        raise ValueError(f"{op}: padding must be non-negative, got {(ph, pw)}")
    return (ph, ph), (pw, pw)


# ============================================================================ the four shared helpers


def _im2col(x: np.ndarray, geo: ConvGeometry, out_hw: tuple[int, int]) -> np.ndarray:
    """(N, C, H, W) -> col of shape (G, N*OH*OW, KH*KW*C/G).

    Row m of col[g] is the patch under output pixel m, read by group g's kernels, ordered (kernel row,
    kernel col, channel). `sliding_window_view` makes every patch a view for free; the one copy is the
    final reshape, which lays the patches out as rows.
    """
    n, c, h, w = x.shape
    (top, bottom), (left, right) = geo.pads
    if top or bottom or left or right:
        padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
        padded[:, top:top + h, left:left + w] = x.transpose(0, 2, 3, 1)  # channels last
    else:
        padded = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    oh, ow = out_hw
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)  # a dilated kernel covers this many pixels
    windows = sliding_window_view(padded, span, axis=(1, 2))  # (N, H', W', C, span_h, span_w)
    windows = windows[:, :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw, :, ::dh, ::dw]  # (N, OH, OW, C, KH, KW)
    g = geo.groups
    windows = windows.reshape(n, oh, ow, g, c // g, kh, kw).transpose(3, 0, 1, 2, 5, 6, 4)
    return windows.reshape(g, n * oh * ow, kh * kw * (c // g))


def _col2im(dcol: np.ndarray, geo: ConvGeometry, x_shape: tuple[int, ...], out_hw: tuple[int, int]) -> np.ndarray:
    """The adjoint of _im2col: (G, N*OH*OW, KH*KW*C/G) -> (N, C, H, W), overlapping patches summed.

    One iteration per kernel tap (i, j): the column of every patch that tap read goes back, for all
    pixels and samples at once, into the strided slice of the padded image it was read from.
    """
    n, c, h, w = x_shape
    g = geo.groups
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    (top, bottom), (left, right) = geo.pads
    oh, ow = out_hw
    dcol = dcol.reshape(g, n, oh, ow, kh, kw, c // g)
    padded = np.zeros((n, h + top + bottom, w + left + right, g, c // g), dtype=dcol.dtype)
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
        for j in range(kw):
            cols = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
            padded[:, rows, cols] += dcol[:, :, :, :, i, j].transpose(1, 2, 3, 0, 4)
    return padded[:, top:top + h, left:left + w].reshape(n, h, w, c).transpose(0, 3, 1, 2)


def _weight_matrix(weight: np.ndarray, groups: int) -> np.ndarray:
    """Kernels (O, C/G, KH, KW) -> Wm of shape (G, KH*KW*C/G, O/G): column o is kernel o, in patch order."""
    o, cg, kh, kw = weight.shape
    return weight.reshape(groups, o // groups, cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(groups, kh * kw * cg,
                                                                                           o // groups)


def _weight_from_matrix(matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of _weight_matrix: (G, KH*KW*C/G, O/G) -> (O, C/G, KH, KW)."""
    o, cg, kh, kw = shape
    g = matrix.shape[0]
    return matrix.reshape(g, kh, kw, cg, o // g).transpose(0, 4, 3, 1, 2).reshape(shape)


def _weight_grad(col: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """dWm = col^T @ dY: (G, M, K), (G, M, O/G) -> (G, K, O/G), a sum over the M = N*OH*OW pixels.

    One product, except when its output is tiny (a first layer: K = 9 taps of 1 channel): a threaded
    BLAS splits the output among its threads and synchronises them once per block of the long M
    dimension, which on a busy 2-core machine can cost a scheduler time slice each time (seconds per
    step). Then the N per-sample products run as one stacked matmul (each small enough for one
    thread) and are summed over the samples.
    """
    g, m, k = col.shape
    if k * rows.shape[2] > 4096:
        return col.transpose(0, 2, 1) @ rows
    per_sample = col.reshape(g, n, m // n, k).transpose(0, 1, 3, 2) @ rows.reshape(g, n, m // n, rows.shape[2])
    return per_sample.sum(axis=1)


def _to_rows(y: np.ndarray, groups: int) -> np.ndarray:
    """(N, O, OH, OW) -> (G, N*OH*OW, O/G): one row per pixel, its channels split by group."""
    n, o, oh, ow = y.shape
    return y.reshape(n, groups, o // groups, oh, ow).transpose(1, 0, 3, 4, 2).reshape(groups, n * oh * ow,
                                                                                       o // groups)


def _from_rows(rows: np.ndarray, n: int, oh: int, ow: int) -> np.ndarray:
    """The inverse of _to_rows. With one group the result is a view of `rows`, channels-last in memory."""
    g, _, og = rows.shape
    return rows.reshape(g, n, oh, ow, og).transpose(1, 0, 4, 2, 3).reshape(n, g * og, oh, ow)


# ============================================================================ the ops


class Conv2dOp(Function):
    """y = x (*) W + b as im2col + one (batched over groups) matrix product.

        forward:   Y = col @ Wm (+ b)                         col: (G, M, K), Wm: (G, K, O/G)
        backward:  dWm = col^T @ dY,  dx = col2im(dY @ Wm^T),  db = sum of dY over the pixels
    (dWm is summed sample by sample, see _weight_grad.)
    """

    def forward(self, x, weight, bias=None, *, geo):
        self.geo, self.x_shape, self.weight = geo, x.shape, weight
        self.out_hw = geo.out_size(x.shape[2:])
        self.col = _im2col(x, geo, self.out_hw)
        y = self.col @ _weight_matrix(weight, geo.groups)  # (G, M, O/G): every output, one product
        if bias is not None:
            y += bias.reshape(geo.groups, 1, -1)
        return _from_rows(y, x.shape[0], *self.out_hw)

    def backward(self, grad):
        geo, needs = self.geo, self.needs_input_grad
        rows = _to_rows(grad, geo.groups)  # dY: (G, M, O/G)
        grad_x = grad_w = None
        if needs[0]:
            dcol = rows @ _weight_matrix(self.weight, geo.groups).transpose(0, 2, 1)
            grad_x = _col2im(dcol, geo, self.x_shape, self.out_hw)
        if needs[1]:
            grad_w = _weight_from_matrix(_weight_grad(self.col, rows, grad.shape[0]), self.weight.shape)
        if len(needs) == 2:
            return grad_x, grad_w
        return grad_x, grad_w, (rows.sum(axis=1).reshape(-1) if needs[2] else None)


class ConvTranspose2dOp(Function):
    """The transposed convolution: the map that Conv2dOp's backward applies to dY, used as a forward.

    With Wm the weight (C_in, C_out/G, KH, KW) read as the kernels of a convolution from C_out to C_in
    channels:  forward y = col2im(x @ Wm^T) + b;  backward dx = im2col(dy) @ Wm,  dWm = im2col(dy)^T @ x.
    Each input pixel stamps a weighted copy of the kernel onto the output, `stride` pixels apart.
    """

    def forward(self, x, weight, bias=None, *, geo, out_hw):
        n, _, h, w = x.shape
        self.geo, self.weight, self.in_hw = geo, weight, (h, w)
        self.rows = _to_rows(x, geo.groups)  # (G, N*H*W, C_in/G)
        dcol = self.rows @ _weight_matrix(weight, geo.groups).transpose(0, 2, 1)
        y = _col2im(dcol, geo, (n, weight.shape[1] * geo.groups) + tuple(out_hw), (h, w))
        if bias is not None:
            y += bias.reshape(1, -1, 1, 1)  # y is a view of a fresh buffer: add in place
        return y

    def backward(self, grad):
        geo, needs = self.geo, self.needs_input_grad
        col = _im2col(grad, geo, self.in_hw)  # (G, N*H*W, K): the convolution of dy
        grad_x = _from_rows(col @ _weight_matrix(self.weight, geo.groups), grad.shape[0], *self.in_hw) \
            if needs[0] else None
        grad_w = _weight_from_matrix(_weight_grad(col, self.rows, grad.shape[0]), self.weight.shape) \
            if needs[1] else None
        if len(needs) == 2:
            return grad_x, grad_w
        return grad_x, grad_w, (grad.sum(axis=(0, 2, 3)) if needs[2] else None)


# ============================================================================ public functions


def _conv_tensors(op: str, x: Any, weight: Any, bias: Any) -> tuple[Tensor, ...]:
    x = as_tensor(x)
    weight = as_tensor(weight, x)
    tensors = (x, weight) if bias is None else (x, weight, as_tensor(bias, x))
    for t in tensors:
        if t.dtype.kind != "f":
            raise DTypeError(f"{op}: needs floating-point tensors, got {t.dtype}")
        if t.dtype != x.dtype:
            raise DTypeError(f"{op}: cannot mix input {x.dtype} and parameter {t.dtype}; convert one with .to(dtype)")
    return tensors


def _check_conv_shapes(op: str, x: Tensor, weight: Tensor, bias: Tensor | None, groups: int, nd: int,
                       transposed: bool = False) -> None:
    layout = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
    if x.ndim != nd + 2:
        raise ShapeError(f"{op}: expected a {nd + 2}-D input {layout}, got shape {x.shape}")
    if weight.ndim != nd + 2:
        raise ShapeError(f"{op}: expected a {nd + 2}-D weight, got shape {weight.shape}")
    if groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups}")
    if transposed:  # weight (C_in, C_out/G, ...)
        if weight.shape[0] != x.shape[1] or x.shape[1] % groups:
            raise ShapeError(f"{op}: input of shape {x.shape} ({x.shape[1]} channels) does not fit a weight of "
                             f"shape {weight.shape} (C_in, C_out/groups, ...) with groups={groups}")
        out_channels = weight.shape[1] * groups
    else:  # weight (C_out, C_in/G, ...)
        if x.shape[1] != weight.shape[1] * groups or weight.shape[0] % groups:
            raise ShapeError(f"{op}: input of shape {x.shape} ({x.shape[1]} channels) does not fit a weight of "
                             f"shape {weight.shape} (C_out, C_in/groups, ...) with groups={groups}")
        out_channels = weight.shape[0]
    if bias is not None and bias.shape != (out_channels,):
        raise ShapeError(f"{op}: bias of shape {bias.shape}, expected ({out_channels},)")


def _check_out_size(op: str, x: Tensor, out_hw: Sequence[int], min_hw: Sequence[int]) -> None:
    if any(s < 1 for s in out_hw):
        raise ShapeError(f"{op}: expected an input of spatial size at least {tuple(min_hw)} for the kernel, padding "
                         f"and dilation, got shape {x.shape}: too small (output size would be {tuple(out_hw)})")


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation) of x (N, C_in, H, W) with weight (C_out, C_in/groups, KH, KW).

    padding: int, (ph, pw), 'valid' (none) or 'same' (output size = input size; stride 1 only).
    Output (N, C_out, OH, OW), OH = (H + 2*ph - dilation*(KH-1) - 1) // stride + 1, likewise OW.
    """
    tensors = _conv_tensors("conv2d", x, weight, bias)
    x, weight = tensors[0], tensors[1]
    _check_conv_shapes("conv2d", x, weight, tensors[2] if bias is not None else None, groups, nd=2)
    kernel = weight.shape[2:]
    stride, dilation = _ntuple(stride, 2, "stride", "conv2d"), _ntuple(dilation, 2, "dilation", "conv2d")
    if min(stride + dilation) < 1:
        raise ValueError(f"conv2d: stride and dilation must be positive, got {stride} and {dilation}")
    geo = ConvGeometry(kernel, stride, dilation, conv_pads(padding, kernel, stride, dilation, "conv2d"), groups)
    _check_out_size("conv2d", x, geo.out_size(x.shape[2:]), geo.min_in_size())
    return Conv2dOp.apply(*tensors, geo=geo)


def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor:
    """1-D convolution of x (N, C_in, L) with weight (C_out, C_in/groups, K).

    A 1-D signal is a 2-D image of height 1: unsqueeze to (N, C_in, 1, L) and (C_out, C_in/G, 1, K), run
    conv2d with stride (1, s), padding (0, p) and dilation (1, d), squeeze the height back out.
    """
    tensors = _conv_tensors("conv1d", x, weight, bias)
    x, weight = tensors[0], tensors[1]
    _check_conv_shapes("conv1d", x, weight, tensors[2] if bias is not None else None, groups, nd=1)
    (s,), (d,) = _ntuple(stride, 1, "stride", "conv1d"), _ntuple(dilation, 1, "dilation", "conv1d")
    pad2 = padding if isinstance(padding, str) else (0, _ntuple(padding, 1, "padding", "conv1d")[0])
    if padding == "same" and s != 1:
        raise ValueError(f"conv1d: padding='same' is not supported for strided convolutions (stride {s})")
    kernel = (1, weight.shape[2])
    geo = ConvGeometry(kernel, (1, s), (1, d), conv_pads(pad2, kernel, (1, s), (1, d), "conv1d"), groups)
    _check_out_size("conv1d", x, geo.out_size((1, x.shape[2]))[1:], geo.min_in_size()[1:])  # in 1-D terms
    y = conv2d(unsqueeze(x, 2), unsqueeze(weight, 2), tensors[2] if bias is not None else None,
               (1, s), pad2, (1, d), groups)
    return squeeze(y, 2)


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    """Transposed convolution of x (N, C_in, H, W) with weight (C_in, C_out/groups, KH, KW), as PyTorch.

    Output size per axis: (H - 1)*stride - 2*padding + dilation*(KH - 1) + output_padding + 1; it is
    exactly the input size of the conv2d with the same arguments whose output size is H (output_padding
    picks among the sizes a strided conv2d maps to the same H). Used to upsample (U-Net decoders).
    """
    tensors = _conv_tensors("conv_transpose2d", x, weight, bias)
    x, weight = tensors[0], tensors[1]
    _check_conv_shapes("conv_transpose2d", x, weight, tensors[2] if bias is not None else None, groups, nd=2,
                       transposed=True)
    op = "conv_transpose2d"
    kernel = weight.shape[2:]
    stride, dilation = _ntuple(stride, 2, "stride", op), _ntuple(dilation, 2, "dilation", op)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple of 2 ints, got {padding!r}")
    output_padding = _ntuple(output_padding, 2, "output_padding", op)
    for op_, s, d in zip(output_padding, stride, dilation):
        if not 0 <= op_ < max(s, d):
            raise ValueError(f"{op}: output_padding {output_padding} must be smaller than stride {stride} "
                             f"or dilation {dilation}")
    geo = ConvGeometry(kernel, stride, dilation, conv_pads(padding, kernel, stride, dilation, op), groups)
    out_hw = tuple((n - 1) * s - lo - hi + d * (k - 1) + extra + 1
                   for n, (lo, hi), k, s, d, extra in zip(x.shape[2:], geo.pads, kernel, stride, dilation,
                                                          output_padding))
    # out >= 1  <=>  (in - 1) * stride >= pads - dilation*(kernel-1) - output_padding
    min_hw = tuple(1 + max(0, -(-(lo + hi - d * (k - 1) - extra) // s))
                   for (lo, hi), k, s, d, extra in zip(geo.pads, kernel, stride, dilation, output_padding))
    _check_out_size(op, x, out_hw, min_hw)
    return ConvTranspose2dOp.apply(*tensors, geo=geo, out_hw=out_hw)


# ============================================================================ the teaching reference


def conv2d_naive(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: int = 1,
                 padding: int = 0) -> np.ndarray:
    """The convolution as four nested loops: the readable reference, NOT used by any layer.

    Plain NumPy in, plain NumPy out, no autograd; square stride and padding, dilation 1, one group.
    It spells out what conv2d computes and why the output has
        out_H = (H + 2*padding - kernel_size) // stride + 1
    rows: the kernel's top edge starts at rows 0, stride, 2*stride, ... of the padded image and must end
    inside it, so the last start is at most H + 2*padding - kernel_size. Same for the columns.
    tests/nn/test_conv.py checks it equals conv2d, so the fast op is held to this definition.
    """
    x, weight = np.asarray(x), np.asarray(weight)
    batch, in_channels, height, width = x.shape
    out_channels, _, kernel_h, kernel_w = weight.shape
    # Frame the image with `padding` zeros on every side (only the two spatial axes).
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (height + 2 * padding - kernel_h) // stride + 1
    out_w = (width + 2 * padding - kernel_w) // stride + 1
    out = np.zeros((batch, out_channels, out_h, out_w), dtype=np.result_type(x, weight))
    for b in range(batch):                      # each sample
        for o in range(out_channels):           # each kernel makes one output channel
            for i in range(out_h):              # each output row ...
                for j in range(out_w):          # ... and column
                    top, left = i * stride, j * stride
                    patch = padded[b, :, top:top + kernel_h, left:left + kernel_w]  # (C_in, KH, KW): what it sees
                    out[b, o, i, j] = np.sum(patch * weight[o])  # multiply tap by tap, add up (no flip)
                    if bias is not None:
                        out[b, o, i, j] += bias[o]
    return out
