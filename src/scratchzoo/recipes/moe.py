"""Mixture-of-Experts recipes (models/moe.py).

moe-regression: y = f(x) on [-2, 2] where f is four different functions on four intervals (`regimes`), with
jumps between them. Model: x -> h = Linear(1, d_model)(x) -> h + FFN(h) -> Linear(d_model, 1), where FFN is a
MoE layer (E experts of width `hidden`, top-k) or, for the baseline trained in the same run, a dense FFN of
width top_k * hidden: the same active size per input. Because h is an affine function of x, each router
score is too, so the router can only cut the line into intervals: the experts can specialise on the
regimes. metrics.json: test_mse (MoE), dense_test_mse, expert_load, regime_experts (per regime, the share of
its inputs whose first-choice expert is each expert), train_seconds, dense_train_seconds. Figure (matplotlib
optional): experts.png, the fits and the gate weight of each expert over x (viz/moe.py).

moe-gpt: the character GPT of recipes/gpt.py with MoE feed-forward layers, against the dense GPT of the same
active size, see `MoEGPTConfig`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from scratchzoo import losses, rng
from scratchzoo.autograd import Tensor, no_grad
from scratchzoo.models.gpt import GPT, GPTConfig, residual_init_std
from scratchzoo.models.mlp import ACTIVATIONS, FFN
from scratchzoo.models.moe import MoE, MoEConfig, dispatch_plan
from scratchzoo.nn import Linear, Module, eval_mode, init
from scratchzoo.optim import Adam
from scratchzoo.optim.lr_scheduler import CosineAnnealingLR
from scratchzoo.recipes import common
from scratchzoo.recipes.gpt import (GPTCharConfig, build_gpt, language_model_evaluator, language_model_sampler,
                                    load_corpus, train_language_model)

# ============================================================================ moe-regression

REGIME_BOUNDARIES = (-1.0, 0.0, 1.0)  # f changes formula (and jumps) at these x


def regimes(x: np.ndarray) -> np.ndarray:
    """Four regimes on [-2, 2]: a fast sine, a parabola, a triangle wave, an exponential decay."""
    return np.select([x < -1, x < 0, x < 1],
                     [0.8 * np.sin(4 * np.pi * x),  # [-2, -1): two periods of a sine
                      2 * (x + 0.5) ** 2 + 0.5,  # [-1, 0): a parabola from 1 down to 0.5 and back
                      1 - 4 * np.abs(x - 0.5)],  # [0, 1): a triangle from -1 up to 1 and down
                     np.exp(-3 * (x - 1)) - 1.5,  # [1, 2]: decay from -0.5 toward -1.5
                     ).astype(np.float32)


@dataclass
class MoERegressionConfig:
    d_model: int = 32
    hidden: int = 32  # each expert's width; the dense baseline's FFN is top_k * hidden wide
    num_experts: int = 4
    top_k: int = 2
    activation: str = "gelu"
    noisy_gating: bool = False
    balance_weight: float = 0.01  # loss = MSE + balance_weight * aux_loss (Switch Transformer's 0.01)
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-2  # decayed to 0 along a cosine
    n_train: int = 4096  # x ~ U(-2, 2); the test set is a grid of 2001 points on [-2, 2]
    seed: int = 0
    out: str | None = None


class RegressionNet(Module):
    """x (N, 1) -> h = embed(x) -> h + ffn(h) -> head -> (N, 1); `ffn` is a MoE layer or a dense FFN."""

    def __init__(self, d_model: int, ffn: Module):
        super().__init__()
        self.embed = Linear(1, d_model)  # affine in x: router scores are affine in x too
        self.ffn = ffn
        self.head = Linear(d_model, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        return self.head(h + self.ffn(h))  # the residual carries whatever the experts drop


def build_regression(config: MoERegressionConfig) -> RegressionNet:
    return RegressionNet(config.d_model, MoE(MoEConfig(
        d_model=config.d_model, hidden=config.hidden, num_experts=config.num_experts, top_k=config.top_k,
        activation=config.activation, noisy_gating=config.noisy_gating)))


def build_dense_regression(config: MoERegressionConfig) -> RegressionNet:
    """The same network with one dense FFN as wide as the k experts that each input uses."""
    return RegressionNet(config.d_model, FFN(config.d_model, config.top_k * config.hidden, config.activation))


def regression_data(config: MoERegressionConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x_train = np.random.default_rng(config.seed).uniform(-2, 2, size=(config.n_train, 1)).astype(np.float32)
    x_test = np.linspace(-2, 2, 2001, dtype=np.float32)[:, None]
    return x_train, regimes(x_train), x_test, regimes(x_test)


def regression_loss(model: RegressionNet, weight: float) -> Callable[[Tensor, Tensor], Tensor]:
    """MSE, plus weight * the MoE layer's balancing loss (set by the forward just run) when there is one."""
    def loss(prediction: Tensor, target: Tensor) -> Tensor:
        mse = losses.mse_loss(prediction, target)
        return mse + weight * model.ffn.aux_loss if isinstance(model.ffn, MoE) and weight else mse
    return loss


