"""Figures, drawn only when matplotlib is installed (`pip install scratchzoo[plot]`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


# fonts with Chinese glyphs, tried after matplotlib's own sans-serif fonts (which have none): a label like
# 银行 then renders on any machine that has one of them installed, instead of as empty boxes
CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei",
             "Microsoft YaHei", "PingFang SC", "Heiti SC", "Arial Unicode MS")


def with_cjk_fallback(sans_serif: Sequence[str], installed: set[str]) -> list[str]:
    """The sans-serif font list with every installed CJK font appended (matplotlib >= 3.6 falls back
    glyph by glyph along it)."""
    return [*sans_serif, *(name for name in CJK_FONTS if name in installed and name not in sans_serif)]


def installed_fonts() -> set[str]:
    """The names of the fonts matplotlib can use (call after importing matplotlib)."""
    from matplotlib import font_manager
    return {font.name for font in font_manager.fontManager.ttflist}


def _pyplot():
    """matplotlib.pyplot with a file-only backend and CJK font fallback, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["font.sans-serif"] = with_cjk_fallback(plt.rcParams["font.sans-serif"], installed_fonts())
    return plt


def plot_curves(path: Path, losses: Sequence[float], evaluations: dict[str, Sequence[tuple[int, float]]]) -> bool:
    """Training loss per step (smoothed over 1% of the run) and evaluation metrics at their steps.
    Returns whether a figure was written."""
    plt = _pyplot()
    if plt is None or not losses:
        return False
    figure, axes = plt.subplots(1, 1 + bool(evaluations), figsize=(5 + 5 * bool(evaluations), 3.5), squeeze=False)
    window = max(len(losses) // 100, 1)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    axes[0, 0].plot(np.arange(len(smooth)) + window, smooth)
    axes[0, 0].set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    for name, points in evaluations.items():
        steps, values = zip(*points)
        axes[0, 1].plot(steps, values, marker="o", label=name)
    if evaluations:
        axes[0, 1].set(xlabel="step", title="evaluation")
        axes[0, 1].legend()
    return save_figure(plt, figure, path)


def save_figure(plt, figure, path: Path | str) -> bool:
    """Lay out, write as PNG and free the figure; True, for the plot functions to return."""
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
