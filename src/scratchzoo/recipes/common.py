"""What every recipe shares: the config check, the run directory, the training loop, checkpoints (which
record the recipe that wrote them, so eval and resume refuse another recipe's) and metrics.

The loop is step based. The batches of epoch e are a permutation drawn from a generator seeded with
(seed, e), and dropout draws from the library's generator, whose state each checkpoint stores; so a
run stopped after N steps and resumed continues exactly as if it had never stopped.
"""
from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import math
import numbers
import shutil
import time
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping

import numpy as np
from tqdm import tqdm

from scratchzoo import io, rng
from scratchzoo.autograd import Tensor, no_grad
from scratchzoo.data import datasets
from scratchzoo.nn import Module, eval_mode
from scratchzoo.nn.utils import clip_grad_norm_
from scratchzoo.optim import Optimizer


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint stays on disk."""


class PromptError(ValueError):
    """A prompt the model cannot read (say, a character outside its vocabulary)."""


class ConfigError(ValueError):
    """A config value a recipe cannot train with (a batch size of 0, a dropout of 1.5, an unknown cell).
    The message names the recipe, the field as its flag, what is allowed and what was given."""


# ============================================================================ checking a config



@dataclass(frozen=True)
class Range:
    """The numbers from low to high, each end open or closed: Range(0, 1) is [0, 1)."""
    low: float
    high: float = math.inf
    low_closed: bool = True
    high_closed: bool = False

    def __contains__(self, value: float) -> bool:  # NaN is in no range, and infinity in none we use
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def __str__(self) -> str:  # ">= 1", "> 0", "in [0, 1)"
        if self.high == math.inf:
            return f"{'>=' if self.low_closed else '>'} {self.low:g}"
        left, right = "[" if self.low_closed else "(", "]" if self.high_closed else ")"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


# Allowed values by field name. Unlisted integers (sizes, counts, steps, epochs) must be >= 1 and unlisted
# floats (weight decay, clipping norms, temperatures, loss weights) >= 0; None passes (an unset option).
FIELD_RANGES: dict[str, Range | None] = {
    "seed": None,  # any integer
    **dict.fromkeys(["checkpoint_every", "evaluate_every", "eval_interval", "warmup_iters", "warmup_steps",
                     "sample_chars", "num_shared_experts"], Range(0)),  # 0: never / none
    **dict.fromkeys(["dropout", "label_smoothing", "beta1", "beta2"], Range(0, 1)),
    **dict.fromkeys(["val_fraction", "test_fraction"], Range(0, 1, low_closed=False)),
    **dict.fromkeys(["lr", "capacity_factor", "max_minutes"], Range(0, low_closed=False)),
}
SHARED_CHOICES: dict[str, Collection[str]] = {"corpus": datasets.CORPORA}
_KIND_NAMES = {int: "an integer", float: "a number", "sequence": "comma-separated integers"}


def flag(name: str) -> str:
    """The command-line spelling of a config field: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


def field_type(config_class: type, name: str) -> Any:
    """The type of a config field's values, from its annotation: int | None -> int; a list, tuple or
    Sequence annotation -> 'sequence' (of integers, the only sequences configs hold)."""
    hint = typing.get_type_hints(config_class)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        hint = args[0]
    if typing.get_origin(hint) in (list, tuple, collections.abc.Sequence):
        return "sequence"
    return hint


def check_config(recipe: str, config: Any, choices: Mapping[str, Collection[str]] | None = None) -> None:
    """Raise ConfigError for the first field of `config` whose value the recipe cannot train with: a number
    outside its range (FIELD_RANGES) or a name outside `choices` (field -> allowed names; SHARED_CHOICES
    apply to every recipe). None passes: it is an unset option."""
    names = {**SHARED_CHOICES, **(choices or {})}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None:
            continue
        expected = _expected(field.name, field_type(type(config), field.name), value, names.get(field.name))
        if expected is not None:
            shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            raise ConfigError(f"{recipe}: {flag(field.name)} must be {expected}; got {shown!r}")


