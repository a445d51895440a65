"""What every recipe shares: the run directory, the training loop, checkpoints and metrics.

The loop is step based. The batches of epoch e are a permutation drawn from a generator seeded with
(seed, e), and dropout draws from the library's generator, whose state each checkpoint stores; so a
run stopped after N steps and resumed continues exactly as if it had never stopped.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm import tqdm

from scratchzoo import io, rng
from scratchzoo.autograd import Tensor, no_grad
from scratchzoo.nn import Module, eval_mode
from scratchzoo.nn.utils import clip_grad_norm_
from scratchzoo.optim import Optimizer


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint stays on disk."""


class PromptError(ValueError):
    """A prompt the model cannot read (say, a character outside its vocabulary)."""


@dataclass
class Recipe:
    """A named task: its config dataclass, how to train it and how to evaluate a checkpoint.

    A generative recipe also has `sample(ckpt, prompt, max_new_tokens, temperature, top_k, top_p, seed)`,
    an iterator over the pieces of text that continue the prompt (`scratchzoo sample` prints them as
    they come).
    """
    name: str
    description: str
    config_class: type
    train: Callable[..., dict[str, float]]
    evaluate: Callable[..., dict[str, float]]
    sample: Callable[..., Iterator[str]] | None = None


def check_finite(value: float, step: int, last_saved: tuple[int, Path] | None) -> None:
    """Stop on a NaN/inf loss at (0-based) `step` with TrainingDiverged, naming the last good checkpoint."""
    if not math.isfinite(value):
        kept = (f"The last good checkpoint (step {last_saved[0]}) is in {last_saved[1]}" if last_saved
                else "No checkpoint was saved before it")
        raise TrainingDiverged(f"loss became {value} at step {step + 1}; stopping. {kept}")


def optimization_step(loss: Tensor, model: Module, optimizer: Optimizer, scheduler: Any = None,
                      clip: float = 0.0) -> float | None:
    """One update: zero the gradients, backpropagate `loss`, scale the gradients down so that their global
    norm is at most `clip` (clip > 0), step the optimizer, then the learning-rate schedule (if any).
    Returns the global gradient norm before clipping (None when clip <= 0: it is not computed)."""
    optimizer.zero_grad()
    loss.backward()
    norm = clip_grad_norm_(model.parameters(), clip) if clip > 0 else None
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return norm


def checkpoint_due(done: int, every: int, last: int) -> bool:
    """Save after `done` steps: every `every` steps (0: never in between) and after the last one."""
    return bool(every and done % every == 0) or done == last


def run_directory(recipe: str, out: str | None) -> Path:
    """`out` if given, else runs/<recipe>/<timestamp>/ (a new directory per run)."""
    path = Path(out) if out else Path("runs") / recipe / time.strftime("%Y%m%d-%H%M%S")
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_from_dict(config_class: type, values: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known})


@dataclass
class LoopState:
    """What the loop hands to the caller: the losses it saw and where it stopped."""
    losses: list[float]
    evaluations: dict[str, list[tuple[int, float]]]
    seconds: float


def train_loop(model: Module, optimizer: Optimizer, x: np.ndarray, y: np.ndarray,
               loss_fn: Callable[[Tensor, Tensor], Tensor], *, steps: int, batch_size: int, seed: int,
               run_dir: Path, config: Any, resume: str | None = None, checkpoint_every: int = 0,
               scheduler: Any = None, evaluate: Callable[[], dict[str, float]] | None = None,
               evaluate_every: int = 0, progress: bool = True) -> LoopState:
    """Minibatch training for `steps` steps: forward, loss, backward, optimizer step.

    Checkpoints go to run_dir every `checkpoint_every` steps (0: only at the end). `resume` names a
    checkpoint directory to continue from. A non-finite loss stops the loop with TrainingDiverged.
    `evaluate()` runs every `evaluate_every` steps; its metrics are kept for the curves.
    """
    start = 0
    last_saved: tuple[int, str | Path] | None = None  # (step, directory) of the newest complete checkpoint
    if resume:
        checkpoint = io.load_checkpoint(resume)
        model.load_state_dict(checkpoint.model_state)
        optimizer.load_state_dict(checkpoint.optimizer_state)
        if scheduler is not None and "scheduler" in checkpoint.extra:
            scheduler.load_state_dict(checkpoint.extra["scheduler"])
        rng.set_rng_state(checkpoint.rng_state)
        start = checkpoint.step
        last_saved = (start, resume)
    per_epoch = max(len(x) // batch_size, 1)  # drop the last partial batch: every step sees batch_size rows
    losses: list[float] = []
    evaluations: dict[str, list[tuple[int, float]]] = {}
    began = time.perf_counter()
    model.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=None if progress else True, desc=run_dir.name,
               dynamic_ncols=True)
    order, order_epoch = None, -1
    for step in bar:
        epoch, position = divmod(step, per_epoch)
        if epoch != order_epoch:
            order, order_epoch = np.random.default_rng([seed, epoch]).permutation(len(x)), epoch
        rows = order[position * batch_size:(position + 1) * batch_size]
        loss = loss_fn(model(Tensor(x[rows])), Tensor(y[rows]))
        value = loss.item()
        check_finite(value, step, last_saved)
        optimization_step(loss, model, optimizer, scheduler)
        losses.append(value)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{value:.4f}")
        done = step + 1
        if evaluate is not None and evaluate_every and done % evaluate_every == 0:
            for name, metric in evaluate().items():
                evaluations.setdefault(name, []).append((done, metric))
            model.train()
        if checkpoint_due(done, checkpoint_every, steps):
            save(run_dir, model, optimizer, done, config, scheduler)
            last_saved = (done, run_dir)
    bar.close()
    return LoopState(losses, evaluations, time.perf_counter() - began)


def save(run_dir: Path, model: Module, optimizer: Optimizer, step: int, config: Any, scheduler: Any = None) -> None:
    extra: dict[str, Any] = {"config": dataclasses.asdict(config)}
    if scheduler is not None:
        extra["scheduler"] = scheduler.state_dict()
    io.save_checkpoint(run_dir, model.state_dict(), optimizer.state_dict(), step, rng.get_rng_state(), extra)


def load_model(ckpt: str, config_class: type, build: Callable[[Any], Module]) -> tuple[Module, Any]:
    """Rebuild a recipe's model from a checkpoint directory (its config travels in the checkpoint)."""
    checkpoint = io.load_checkpoint(ckpt)
    config = config_from_dict(config_class, checkpoint.extra.get("config", {}))
    model = build(config)
    model.load_state_dict(checkpoint.model_state)
    return model, config


@no_grad()
def predict(model: Module, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Model outputs for all rows, in eval mode (the caller's mode back after), in batches, with no graph."""
    with eval_mode(model):
        outputs = [model(Tensor(x[i:i + batch_size])).data for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs)


def classification_metrics(model: Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    logits = predict(model, x)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {"test_accuracy": float((logits.argmax(axis=1) == y).mean()),
            "test_loss": float(-log_probs[np.arange(len(y)), y].mean())}


def finish(run_dir: Path, metrics: dict[str, float], losses: list[float], evaluations: dict[str, list] | None = None
           ) -> dict[str, float]:
    """Write metrics.json and, when matplotlib is installed, the training curve."""
    metrics = {**metrics, "run_dir": str(run_dir)}
    io.write_json(run_dir / "metrics.json", metrics)
    from scratchzoo.viz import plot_curves  # optional dependency, imported late
    plot_curves(run_dir / "curves.png", losses, evaluations or {})
    return metrics