def regime_experts(model: RegressionNet, x: np.ndarray) -> dict[str, list[float]]:
    """For each regime, the share of its inputs whose first-choice expert is expert 0, 1, ... (after a
    forward of the model over `x`: the routing statistics are those of the last forward)."""
    first = model.ffn.last_expert_index[:, 0]
    edges = (-np.inf, *REGIME_BOUNDARIES, np.inf)
    shares = {}
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (x[:, 0] >= low) & (x[:, 0] < high)
        counts = np.bincount(first[inside], minlength=model.ffn.config.num_experts)
        shares[f"[{max(low, -2):g}, {min(high, 2):g})"] = (counts / counts.sum()).round(3).tolist()
    return shares


@dataclass
class Fit:
    model: RegressionNet
    test_mse: float
    prediction: np.ndarray  # on the test grid
    state: common.LoopState


def fit(model: RegressionNet, config: MoERegressionConfig, data: tuple[np.ndarray, ...], run_dir: Path,
        recipe: str) -> Fit:
    """Adam with cosine decay on MSE (+ the balancing loss); the test MSE over the grid, in one batch so that
    the routing statistics the model keeps are those of the whole grid. `recipe`: the name checkpoints record."""
    x_train, y_train, x_test, y_test = data
    optimizer = Adam(model.parameters(), lr=config.lr)
    state = common.train_loop(model, optimizer, x_train, y_train, regression_loss(model, config.balance_weight),
                              steps=config.steps, batch_size=config.batch_size, seed=config.seed, run_dir=run_dir,
                              config=config, scheduler=CosineAnnealingLR(optimizer, T_max=config.steps), recipe=recipe)
    prediction = common.predict(model, x_test, batch_size=len(x_test))
    return Fit(model, float(((prediction - y_test) ** 2).mean()), prediction, state)


def train_regression(config: MoERegressionConfig) -> dict[str, Any]:
    """The MoE (checkpoint in the run directory), then the dense baseline from the same seed (run_dir/dense)."""
    data = regression_data(config)
    run_dir = common.run_directory("moe-regression", config.out)
    rng.manual_seed(config.seed)
    moe = fit(build_regression(config), config, data, run_dir, "moe-regression")
    rng.manual_seed(config.seed)
    (run_dir / "dense").mkdir(exist_ok=True)
    dense = fit(build_dense_regression(config), config, data, run_dir / "dense", "moe-regression (dense baseline)")
    layer = moe.model.ffn
    metrics = {"test_mse": moe.test_mse, "dense_test_mse": dense.test_mse,
               "expert_load": layer.last_load.round(4).tolist(), "regime_experts": regime_experts(moe.model, data[2]),
               "active_parameters": active_parameters(moe.model), "total_parameters": moe.model.num_parameters(),
               "dense_parameters": dense.model.num_parameters(),
               "train_seconds": moe.state.seconds, "dense_train_seconds": dense.state.seconds}
    from scratchzoo.viz.moe import gate_matrix, plot_expert_regions  # optional dependency, imported late
    plot_expert_regions(run_dir / "experts.png", data[2][:, 0], data[3][:, 0],
                        {f"MoE ({config.num_experts} experts of width {config.hidden}, top-{config.top_k})":
                         moe.prediction[:, 0],
                         f"dense FFN (width {config.top_k * config.hidden})": dense.prediction[:, 0]},
                        gate_matrix(layer.last_expert_index, layer.last_gates, config.num_experts), REGIME_BOUNDARIES)
    return common.finish(run_dir, metrics, moe.state.losses)


def active_parameters(model: Module) -> int:
    """Parameters one input uses: everything but the experts it is not routed to (k of E run)."""
    total = model.num_parameters()
    moe = [m for m in model.modules() if isinstance(m, MoE)]
    for layer in moe:
        per_expert = layer.experts[0].num_parameters()
        total -= (layer.config.num_experts - layer.config.top_k) * per_expert
    return total