def check_multiple(recipe: str, config: Any, whole: str, part: str) -> None:
    """ConfigError unless field `whole` is a multiple of field `part` (d_model of the number of heads)."""
    if getattr(config, whole) % getattr(config, part):
        raise ConfigError(f"{recipe}: {flag(whole)} must be a multiple of {flag(part)}; got {getattr(config, whole)} "
                          f"and {getattr(config, part)}")


def check_at_most(recipe: str, config: Any, field: str, bound: str) -> None:
    """ConfigError unless field `field` is at most field `bound` (top_k of the number of experts)."""
    if getattr(config, field) > getattr(config, bound):
        raise ConfigError(f"{recipe}: {flag(field)} must be at most {flag(bound)} ({getattr(config, bound)}); "
                          f"got {getattr(config, field)}")


def _expected(name: str, kind: Any, value: Any, names: Collection[str] | None) -> str | None:
    """What a value of field `name` must be, when `value` is not that; None when it is fine."""
    if names is not None:
        return None if value in names else f"one of {', '.join(names)}"
    allowed = FIELD_RANGES.get(name, Range(0) if kind is float else Range(1))
    if allowed is None or kind not in (int, float, "sequence"):
        return None
    values = value if kind == "sequence" else [value]
    number_type = numbers.Real if kind is float else numbers.Integral
    if all(isinstance(v, number_type) and not isinstance(v, bool) and v in allowed for v in values):
        return None
    return f"{_KIND_NAMES[kind]} {allowed}"


@dataclass
class Recipe:
    """A named task: its config dataclass, how to train it and how to evaluate a checkpoint.

    A generative recipe also has `sample(ckpt, prompt, max_new_tokens, temperature, top_k, top_p, seed)`,
    an iterator over the pieces of text that continue the prompt (`scratchzoo sample` prints them as
    they come).

    `check_config(config)` raises ConfigError for a value it cannot train with: the ranges every recipe
    shares (FIELD_RANGES), the names its string fields accept (`choices`, say {"cell": ("gru", "lstm")}),
    and `extra_check(name, config)` for what those cannot see (a combination of fields). `train` runs it
    first, so a bad config fails before anything is made, from Python as from the CLI.
    """
    name: str
    description: str
    config_class: type
    train: Callable[..., dict[str, float]]
    evaluate: Callable[..., dict[str, float]]
    sample: Callable[..., Iterator[str]] | None = None
    choices: Mapping[str, Collection[str]] = dataclasses.field(default_factory=dict)
    extra_check: Callable[[str, Any], None] | None = None

    def __post_init__(self) -> None:
        train = self.train

        def checked_train(config: Any) -> dict[str, float]:  # a bad value fails before anything is made
            self.check_config(config)
            return train(config)

        self.train = checked_train

    def check_config(self, config: Any) -> None:
        """Raise ConfigError naming this recipe, the flag, the allowed and the given value."""
        check_config(self.name, config, self.choices)
        if self.extra_check is not None:
            self.extra_check(self.name, config)

    def allowed_names(self, field: str) -> Collection[str] | None:
        """The names a string field accepts (None: any)."""
        return {**SHARED_CHOICES, **self.choices}.get(field)


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
               evaluate_every: int = 0, progress: bool = True, recipe: str | None = None) -> LoopState:
    """Minibatch training for `steps` steps: forward, loss, backward, optimizer step.

    Checkpoints go to run_dir every `checkpoint_every` steps (0: only at the end), recording `recipe`'s
    name when given. `resume` names a checkpoint directory to continue from (of the same recipe). A
    non-finite loss stops the loop with TrainingDiverged. `evaluate()` runs every `evaluate_every` steps;
    its metrics are kept for the curves.
    """
    start = 0
    last_saved: tuple[int, str | Path] | None = None  # (step, directory) of the newest complete checkpoint
    if resume:
        start = resume_from(resume, recipe, model, optimizer, scheduler).step
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
            save(run_dir, model, optimizer, done, config, scheduler, recipe=recipe)
            last_saved = (done, run_dir)
    bar.close()
    if resume and start >= steps:
        keep_finished_run(resume, run_dir, lambda: save(run_dir, model, optimizer, start, config, scheduler,
                                                        recipe=recipe))
    return LoopState(losses, evaluations, time.perf_counter() - began)


