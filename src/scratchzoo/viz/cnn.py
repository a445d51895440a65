"""CNN figures: the first layer's kernels and the feature maps of one input (matplotlib optional).

Both functions return whether a figure was written (False when matplotlib is missing). They handle the
2-D network (kernels and maps drawn as images) and the 1-D one (kernels drawn as lines, each block's
maps as one heatmap of channels over length).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from scratchzoo.autograd import Tensor, no_grad
from scratchzoo.nn import Module, eval_mode
from scratchzoo.viz import have_matplotlib, new_figure


def _array(value: Any) -> np.ndarray:
    return np.asarray(value.data if isinstance(value, Tensor) else value, dtype=np.float64)


def _grid(count: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


def plot_filters(conv_weight: Any, path: Path | str, max_filters: int = 64) -> bool:
    """The kernels of a convolution, one panel each (at most `max_filters`).

    conv_weight: (out, in, kH, kW) for Conv2d, drawn as images (averaged over `in` when in > 1, each
    panel scaled to its own range, red positive and blue negative); (out, in, k) for Conv1d, drawn as
    one line per kernel (input channel 0).
    """
    if not have_matplotlib():
        return False
    weight = _array(conv_weight)
    if weight.ndim not in (3, 4):
        raise ValueError(f"plot_filters: expected a Conv1d/Conv2d weight of 3 or 4 dims, got shape {weight.shape}")
    shape = weight.shape
    weight = weight[:max_filters]
    rows, cols = _grid(len(weight))
    with new_figure(path, figsize=(1.3 * cols, 1.3 * rows)) as figure:
        axes = figure.subplots(rows, cols, squeeze=False)
        for index, axis in enumerate(axes.flat):
            axis.set_xticks([])
            axis.set_yticks([])
            if index >= len(weight):
                axis.axis("off")
                continue
            if weight.ndim == 4:
                kernel = weight[index].mean(axis=0)
                limit = np.abs(kernel).max() or 1.0
                axis.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            else:
                axis.axhline(0.0, color="0.8", linewidth=0.8)
                axis.plot(weight[index, 0], marker=".")
            axis.set_title(str(index), fontsize=7)
        figure.suptitle(f"first-layer kernels {tuple(shape)}", fontsize=9)
    return True


@no_grad()
def block_outputs(model: Module, x: Any) -> list[tuple[str, np.ndarray]]:
    """The input and the output of each conv block of `model.features` (the Sequentials in it, i.e.
    after Conv -> BatchNorm -> ReLU -> MaxPool), for one sample, in eval mode."""
    x = _array(x)
    if x.ndim == model.config.dims + 1:  # one sample without its batch axis
        x = x[None]
    dtype = next(iter(model.parameters())).dtype
    h = Tensor(x.astype(dtype))
    maps = [("input", x[0])]
    with eval_mode(model):
        for index, layer in enumerate(model.features):
            h = layer(h)
            if any(True for _ in layer.children()):  # a conv block, not the final adaptive pool
                maps.append((f"block {index + 1}", h.data[0].astype(np.float64)))
    return maps


def plot_feature_maps(model: Module, x: Any, path: Path | str, max_channels: int = 8) -> bool:
    """What one input looks like after each conv block of a `models.cnn.CNN`.

    2-D: one row per stage (the input, then each block), showing its first `max_channels` channels as
    images. 1-D: one heatmap per stage, channels down, position along the sequence across.
    """
    if not have_matplotlib():
        return False
    maps = block_outputs(model, x)
    if model.config.dims == 2:
        cols = min(max(m.shape[0] for _, m in maps), max_channels)
        size = (1.4 * cols, 1.5 * len(maps))
    else:
        cols, size = 1, (7, 1.6 * len(maps))
    with new_figure(path, figsize=size) as figure:
        axes = figure.subplots(len(maps), cols, squeeze=False)
        if model.config.dims == 2:
            for row, (name, stage) in enumerate(maps):
                for col in range(cols):
                    axis = axes[row, col]
                    axis.set_xticks([])
                    axis.set_yticks([])
                    if col >= stage.shape[0]:
                        axis.axis("off")
                        continue
                    axis.imshow(stage[col], cmap="gray" if row == 0 else "viridis", interpolation="nearest")
                    if col == 0:
                        axis.set_ylabel(f"{name}\n{tuple(stage.shape)}", fontsize=7)
        else:
            for row, (name, stage) in enumerate(maps):
                axis = axes[row, 0]
                if row == 0 and stage.shape[0] == 1:  # the raw signal reads best as a line
                    axis.plot(stage[0])
                    axis.set_xlim(-0.5, stage.shape[1] - 0.5)
                else:
                    axis.imshow(stage, aspect="auto", cmap="viridis", interpolation="nearest")
                axis.set_ylabel(f"{name}\n{tuple(stage.shape)}", fontsize=7)
            axes[-1, 0].set_xlabel("position")
        what = "first channels of each stage" if model.config.dims == 2 else "channels (rows) along the sequence"
        figure.suptitle(f"feature maps of one input after each conv block: {what}", fontsize=9)
    return True
