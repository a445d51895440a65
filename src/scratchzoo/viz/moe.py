"""Mixture-of-Experts figures: which expert serves which input, and how the load spreads (matplotlib optional).

Both plotting functions take plain arrays (no model) and return whether a figure was written (False when
matplotlib is missing).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from scratchzoo.viz import have_matplotlib, new_figure


def gate_matrix(expert_index: np.ndarray, gates: np.ndarray, num_experts: int) -> np.ndarray:
    """(N, E): the weight each expert gets for each token (its gate if chosen, 0 if not); rows sum to 1."""
    weights = np.zeros((expert_index.shape[0], num_experts))
    np.put_along_axis(weights, expert_index, gates, axis=1)
    return weights


def plot_expert_regions(path: Path | str, x: np.ndarray, target: np.ndarray, predictions: dict[str, np.ndarray],
                        weights: np.ndarray, boundaries: Sequence[float] = ()) -> bool:
    """Two panels over a 1-D input x (sorted): above, the target and each model's prediction; below, each
    expert's gate weight (N, E) stacked, so the colour at x shows which experts serve that input. Dashed
    lines mark the `boundaries` between the target's regimes."""
    if not have_matplotlib():
        return False
    from matplotlib import colormaps
    with new_figure(path, figsize=(8, 6)) as figure:
        top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        top.plot(x, target, color="black", linewidth=2.5, alpha=0.35, label="target")
        for name, values in predictions.items():
            top.plot(x, values, linewidth=1.2, label=name)
        top.set(ylabel="y", title="target with four regimes, and the fits")
        top.legend(fontsize=8)
        colours = colormaps["tab10"].colors
        bottom.stackplot(x, weights.T, colors=colours[:weights.shape[1]],
                         labels=[f"expert {i}" for i in range(weights.shape[1])])
        bottom.set(xlabel="x", ylabel="gate weight", ylim=(0, 1), title="which expert serves which input")
        bottom.legend(fontsize=8, loc="upper right", ncol=weights.shape[1])
        for axis in (top, bottom):
            for boundary in boundaries:
                axis.axvline(boundary, color="grey", linestyle="--", linewidth=0.8)
    return True


def plot_expert_load(path: Path | str, loads: dict[str, np.ndarray]) -> bool:
    """One panel per layer, grouped bars: for each run (name -> (layers, E) load fractions), the share of
    the routed tokens each expert of that layer received. The dashed line is the fair share 1/E; a balanced
    router keeps every bar near it. (Expert i of one layer has nothing to do with expert i of another, so
    the layers are not averaged.)"""
    if not have_matplotlib():
        return False
    loads = {name: np.atleast_2d(load) for name, load in loads.items()}
    layers, num_experts = next(iter(loads.values())).shape
    width = 0.8 / len(loads)
    with new_figure(path, figsize=(3.2 * layers + 1, 3.2)) as figure:
        axes = figure.subplots(1, layers, sharey=True, squeeze=False)
        for layer, axis in enumerate(axes[0]):
            for i, (name, load) in enumerate(loads.items()):
                axis.bar(np.arange(num_experts) + (i - (len(loads) - 1) / 2) * width, load[layer], width, label=name)
            axis.axhline(1.0 / num_experts, color="grey", linestyle="--", linewidth=1, label="fair share 1/E")
            axis.set(xlabel="expert", xticks=np.arange(num_experts), title=f"layer {layer}")
        axes[0, 0].set_ylabel("fraction of routed tokens")
        axes[0, -1].legend(fontsize=7)
    return True