def resume_from(resume: str, recipe: str | None, model: Module, optimizer: Optimizer, scheduler: Any = None
                ) -> io.Checkpoint:
    """Load the checkpoint directory `resume` (of `recipe`, when it names one) into the model, the optimizer,
    the scheduler (when saved) and the library's generator; returns it (its step, its extra)."""
    checkpoint = read_checkpoint(resume, recipe)
    restore(checkpoint, resume, recipe, model, optimizer, scheduler)
    return checkpoint


def restore(checkpoint: io.Checkpoint, resume: str, recipe: str | None, model: Module, optimizer: Optimizer,
            scheduler: Any = None) -> None:
    """resume_from for a checkpoint already read (by a recipe that checks more of it first)."""
    with restoring(resume, recipe):
        model.load_state_dict(checkpoint.model_state)
        optimizer.load_state_dict(checkpoint.optimizer_state)
    if scheduler is not None and "scheduler" in checkpoint.extra:
        scheduler.load_state_dict(checkpoint.extra["scheduler"])
    rng.set_rng_state(checkpoint.rng_state)


def keep_finished_run(resume: str, run_dir: Path, save_checkpoint: Callable[[], None]) -> None:
    """A resume of a run that had already finished trains nothing; its new run directory still gets the
    checkpoint (`save_checkpoint()`) and the finished run's curves.png (no new losses to draw)."""
    save_checkpoint()
    curves = Path(resume) / "curves.png"
    if curves.exists() and not (run_dir / "curves.png").exists():
        shutil.copyfile(curves, run_dir / "curves.png")


def save(run_dir: Path, model: Module, optimizer: Optimizer, step: int, config: Any, scheduler: Any = None, *,
         recipe: str | None = None, extra: dict[str, Any] | None = None) -> None:
    """A checkpoint of the run: model, optimizer, step, generator state, and in `extra` the config, the
    scheduler, the recipe's name (checked on eval and resume) and the caller's `extra` entries."""
    record: dict[str, Any] = {"config": dataclasses.asdict(config)}
    if recipe is not None:
        record["recipe"] = recipe
    if scheduler is not None:
        record["scheduler"] = scheduler.state_dict()
    record.update(extra or {})
    io.save_checkpoint(run_dir, model.state_dict(), optimizer.state_dict(), step, rng.get_rng_state(), record)


def read_checkpoint(ckpt: str, recipe: str | None = None) -> io.Checkpoint:
    """io.load_checkpoint, refusing one that another recipe saved (older checkpoints name no recipe: they load)."""
    checkpoint = io.load_checkpoint(ckpt)
    saved_by = checkpoint.extra.get("recipe")
    if recipe is not None and saved_by is not None and saved_by != recipe:
        raise io.CheckpointError(f"{ckpt} was trained by recipe {saved_by}, not {recipe}")
    return checkpoint


@contextlib.contextmanager
def restoring(ckpt: str, recipe: str | None) -> Iterator[None]:
    """Report a checkpoint that does not fit the model being rebuilt from it (an older checkpoint of
    another recipe, which does not name its recipe) as one CheckpointError."""
    try:
        yield
    except (TypeError, ValueError, KeyError) as error:
        raise io.CheckpointError(f"{ckpt} does not fit recipe {recipe or '?'} (trained by another recipe?): "
                                 f"{error}") from error


def load_model(ckpt: str, config_class: type, build: Callable[[Any], Module], recipe: str | None = None
               ) -> tuple[Module, Any]:
    """Rebuild a recipe's model from a checkpoint directory (its config travels in the checkpoint)."""
    checkpoint = read_checkpoint(ckpt, recipe)
    config = config_from_dict(config_class, checkpoint.extra.get("config", {}))
    with restoring(ckpt, recipe):
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
