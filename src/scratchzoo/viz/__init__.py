"""Figures, drawn only when matplotlib is installed (`pip install scratchzoo[plot]`).

Every plot function returns whether it wrote a figure (False when matplotlib is missing). They draw on a
bare `matplotlib.figure.Figure` written through its own canvas, never through pyplot: the caller's backend
(a notebook's inline one, say), pyplot's list of open figures and the global rcParams are left as they
were, also when a plot fails. The CJK font fallback applies only while a figure is built and written.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

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


def _matplotlib() -> Any:
    """The matplotlib module, or None when it is not installed (the one place that decides)."""
    try:
        import matplotlib
    except ImportError:
        return None
    return matplotlib


def have_matplotlib() -> bool:
    """Whether figures can be drawn; the plot functions return False at once when not."""
    return _matplotlib() is not None


def sans_serif_with_cjk() -> list[str]:
    """The current sans-serif font list with the installed CJK fonts appended: what `new_figure` draws with."""
    import matplotlib
    return with_cjk_fallback(matplotlib.rcParams["font.sans-serif"], installed_fonts())


@contextmanager
def new_figure(path: Path | str, tight_layout: bool = True, **figure_options: Any) -> Iterator[Any]:
    """A new `matplotlib.figure.Figure(**figure_options)` to draw on; when the block ends without an
    error, it is laid out (unless `tight_layout` is False) and written to `path` as PNG. The figure is
    unknown to pyplot and the CJK font fallback is set in a local `rc_context`, so the backend, pyplot's
    open figures and the global rcParams are the same afterwards, whether drawing succeeded or not."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"font.sans-serif": sans_serif_with_cjk()}):
        figure = Figure(**figure_options)
        try:
            yield figure
            save_figure(figure, path, tight_layout)
        finally:
            figure.clear()  # free the artists now, whatever happened


def save_figure(figure: Any, path: Path | str, tight_layout: bool = True) -> bool:
    """Lay out and write `figure` as PNG through its own canvas (no pyplot); True, for the plot functions."""
    if tight_layout:
        figure.tight_layout()
    figure.savefig(path, dpi=100)
    return True


def plot_curves(path: Path, losses: Sequence[float], evaluations: dict[str, Sequence[tuple[int, float]]]) -> bool:
    """Training loss per step (smoothed over 1% of the run) and evaluation metrics at their steps.
    Returns whether a figure was written."""
    if not have_matplotlib() or not losses:
        return False
    with new_figure(path, figsize=(5 + 5 * bool(evaluations), 3.5)) as figure:
        axes = figure.subplots(1, 1 + bool(evaluations), squeeze=False)
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
    return True
