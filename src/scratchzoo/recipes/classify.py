"""What the classification recipes share: the training fields of their configs, input
standardisation, and one train/evaluate pair built from a dataset loader and a model builder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Mapping

import numpy as np

from scratchzoo import losses, rng
from scratchzoo.data import datasets
from scratchzoo.nn import Module
from scratchzoo.optim import Adam
from scratchzoo.optim.lr_scheduler import CosineAnnealingLR
from scratchzoo.recipes import common


@dataclass
class TrainingFields:
    """Options every classification recipe takes (the CLI flags --epochs, --lr, ...)."""
    epochs: int = 100
    steps: int | None = None  # None: `epochs` passes over the training set; set, it overrides epochs
    batch_size: int = 64
    lr: float = 1e-3  # peak; decayed to 0 along a cosine over the run
    weight_decay: float = 1e-4  # L2, added to the gradient by Adam
    seed: int = 0
    checkpoint_every: int = 500
    out: str | None = None
    resume: str | None = None


def standardize(split: datasets.Split) -> datasets.Split:
    """z-score every input feature with the training split's mean and std (test uses the same numbers).

    The std gets a floor of 0.1: some digits pixels are almost always 0, and dividing by their tiny
    std would blow up the rare non-zero value.
    """
    mean, std = split.x_train.mean(axis=0), split.x_train.std(axis=0) + 0.1

    def scale(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    return datasets.Split(scale(split.x_train), split.y_train, scale(split.x_test), split.y_test)


def planned_steps(config: TrainingFields, train_rows: int) -> int:
    """`steps` when set, else `epochs` passes of train_rows // batch_size steps (the loop drops the last
    partial batch; at least one step per epoch)."""
    if config.steps is not None:
        return config.steps
    return config.epochs * max(train_rows // config.batch_size, 1)


def classifier_recipe(name: str, description: str, config_class: type, load: Callable[[], datasets.Split],
                      build: Callable[[TrainingFields], Module],
                      after_training: Callable[[Module, datasets.Split, Path], None] | None = None,
                      choices: Mapping[str, Collection[str]] | None = None,
                      extra_check: Callable[[str, TrainingFields], None] | None = None) -> common.Recipe:
    """A recipe that trains `build(config)` with Adam, cosine decay and cross-entropy on `load()`,
    and reports held-out accuracy. `after_training(model, split, run_dir)`, if given, runs once training
    is done (on the standardised split), e.g. to draw figures into the run directory. `choices` and
    `extra_check` are the recipe's own config checks (common.Recipe)."""

    def train(config: TrainingFields) -> dict[str, float]:
        rng.manual_seed(config.seed)
        split = standardize(load())
        model = build(config)
        optimizer = Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps = planned_steps(config, len(split.x_train))
        scheduler = CosineAnnealingLR(optimizer, T_max=steps)
        run_dir = common.run_directory(name, config.out)
        state = common.train_loop(
            model, optimizer, split.x_train, split.y_train, losses.cross_entropy, steps=steps,
            batch_size=config.batch_size, seed=config.seed, run_dir=run_dir, config=config, resume=config.resume,
            scheduler=scheduler, checkpoint_every=config.checkpoint_every,
            evaluate=lambda: common.classification_metrics(model, split.x_test, split.y_test),
            evaluate_every=max(steps // 20, 1), recipe=name)
        metrics = common.classification_metrics(model, split.x_test, split.y_test)
        if after_training is not None:
            after_training(model, split, run_dir)
        return common.finish(run_dir, {**metrics, "train_seconds": state.seconds}, state.losses, state.evaluations)

    def evaluate(ckpt: str) -> dict[str, float]:
        model, _ = common.load_model(ckpt, config_class, build, recipe=name)
        split = standardize(load())
        return common.classification_metrics(model, split.x_test, split.y_test)

    return common.Recipe(name, description, config_class, train, evaluate, choices=choices or {},
                         extra_check=extra_check)
