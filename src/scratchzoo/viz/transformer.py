"""Transformer figures: attention heatmaps of one example and the sinusoidal position table (matplotlib optional).

`plot_attention` takes the dict of `Seq2SeqTransformer.attention_maps` ("encoder_self" (L, H, S, S),
"decoder_self" (L, H, T, T), "cross" (L, H, T, S)) and writes one figure per kind, a grid of layers (rows)
by heads (columns). Each row of a heatmap is one query position's softmax weights over the keys, so rows
sum to 1; the decoder's self-attention is zero above the diagonal (the causal mask: position t sees only
positions <= t), and the cross-attention of a monotonic task (pinyin, G2P) shows the alignment of outputs
to inputs. Every function returns whether a figure was written (False when matplotlib is missing).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from scratchzoo.nn.transformer import sinusoidal_table
from scratchzoo.viz import CJK_FONTS, have_matplotlib, installed_fonts, new_figure

ATTENTION_FILES = {"encoder_self": ("attention_encoder.png", "encoder self-attention", "source", "source"),
                   "decoder_self": ("attention_decoder.png", "decoder self-attention (causal)", "target", "target"),
                   "cross": ("attention_cross.png", "cross-attention (decoder queries, encoder keys)", "target",
                             "source")}


def _drawable(labels: Sequence[str], cjk_font_installed: bool) -> list[str]:
    """The labels themselves, or, when they hold CJK characters and no installed font can draw them, their
    code points (U+884C) instead of empty boxes."""
    if cjk_font_installed or not any(ord(ch) >= 0x2E80 for label in labels for ch in label):
        return list(labels)
    return [" ".join(f"U+{ord(ch):04X}" if ord(ch) >= 0x2E80 else ch for ch in label) for label in labels]


def plot_attention_grid(weights: np.ndarray, query_labels: Sequence[str], key_labels: Sequence[str],
                        path: Path | str, title: str = "attention", query_axis: str = "query",
                        key_axis: str = "key") -> bool:
    """One heatmap per (layer, head) of weights (L, H, Tq, Tk); colour scale 0..1 shared by all panels."""
    if not have_matplotlib():
        return False
    layers, heads, tq, tk = weights.shape
    size = max(1.6, 0.28 * max(tq, tk))
    cjk = bool(set(CJK_FONTS) & installed_fonts())  # new_figure puts them in the fallback list
    query_labels, key_labels = _drawable(query_labels, cjk), _drawable(key_labels, cjk)
    # a colorbar over several axes: tight_layout would warn, so the figure is written as laid out
    with new_figure(path, tight_layout=False, figsize=(size * heads + 1.0, size * layers + 0.8)) as figure:
        axes = figure.subplots(layers, heads, squeeze=False)
        for layer in range(layers):
            for head in range(heads):
                axis = axes[layer, head]
                image = axis.imshow(weights[layer, head], cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
                axis.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=7)
                # tokens label the outer panels only: the grid shares its axes, and inner labels would collide
                axis.set_xticks(np.arange(tk))
                axis.set_xticklabels(key_labels if layer == layers - 1 else [], fontsize=6, rotation=90)
                axis.set_yticks(np.arange(tq))
                axis.set_yticklabels(query_labels if head == 0 else [], fontsize=6)
                if head == 0:
                    axis.set_ylabel(query_axis, fontsize=7)
                if layer == layers - 1:
                    axis.set_xlabel(key_axis, fontsize=7)
        figure.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01)
        figure.suptitle(title, fontsize=9)
    return True


def plot_attention(maps: dict[str, np.ndarray], source: Sequence[str], target_in: Sequence[str],
                   run_dir: Path | str) -> bool:
    """attention_encoder.png, attention_decoder.png and attention_cross.png in run_dir, from the maps of one
    example: `source` labels the S source positions, `target_in` the T decoder inputs (bos, y_1, ...)."""
    written = True
    for kind, (name, title, query_axis, key_axis) in ATTENTION_FILES.items():
        queries = source if query_axis == "source" else target_in
        keys = source if key_axis == "source" else target_in
        written &= plot_attention_grid(maps[kind], queries, keys, Path(run_dir) / name, title, query_axis, key_axis)
    return written


def plot_positional_encoding(path: Path | str, max_len: int, d_model: int) -> bool:
    """Three views of the table pe (max_len, d_model) the model adds to its embeddings (nn/transformer.py,
    sinusoidal_table): pe[pos, 2i] = sin(pos / 10000^(2i/d)), pe[pos, 2i+1] = cos(...).
    Left, the table: early columns turn fast with the position, late ones slowly, so every position gets a
    distinct pattern. Middle, a few columns along the positions: a sine/cosine pair and slower dimensions.
    Right, pe @ pe^T: the dot product of two positions depends only on their distance (a band structure)."""
    if not have_matplotlib():
        return False
    table = sinusoidal_table(max_len, d_model)
    with new_figure(path, figsize=(15, 4)) as figure:
        axes = figure.subplots(1, 3)
        image = axes[0].imshow(table, aspect="auto", cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
        axes[0].set(xlabel="dimension (even: sin, odd: cos)", ylabel="position",
                    title=f"pe: {max_len} positions x {d_model} dimensions")
        figure.colorbar(image, ax=axes[0], fraction=0.04, pad=0.01)
        for column in sorted({min(8, d_model - 2), min(9, d_model - 1), d_model // 4, d_model // 2,
                              3 * d_model // 4}):
            axes[1].plot(table[:, column], label=f"dimension {column}")
        axes[1].set(xlabel="position", ylabel="value", title="columns of pe")
        axes[1].legend(fontsize=7)
        similarity = axes[2].imshow(table @ table.T, aspect="auto", cmap="viridis", interpolation="nearest")
        axes[2].set(xlabel="position", ylabel="position", title="pe @ pe.T: depends on the distance only")
        figure.colorbar(similarity, ax=axes[2], fraction=0.04, pad=0.01)
    return True
