"""trainer-quadratic: fit y = 3x^2 + 5 on [-1, 1] with an MLP, the hand-written Adam and MSE.

The smallest complete training job: data, model, loss, optimizer, loop. `show_backward` prints the
value and gradient at every node of x -> (*w) -> (+b) -> y_pred -> MSE for one example.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from scratchzoo import losses, rng
from scratchzoo.autograd import Tensor, tensor
from scratchzoo.data import datasets
from scratchzoo.models.mlp import ACTIVATIONS, MLP, MLPConfig
from scratchzoo.optim import Adam
from scratchzoo.optim.lr_scheduler import CosineAnnealingLR
from scratchzoo.recipes import common


@dataclass
class QuadraticConfig:
    hidden: Sequence[int] = field(default_factory=lambda: (64, 64))
    activation: str = "relu"
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-2  # decayed to 0 along a cosine over the run
    weight_decay: float = 0.0
    n_train: int = 2048
    seed: int = 0
    checkpoint_every: int = 500
    out: str | None = None
    resume: str | None = None
    show_backward: bool = False


def build(config: QuadraticConfig) -> MLP:
    return MLP(MLPConfig(in_features=1, hidden=tuple(config.hidden), out_features=1, activation=config.activation))


def evaluate(model: MLP, split: datasets.Split) -> dict[str, float]:
    prediction = common.predict(model, split.x_test)
    return {"test_mse": float(((prediction - split.y_test) ** 2).mean())}


def train(config: QuadraticConfig) -> dict[str, float]:
    if config.show_backward:
        show_backward()
    rng.manual_seed(config.seed)
    split = datasets.quadratic(n_train=config.n_train, seed=config.seed)
    model = build(config)
    optimizer = Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = CosineAnnealingLR(optimizer, T_max=config.steps)
    run_dir = common.run_directory(RECIPE.name, config.out)
    state = common.train_loop(model, optimizer, split.x_train, split.y_train, losses.mse_loss,
                              steps=config.steps, batch_size=config.batch_size, seed=config.seed, run_dir=run_dir,
                              config=config, resume=config.resume, scheduler=scheduler,
                              checkpoint_every=config.checkpoint_every, evaluate=lambda: evaluate(model, split),
                              evaluate_every=max(config.steps // 20, 1), recipe=RECIPE.name)
    return common.finish(run_dir, {**evaluate(model, split), "train_seconds": state.seconds},
                         state.losses, state.evaluations)


def evaluate_checkpoint(ckpt: str) -> dict[str, float]:
    model, config = common.load_model(ckpt, QuadraticConfig, build, recipe=RECIPE.name)
    return evaluate(model, datasets.quadratic(n_train=config.n_train, seed=config.seed))


def show_backward(x: float = 2.0, w: float = 3.0, b: float = 1.0, y: float = 10.0, echo: bool = True
                  ) -> dict[str, tuple[float, float]]:
    """Forward and backward through x -> (*w) -> (+b) -> y_pred -> MSE for one example.

    Returns {node: (value, dloss/dnode)}. By the chain rule, with L = (y_pred - y)^2:
    dL/dy_pred = 2 (y_pred - y);  dL/db = dL/dy_pred;  dL/dw = dL/dy_pred * x;  dL/dx = dL/dy_pred * w.
    """
    x_t, w_t, b_t = (tensor([float(v)], requires_grad=True) for v in (x, w, b))  # float: show_backward(x=2) works
    wx = x_t * w_t
    y_pred = wx + b_t
    loss = losses.mse_loss(y_pred, Tensor(np.array([y], dtype=np.float32)))
    for node in (wx, y_pred, loss):
        node.retain_grad()
    loss.backward()
    nodes = {"x": x_t, "w": w_t, "b": b_t, "w*x": wx, "y_pred": y_pred, "loss": loss}
    table = {name: (float(t.data.reshape(-1)[0]), float(t.grad.reshape(-1)[0])) for name, t in nodes.items()}
    if echo:
        print("node      value     dloss/dnode")
        for name, (value, grad) in table.items():
            print(f"{name:<8} {value:>8.3f} {grad:>12.3f}")
    return table


RECIPE = common.Recipe("trainer-quadratic", "fit y = 3x^2 + 5 with an MLP, Adam and MSE (target: test MSE < 1e-3)",
                       QuadraticConfig, train, evaluate_checkpoint, choices={"activation": ACTIVATIONS})
