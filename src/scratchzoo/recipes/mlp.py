"""mlp-digits and mlp-mnist1d: an MLP classifier trained with Adam and cross-entropy.

Targets: sklearn digits, held-out accuracy >= 97%; MNIST-1D, test accuracy >= 68% (the MLP figure of
Greydanus's MNIST-1D paper).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from scratchzoo import losses, rng
from scratchzoo.data import datasets
from scratchzoo.models.mlp import MLP, MLPConfig
from scratchzoo.optim import Adam
from scratchzoo.recipes import common


@dataclass
class MLPClassifierConfig:
    hidden: Sequence[int] = field(default_factory=lambda: (256, 128))
    activation: str = "relu"
    dropout: float = 0.1
    epochs: int = 40
    steps: int | None = None  # overrides epochs when set
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    out: str | None = None
    resume: str | None = None


@dataclass
class MNIST1DConfig(MLPClassifierConfig):
    # the MNIST-1D paper's MLP: two hidden layers of 100, Adam lr 1e-2, batch 100, 6000 steps
    hidden: Sequence[int] = field(default_factory=lambda: (100, 100))
    dropout: float = 0.0
    steps: int | None = 6000
    batch_size: int = 100
    lr: float = 1e-2


def _builder(in_features: int) -> Callable[[MLPClassifierConfig], MLP]:
    def build(config: MLPClassifierConfig) -> MLP:
        return MLP(MLPConfig(in_features, tuple(config.hidden), 10, config.activation, config.dropout))
    return build


def _recipe(name: str, description: str, config_class: type, load: Callable[[], datasets.Split],
            in_features: int) -> common.Recipe:
    build = _builder(in_features)

    def train(config: MLPClassifierConfig) -> dict[str, float]:
        rng.manual_seed(config.seed)
        split = load()
        model = build(config)
        optimizer = Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps = config.steps or config.epochs * max(len(split.x_train) // config.batch_size, 1)
        run_dir = common.run_directory(name, config.out)
        state = common.train_loop(
            model, optimizer, split.x_train, split.y_train, losses.cross_entropy, steps=steps,
            batch_size=config.batch_size, seed=config.seed, run_dir=run_dir, config=config, resume=config.resume,
            evaluate=lambda: common.classification_metrics(model, split.x_test, split.y_test),
            evaluate_every=max(steps // 20, 1))
        metrics = common.classification_metrics(model, split.x_test, split.y_test)
        return common.finish(run_dir, {**metrics, "train_seconds": state.seconds}, state.losses, state.evaluations)

    def evaluate(ckpt: str) -> dict[str, float]:
        model, _ = common.load_model(ckpt, config_class, build)
        split = load()
        return common.classification_metrics(model, split.x_test, split.y_test)

    return common.Recipe(name, description, config_class, train, evaluate)


DIGITS = _recipe("mlp-digits", "MLP on sklearn's 8x8 digits (target: test accuracy >= 97%)",
                 MLPClassifierConfig, datasets.digits, 64)
MNIST1D = _recipe("mlp-mnist1d", "MLP on MNIST-1D (target: test accuracy >= 68%, the paper's MLP)",
                  MNIST1DConfig, datasets.mnist1d, 40)