def evaluate_regression(ckpt: str) -> dict[str, float]:
    model, config = common.load_model(ckpt, MoERegressionConfig, build_regression, recipe="moe-regression")
    _, _, x_test, y_test = regression_data(config)
    return {"test_mse": float(((common.predict(model, x_test) - y_test) ** 2).mean())}


def check_experts(recipe: str, config: Any) -> None:
    """A token picks top_k of the num_experts experts: at most all of them."""
    common.check_at_most(recipe, config, "top_k", "num_experts")


MOE_REGRESSION = common.Recipe("moe-regression", "MoE (4 experts, top-2) vs a dense FFN of the same active size "
                               "on a target with four regimes; which expert serves which input",
                               MoERegressionConfig, train_regression, evaluate_regression,
                               choices={"activation": ACTIVATIONS}, extra_check=check_experts)


# ============================================================================ moe-gpt


@dataclass
class MoEGPTConfig(GPTCharConfig):
    """moe-gpt: gpt-char's loop and data with every feed-forward layer a MoE, plus two baselines trained on the
    same corpus for the same steps: the MoE without the balancing loss, and the dense GPT. Defaults: a small
    GPT and a short run (all three in ~10-15 minutes on 2 CPU cores)."""
    n_layer: int = 2
    n_embd: int = 64
    batch_size: int = 16
    lr: float = 2e-3  # a short run: twice gpt-char's peak
    min_lr: float = 2e-4
    max_iters: int = 1000
    lr_decay_iters: int = 1000
    warmup_iters: int = 50
    eval_interval: int = 0  # validation over the whole split at the end only (it costs as much as ~80 steps)
    checkpoint_every: int = 0
    sample_chars: int = 300
    num_experts: int = 4
    top_k: int = 2
    expert_hidden: int | None = None  # None: 4 * n_embd / top_k, so the k active experts match the dense 4C MLP
    balance_weight: float = 0.01  # loss += balance_weight * sum over layers of aux_loss (Switch: 0.01)
    capacity_factor: float | None = None
    noisy_gating: bool = False
    num_shared_experts: int = 0
    share_down_projection: bool = False  # lighter experts: one down-projection for all (models/moe.py)
    load_windows: int = 64  # validation windows (of block_size) read to measure the expert load
    only_moe: bool = False  # skip the two baselines


def expert_width(config: MoEGPTConfig) -> int:
    return config.expert_hidden or 4 * config.n_embd // config.top_k


def build_moe_gpt(config: MoEGPTConfig, vocab_size: int) -> GPT:
    """GPT whose blocks use a MoE feed-forward layer. After GPT's initialisation (every Linear ~ N(0, 0.02)),
    each expert's down-projection gets the scaled init of the dense c_proj (it writes into the residual
    stream) and W_noise goes back to 0."""
    def moe(gpt: GPTConfig, layer: int) -> MoE:
        return MoE(MoEConfig(d_model=gpt.n_embd, hidden=expert_width(config), num_experts=config.num_experts,
                             top_k=config.top_k, activation="gelu", noisy_gating=config.noisy_gating,
                             capacity_factor=config.capacity_factor, num_shared_experts=config.num_shared_experts,
                             share_down_projection=config.share_down_projection, bias=gpt.bias))

    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=config.block_size, n_layer=config.n_layer,
                          n_head=config.n_head, n_embd=config.n_embd, dropout=config.dropout, bias=config.bias),
                feed_forward=moe)
    for layer in moe_layers(model):
        downs = [layer.down] if layer.down is not None else [expert.down for expert in layer.experts]
        for down in downs + [expert.down for expert in layer.shared_experts]:
            init.normal_(down.weight, 0.0, residual_init_std(config.n_layer))
        if layer.router.noise is not None:
            init.zeros_(layer.router.noise.weight)
    return model


def moe_layers(model: Module) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]


def balancing_loss(weight: float):
    """The auxiliary loss for train_language_model: weight * the sum over layers of each layer's aux_loss."""
    def auxiliary(model: Module) -> Tensor:
        return sum(layer.aux_loss for layer in moe_layers(model)) * weight
    return auxiliary


