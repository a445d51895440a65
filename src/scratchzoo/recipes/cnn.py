"""cnn-digits and cnn-mnist1d: the convolutional classifier on 8x8 digit images and on MNIST-1D signals.

Targets: digits held-out accuracy >= 98.5%; MNIST-1D test accuracy >= 94% (the CNN figure of the
MNIST-1D paper), with the 1-D variant of the same network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from scratchzoo.data import datasets
from scratchzoo.models.cnn import CNN, CNNConfig
from scratchzoo.recipes.classify import TrainingFields, classifier_recipe


@dataclass
class CNNDigitsConfig(TrainingFields):
    channels: Sequence[int] = field(default_factory=lambda: (64, 128))
    kernel_size: int = 3
    pooled_size: int = 2  # 8x8 -> 4x4 -> 2x2 after the two pools: keep the 2x2 grid, do not average it away
    hidden: int = 128
    dropout: float = 0.3
    epochs: int = 60


@dataclass
class CNNMNIST1DConfig(CNNDigitsConfig):
    channels: Sequence[int] = field(default_factory=lambda: (32, 64, 128))
    kernel_size: int = 5
    pooled_size: int = 5  # keep where along the signal a feature was found: 5 positions of 8 samples
    dropout: float = 0.3
    epochs: int = 60
    batch_size: int = 100


def _builder(dims: int):
    def build(config: CNNDigitsConfig) -> CNN:
        return CNN(CNNConfig(1, 10, tuple(config.channels), config.kernel_size, config.pooled_size, config.hidden,
                             config.dropout, dims))
    return build


def digit_images() -> datasets.Split:
    return datasets.digits(as_images=True)  # (N, 1, 8, 8)


def mnist1d_signals() -> datasets.Split:
    """MNIST-1D as one-channel sequences: (N, 40) -> (N, 1, 40)."""
    split = datasets.mnist1d()
    return datasets.Split(split.x_train[:, None, :], split.y_train, split.x_test[:, None, :], split.y_test)


def draw_figures(model: CNN, split: datasets.Split, run_dir: Path) -> None:
    """filters.png (the first convolution's kernels) and feature_maps.png (the first test input after
    each conv block), when matplotlib is installed."""
    from scratchzoo.viz.cnn import plot_feature_maps, plot_filters  # optional dependency, imported late
    plot_filters(model.features[0][0].weight, run_dir / "filters.png")
    plot_feature_maps(model, split.x_test[0], run_dir / "feature_maps.png")


DIGITS = classifier_recipe("cnn-digits", "CNN on sklearn's 8x8 digits (target: test accuracy >= 98.5%)",
                           CNNDigitsConfig, digit_images, _builder(2), draw_figures)
MNIST1D = classifier_recipe("cnn-mnist1d", "1-D CNN on MNIST-1D (target: test accuracy >= 94%, the paper's CNN)",
                            CNNMNIST1DConfig, mnist1d_signals, _builder(1), draw_figures)
