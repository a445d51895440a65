"""mlp-digits and mlp-mnist1d: an MLP classifier trained with Adam and cross-entropy.

Targets: sklearn digits, held-out accuracy >= 97%; MNIST-1D, test accuracy >= 68% (the MLP figure of
Greydanus's MNIST-1D paper).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from scratchzoo.data import datasets
from scratchzoo.models.mlp import ACTIVATIONS, MLP, MLPConfig
from scratchzoo.recipes.classify import TrainingFields, classifier_recipe


@dataclass
class MLPClassifierConfig(TrainingFields):
    hidden: Sequence[int] = field(default_factory=lambda: (512, 256))
    activation: str = "relu"
    dropout: float = 0.2


@dataclass
class MNIST1DConfig(MLPClassifierConfig):
    # The paper's MLP (two layers of 100, lr 1e-2, no regularisation) overfits MNIST-1D's 4000
    # training examples within a few hundred steps; wider layers with dropout and L2 generalise better.
    hidden: Sequence[int] = field(default_factory=lambda: (512, 512))
    dropout: float = 0.5
    epochs: int = 150  # 6000 steps: 40 batches of 100 per pass over the 4000 training signals
    batch_size: int = 100


def _builder(in_features: int) -> Callable[[MLPClassifierConfig], MLP]:
    def build(config: MLPClassifierConfig) -> MLP:
        return MLP(MLPConfig(in_features, tuple(config.hidden), 10, config.activation, config.dropout))
    return build


DIGITS = classifier_recipe("mlp-digits", "MLP on sklearn's 8x8 digits (target: test accuracy >= 97%)",
                           MLPClassifierConfig, datasets.digits, _builder(64), choices={"activation": ACTIVATIONS})
MNIST1D = classifier_recipe("mlp-mnist1d", "MLP on MNIST-1D (target: test accuracy >= 68%, the paper's MLP)",
                            MNIST1DConfig, datasets.mnist1d, _builder(40), choices={"activation": ACTIVATIONS})
