"""mlp-digits and mlp-mnist1d: an MLP classifier trained with Adam and cross-entropy.

Targets: sklearn digits, held-out accuracy >= 97%; MNIST-1D, test accuracy >= 68% (the MLP figure of
Greydanus's MNIST-1D paper).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from scratchzoo import losses, rng
from scratchzoo.data import datasets
from scratchzoo.models.mlp import MLP, MLPConfig
from scratchzoo.optim import Adam
from scratchzoo.optim.lr_scheduler import CosineAnnealingLR
from scratchzoo.recipes import common


@dataclass
class MLPClassifierConfig:
    hidden: Sequence[int] = field(default_factory=lambda: (512, 256))
    activation: str = "relu"
    dropout: float = 0.2
    epochs: int = 100
    steps: int | None = None  # overrides epochs when set
    batch_size: int = 64
    lr: float = 1e-3  # peak; decayed to 0 along a cosine over the run
    weight_decay: float = 1e-4  # L2, added to the gradient by Adam
    seed: int = 0
    checkpoint_every: int = 500
    out: str | None = None
    resume: str | None = None


@dataclass
class MNIST1DConfig(MLPClassifierConfig):
    # The paper's MLP (two layers of 100, lr 1e-2, no regularisation) overfits MNIST-1D's 4000
    # training examples within a few hundred steps; wider layers with dropout and L2 generalise better.
    hidden: Sequence[int] = field(default_factory=lambda: (256, 256))
    dropout: float = 0.3
    steps: int | None = 6000
    batch_size: int = 100


def _builder(in_features: int) -> Callable[[MLPClassifierConfig], MLP]:
    def build(config: MLPClassifierConfig) -> MLP:
        return MLP(MLPConfig(in_features, tuple(config.hidden), 10, config.activation, config.dropout))
    return build


def standardize(split: datasets.Split) -> datasets.Split:
    """z-score every input feature with the training split's mean and std (test uses the same numbers).

    The std gets a floor of 0.1: some digits pixels are almost always 0, and dividing by their tiny
    std would blow up the rare non-zero value.
    """
    mean, std = split.x_train.mean(axis=0), split.x_train.std(axis=0) + 0.1

    def scale(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    return datasets.Split(scale(split.x_train), split.y_train, scale(split.x_test), split.y_test)


def _recipe(name: str, description: str, config_class: type, load: Callable[[], datasets.Split],
            in_features: int) -> common.Recipe:
    build = _builder(in_features)

    def train(config: MLPClassifierConfig) -> dict[str, float]:
        rng.manual_seed(config.seed)
        split = standardize(load())
        model = build(config)
        optimizer = Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps = config.steps or config.epochs * max(len(split.x_train) // config.batch_size, 1)
        scheduler = CosineAnnealingLR(optimizer, T_max=steps)
        run_dir = common.run_directory(name, config.out)
        state = common.train_loop(
            model, optimizer, split.x_train, split.y_train, losses.cross_entropy, steps=steps,
            batch_size=config.batch_size, seed=config.seed, run_dir=run_dir, config=config, resume=config.resume,
            scheduler=scheduler, checkpoint_every=config.checkpoint_every, evaluate=lambda: common.classification_metrics(model, split.x_test, split.y_test),
            evaluate_every=max(steps // 20, 1))
        metrics = common.classification_metrics(model, split.x_test, split.y_test)
        return common.finish(run_dir, {**metrics, "train_seconds": state.seconds}, state.losses, state.evaluations)

    def evaluate(ckpt: str) -> dict[str, float]:
        model, _ = common.load_model(ckpt, config_class, build)
        split = standardize(load())
        return common.classification_metrics(model, split.x_test, split.y_test)

    return common.Recipe(name, description, config_class, train, evaluate)


DIGITS = _recipe("mlp-digits", "MLP on sklearn's 8x8 digits (target: test accuracy >= 97%)",
                 MLPClassifierConfig, datasets.digits, 64)
MNIST1D = _recipe("mlp-mnist1d", "MLP on MNIST-1D (target: test accuracy >= 68%, the paper's MLP)",
                  MNIST1DConfig, datasets.mnist1d, 40)