@no_grad()
def measure_load(model: Module, ids: np.ndarray, config: MoEGPTConfig) -> tuple[np.ndarray, float]:
    """(layers, E): the fraction of routed (token, slot) assignments each expert gets in each layer, over the
    first `load_windows` validation windows (eval mode: no noise, no capacity limit); and the mean over layers
    of the fraction of those assignments over training's capacity C: sum_i max(0, routed_i - C) / (N k). (In
    training mode the drops of one layer change the input of the next, so beyond the first layer this is the
    overflow of the eval-mode routing, not exactly what training drops.)"""
    windows = min(config.load_windows, (len(ids) - 1) // config.block_size)
    with eval_mode(model):
        model(Tensor(ids[:windows * config.block_size].reshape(windows, config.block_size)))
    layers = moe_layers(model)
    capacity = layers[0].capacity(windows * config.block_size, training=True)
    dropped = [dispatch_plan(layer.last_expert_index, config.num_experts, capacity).dropped
               / layer.last_expert_index.size for layer in layers]  # training's capacity cut, on this routing
    return np.stack([layer.last_load for layer in layers]), float(np.mean(dropped))


def keeping(build: Callable[[Any, int], Module], kept: list[Module]) -> Callable[[Any, int], Module]:
    """`build`, remembering the model it makes (train_language_model returns only the metrics)."""
    def build_and_keep(config: Any, vocab_size: int) -> Module:
        kept.append(build(config, vocab_size))
        return kept[-1]
    return build_and_keep


def train_moe_gpt(config: MoEGPTConfig) -> dict[str, Any]:
    """The MoE GPT with the balancing loss (checkpoint in the run directory; --resume continues it), then,
    unless only_moe, the MoE without it (run_dir/no_balance) and the dense GPT (run_dir/dense), each from
    scratch. metrics.json: val_loss, expert_load (per layer), max_load_over_fair_share and
    min_load_over_fair_share (load * E: 1 is a fair share), dropped, train_seconds; the same prefixed
    no_balance_; dense_val_loss, dense_train_seconds; parameter counts; sample."""
    run_dir = common.run_directory("moe-gpt", config.out)
    _, _, val_ids = load_corpus(config)
    runs = [("", balancing_loss(config.balance_weight), run_dir, config)]
    if not config.only_moe:
        runs.append(("no_balance_", None, run_dir / "no_balance", dataclasses.replace(config, resume=None)))
    metrics: dict[str, Any] = {}
    for prefix, auxiliary, directory, run_config in runs:
        kept: list[Module] = []
        directory.mkdir(exist_ok=True)
        result = train_language_model(run_config, keeping(build_moe_gpt, kept), directory, auxiliary, recipe="moe-gpt")
        load, dropped = measure_load(kept[0], val_ids, config)
        metrics.update({f"{prefix}val_loss": result["val_loss"], f"{prefix}expert_load": load.round(4).tolist(),
                        f"{prefix}max_load_over_fair_share": float(load.max() * config.num_experts),
                        f"{prefix}min_load_over_fair_share": float(load.min() * config.num_experts),
                        f"{prefix}dropped": dropped, f"{prefix}train_seconds": result["train_seconds"]})
        if not prefix:
            metrics.update(sample=result["sample"], active_parameters=active_parameters(kept[0]),
                           total_parameters=kept[0].num_parameters())
    if not config.only_moe:
        kept = []
        (run_dir / "dense").mkdir(exist_ok=True)
        result = train_language_model(dataclasses.replace(config, resume=None), keeping(build_gpt, kept),
                                      run_dir / "dense", recipe="moe-gpt (dense baseline)")
        metrics.update(dense_val_loss=result["val_loss"], dense_train_seconds=result["train_seconds"],
                       dense_parameters=kept[0].num_parameters())
        from scratchzoo.viz.moe import plot_expert_load  # optional dependency, imported late
        plot_expert_load(run_dir / "load.png", {
            "MoE + balancing loss": np.asarray(metrics["expert_load"]),
            "MoE, no balancing loss": np.asarray(metrics["no_balance_expert_load"])})
    return common.finish(run_dir, metrics, [])  # (no losses: the MoE run's curves.png stays)


def check_moe_gpt(recipe: str, config: MoEGPTConfig) -> None:
    check_experts(recipe, config)
    common.check_multiple(recipe, config, "n_embd", "n_head")


MOE_GPT = common.Recipe("moe-gpt", "GPT with MoE feed-forward layers (4 experts, top-2) vs the dense GPT of the "
                        "same active size, and the expert load with and without the balancing loss", MoEGPTConfig,
                        train_moe_gpt, language_model_evaluator("moe-gpt", MoEGPTConfig, build_moe_gpt),
                        sample=language_model_sampler("moe-gpt", MoEGPTConfig, build_moe_gpt),
                        extra_check=check_moe_gpt)
