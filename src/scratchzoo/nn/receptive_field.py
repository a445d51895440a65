"""How much of the input each output pixel sees: the receptive field, layer by layer.

For a layer with kernel k, stride s, padding p and dilation d, per spatial dim:
  out = (in + 2p - d (k - 1) - 1) // s + 1        (the output size)
  rf  = rf_prev + d (k - 1) * jump_prev           (the receptive field grows by the kernel's reach)
  jump = jump_prev * s                            (distance in input pixels between neighbouring outputs)
So two stacked 3x3 convolutions see 5x5, and after a pooling by 2 every later kernel grows the field
twice as fast.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from scratchzoo.nn.module import Module


@dataclass
class FieldRow:
    name: str
    layer: str
    output_size: tuple[int, ...]
    receptive_field: tuple[int, ...]
    jump: tuple[int, ...]


def _per_dim(value: Any, dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * dims


def receptive_field(model: Module, input_size: Sequence[int]) -> list[FieldRow]:
    """Walk the model's leaf layers in order and report output size and receptive field after each
    one that slides a window (convolutions and pools). `input_size` is the spatial size: (H, W) or (L,).

    Layers with no window (BatchNorm, ReLU, ...) change neither; an adaptive pool to size 1 sees the
    whole input. Branching models are walked in registration order, which is data-flow order for the
    feed-forward models here.
    """
    dims = len(input_size)
    size, field, jump = tuple(input_size), (1,) * dims, (1,) * dims
    rows = []
    for name, layer in model.named_modules():
        if any(True for _ in layer.children()):
            continue
        if hasattr(layer, "output_size") and type(layer).__name__.startswith("Adaptive"):
            out = _per_dim(layer.output_size, dims)
            # each output bin averages about in/out inputs: its reach is (in/out - 1) strides of `jump`
            field = tuple(f + (-(-s // o) - 1) * j for f, s, o, j in zip(field, size, out, jump))
            jump = tuple(j * (s // o) for j, s, o in zip(jump, size, out))
            size = out
        elif hasattr(layer, "kernel_size"):
            k = _per_dim(layer.kernel_size, dims)
            s = _per_dim(layer.stride if layer.stride is not None else layer.kernel_size, dims)
            p = _per_dim(layer.padding, dims) if not isinstance(layer.padding, str) else \
                tuple((d * (kk - 1)) // 2 if layer.padding == "same" else 0
                      for kk, d in zip(k, _per_dim(getattr(layer, "dilation", 1), dims)))
            d = _per_dim(getattr(layer, "dilation", 1), dims)
            size = tuple((n + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for n, pp, dd, kk, ss in zip(size, p, d, k, s))
            field = tuple(f + dd * (kk - 1) * j for f, dd, kk, j in zip(field, d, k, jump))
            jump = tuple(j * ss for j, ss in zip(jump, s))
        else:
            continue
        rows.append(FieldRow(name, type(layer).__name__, size, field, jump))
    return rows
