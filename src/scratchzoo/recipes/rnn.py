"""Recurrent recipes.

gru-mnist1d and lstm-mnist1d: MNIST-1D read as a sequence of 40 steps of one number each. Target: test
accuracy >= 91%, the GRU figure of the MNIST-1D paper. The recurrent layer sees one sample per step and
classifies from its last hidden state (models/rnn.py, SequenceClassifier).

lstm-charlm and rnn-charlm: a character language model (models/rnn.py, CharLM) on the Python standard
library's source (or --corpus tinyshakespeare), trained with truncated backprop through time: the text is
cut into batch_size parallel streams, read seq_len characters at a time; the state carries over from one
window to the next but the graph does not (detach), and the gradient norm is clipped. metrics.json:
val_loss (nats per character on the held-out last 10% of the text), train_seconds and a generated sample.
Checkpoints every `checkpoint_every` steps carry the recurrent state as well, so `--resume DIR` continues
bit for bit (the window read at a step is a function of the step), and the vocabulary, so `scratchzoo
sample lstm-charlm --ckpt DIR` streams a continuation of a prompt (temperature, top-k, top-p, seed).

Figures (matplotlib optional, viz/rnn.py): hidden.png for every recipe here (the hidden state while reading
one test signal / the first 100 validation characters) and, for lstm-charlm, gates.png (the input, forget
and output gates over those characters).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from scratchzoo import losses, rng
from scratchzoo.autograd import Tensor, no_grad
from scratchzoo.data import datasets
from scratchzoo.models.rnn import (CELLS, CharLM, CharLMConfig, SequenceClassifier, SequenceClassifierConfig,
                                   detach_state, generate, stream)
from scratchzoo.nn import eval_mode
from scratchzoo.optim import Adam
from scratchzoo.optim.lr_scheduler import CosineAnnealingLR
from scratchzoo.recipes import common
from scratchzoo.recipes.classify import TrainingFields, classifier_recipe
from scratchzoo.recipes.gpt import CharTokenizer


# ============================================================================ MNIST-1D as a sequence


@dataclass
class GRUMNIST1DConfig(TrainingFields):
    cell: str = "gru"
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0  # between stacked layers only (needs num_layers >= 2)
    epochs: int = 75  # 3000 steps: 40 batches of 100 per pass over the 4000 training signals
    batch_size: int = 100
    lr: float = 3e-3
    weight_decay: float = 0.0


@dataclass
class LSTMMNIST1DConfig(GRUMNIST1DConfig):
    cell: str = "lstm"


def check_dropout_between_layers(recipe: str, config: Any) -> None:
    """Dropout acts between stacked recurrent layers only, so with one layer it would do nothing. PyTorch
    warns and trains without it; here it is an error, because a warning scrolls away above the progress bar
    and the run would silently not be the one asked for."""
    if config.dropout > 0 and config.num_layers < 2:
        raise common.ConfigError(f"{recipe}: --dropout {config.dropout} needs --num-layers 2 or more (dropout "
                                 f"acts between stacked recurrent layers only); got --num-layers {config.num_layers}")


def build_classifier(config: GRUMNIST1DConfig) -> SequenceClassifier:
    return SequenceClassifier(SequenceClassifierConfig(1, 10, config.hidden_size, config.num_layers, config.cell,
                                                       config.dropout))


def mnist1d_sequences() -> datasets.Split:
    """MNIST-1D as sequences of 40 steps with one feature each: (N, 40) -> (N, 40, 1)."""
    split = datasets.mnist1d()
    return datasets.Split(split.x_train[:, :, None], split.y_train, split.x_test[:, :, None], split.y_test)


def draw_classifier_figures(model: SequenceClassifier, split: datasets.Split, run_dir: Path) -> None:
    """hidden.png: the hidden state while the model reads the first test signal (when matplotlib is installed)."""
    from scratchzoo.viz.rnn import plot_hidden_states  # optional dependency, imported late
    plot_hidden_states(model, split.x_test[0], run_dir / "hidden.png")


GRU_MNIST1D = classifier_recipe("gru-mnist1d", "GRU over MNIST-1D's 40 steps (target: test accuracy >= 91%, "
                                "the paper's GRU)", GRUMNIST1DConfig, mnist1d_sequences, build_classifier,
                                draw_classifier_figures, {"cell": CELLS}, check_dropout_between_layers)
LSTM_MNIST1D = classifier_recipe("lstm-mnist1d", "LSTM over MNIST-1D's 40 steps (target: test accuracy >= 91%)",
                                 LSTMMNIST1DConfig, mnist1d_sequences, build_classifier, draw_classifier_figures,
                                 {"cell": CELLS}, check_dropout_between_layers)


# ============================================================================ character language model


@dataclass
class CharLMRecipeConfig:
    """lstm-charlm (rnn-charlm: the same with cell='rnn'). Streams of text, truncated BPTT."""
    corpus: str = "stdlib"  # or 'tinyshakespeare'
    cell: str = "lstm"
    embedding_dim: int = 64
    hidden_size: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    seq_len: int = 64  # BPTT window: gradients flow back at most this many steps
    batch_size: int = 32  # parallel streams through the training text
    steps: int = 1500
    lr: float = 3e-3  # peak; cosine decay to 0
    clip: float = 1.0  # max global gradient norm
    val_fraction: float = 0.1  # held-out tail of the corpus
    sample_chars: int = 300
    temperature: float = 0.8
    seed: int = 0
    checkpoint_every: int = 500  # 0: only at the end
    out: str | None = None
    resume: str | None = None  # a checkpoint directory to continue from


def load_text(config: CharLMRecipeConfig) -> tuple[str, np.ndarray, np.ndarray]:
    """The corpus' characters (sorted; the vocabulary) and its train / validation id streams."""
    text = datasets.text_corpus(config.corpus)
    chars = "".join(sorted(set(text)))
    lookup = {ch: i for i, ch in enumerate(chars)}
    ids = np.fromiter((lookup[ch] for ch in text), dtype=np.int64, count=len(text))
    cut = int(len(ids) * (1 - config.val_fraction))
    return chars, ids[:cut], ids[cut:]


def as_streams(ids: np.ndarray, streams: int) -> np.ndarray:
    """Cut one long id sequence into `streams` equal rows (B, L): row b continues where b - 1 stopped
    reading, and the state of row b carries from one window to the next."""
    length = len(ids) // streams
    return ids[:streams * length].reshape(streams, length)


def build_charlm(config: CharLMRecipeConfig, vocab_size: int) -> CharLM:
    return CharLM(CharLMConfig(vocab_size, config.embedding_dim, config.hidden_size, config.num_layers,
                               config.cell, config.dropout))


@no_grad()
def evaluate_loss(model: CharLM, ids: np.ndarray, streams: int = 50, window: int = 256) -> float:
    """Mean cross-entropy (nats per character) of predicting every next character of `ids`, reading
    them as `streams` rows with the state carried across windows. In eval mode; the caller's mode is back
    afterwards."""
    data = as_streams(ids, streams)
    total, count, state = 0.0, 0, None
    with eval_mode(model):
        for start in range(0, data.shape[1] - 1, window):
            x, y = data[:, start:start + window], data[:, start + 1:start + window + 1]
            x = x[:, :y.shape[1]]
            logits, state = model(Tensor(x), state)
            flat = logits.reshape(-1, logits.shape[-1])
            total += losses.cross_entropy(flat, Tensor(y.reshape(-1)), reduction="sum").item()
            count += y.size
    return total / count


def state_to_json(state: Any) -> dict[str, Any] | None:
    """The carried recurrent state (h, or (h, c)) as JSON values; float32/float64 survive exactly."""
    if state is None:
        return None
    parts = state if isinstance(state, tuple) else (state,)
    return {"tuple": isinstance(state, tuple), "dtype": str(parts[0].data.dtype),
            "values": [p.data.tolist() for p in parts]}


def state_from_json(record: dict[str, Any] | None) -> Any:
    if record is None:
        return None
    parts = tuple(Tensor(np.asarray(v, dtype=record["dtype"])) for v in record["values"])
    return parts if record["tuple"] else parts[0]


def save_charlm(run_dir: Path, model: CharLM, optimizer: Adam, step: int, config: CharLMRecipeConfig,
                scheduler: Any, state: Any, recipe: str, chars: str) -> None:
    """common.save plus the vocabulary (for sampling without the corpus) and the state carried into the next
    window (truncated BPTT keeps it across steps, so a resumed run needs it to continue exactly)."""
    common.save(run_dir, model, optimizer, step, config, scheduler, recipe=recipe,
                extra={"vocab": chars, "carried_state": state_to_json(state)})


def draw_charlm_figures(model: CharLM, config: CharLMRecipeConfig, chars: str, val_ids: np.ndarray,
                        run_dir: Path) -> None:
    """hidden.png (and gates.png for an LSTM): the model reading the first 100 validation characters."""
    from scratchzoo.viz.rnn import plot_gates, plot_hidden_states  # optional dependency, imported late
    ids = val_ids[:100]
    labels = [chars[i] for i in ids]
    plot_hidden_states(model, ids, run_dir / "hidden.png", labels=labels)
    if config.cell == "lstm":
        plot_gates(model, ids, run_dir / "gates.png", labels=labels)


def windows_per_pass(data: np.ndarray, config: CharLMRecipeConfig, recipe: str) -> int:
    """How many seq_len windows (of inputs, each with its shifted targets) fit in the streams; at least one."""
    windows = (data.shape[1] - 1) // config.seq_len
    if windows < 1:
        raise common.ConfigError(f"{recipe}: --seq-len must be below the length of each of the --batch-size "
                                 f"{config.batch_size} streams of training text ({data.shape[1]} characters); "
                                 f"got {config.seq_len}")
    return windows


def train_charlm(config: CharLMRecipeConfig, name: str = "lstm-charlm") -> dict[str, Any]:
    rng.manual_seed(config.seed)
    chars, train_ids, val_ids = load_text(config)
    model = build_charlm(config, len(chars))
    optimizer = Adam(model.parameters(), lr=config.lr)
    scheduler = CosineAnnealingLR(optimizer, T_max=config.steps)
    data = as_streams(train_ids, config.batch_size)
    windows = windows_per_pass(data, config, name)
    run_dir = common.run_directory(name, config.out)
    start, state, last_saved = 0, None, None
    if config.resume:
        checkpoint = common.resume_from(config.resume, name, model, optimizer, scheduler)
        start, state = checkpoint.step, state_from_json(checkpoint.extra.get("carried_state"))
        last_saved = (start, config.resume)
    losses_seen: list[float] = []
    evaluations: dict[str, list] = {}
    began = time.perf_counter()
    model.train()
    for step in range(start, config.steps):
        w = step % windows
        if w == 0:
            state = None  # back at the start of the streams: a fresh state
        x = data[:, w * config.seq_len:(w + 1) * config.seq_len]
        y = data[:, w * config.seq_len + 1:(w + 1) * config.seq_len + 1]
        logits, state = model(Tensor(x), state)
        state = detach_state(state)  # truncated BPTT: the next window starts from these values, not this graph
        loss = losses.cross_entropy(logits.reshape(-1, logits.shape[-1]), Tensor(y.reshape(-1)))
        value = loss.item()
        common.check_finite(value, step, last_saved)
        common.optimization_step(loss, model, optimizer, scheduler, config.clip)
        losses_seen.append(value)
        done = step + 1
        if common.checkpoint_due(done, config.checkpoint_every, config.steps):
            save_charlm(run_dir, model, optimizer, done, config, scheduler, state, name, chars)
            last_saved = (done, run_dir)
    seconds = time.perf_counter() - began
    if config.resume and start >= config.steps:  # nothing left to run: still leave a checkpoint in run_dir
        common.keep_finished_run(config.resume, run_dir, lambda: save_charlm(
            run_dir, model, optimizer, start, config, scheduler, state, name, chars))
    val_loss = evaluate_loss(model, val_ids)
    evaluations["val_loss"] = [(config.steps, val_loss)]
    prompt = [chars.index(ch) for ch in "def " if ch in chars] or [0]
    sample_ids = generate(model, prompt, config.sample_chars, temperature=config.temperature)
    sample = "".join(chars[i] for i in sample_ids)
    (run_dir / "sample.txt").write_text(sample, encoding="utf-8")
    draw_charlm_figures(model, config, chars, val_ids, run_dir)
    return common.finish(run_dir, {"val_loss": val_loss, "train_seconds": seconds, "sample": sample},
                         losses_seen, evaluations)


def load_charlm(ckpt: str, recipe: str) -> tuple[CharLM, CharLMRecipeConfig, str]:
    """The model, recipe config and vocabulary of a checkpoint directory (checkpoints that predate the
    saved vocabulary get it from their corpus)."""
    checkpoint = common.read_checkpoint(ckpt, recipe)
    config = common.config_from_dict(CHARLM_RECIPES[recipe].config_class, checkpoint.extra.get("config", {}))
    chars = checkpoint.extra.get("vocab") or load_text(config)[0]
    with common.restoring(ckpt, recipe):
        model = build_charlm(config, len(chars))
        model.load_state_dict(checkpoint.model_state)
    return model, config, chars


def charlm_evaluator(recipe: str) -> Callable[[str], dict[str, float]]:
    """A recipe's `evaluate(ckpt)`: the validation loss (nats per character)."""
    def evaluate(ckpt: str) -> dict[str, float]:
        model, config, _ = load_charlm(ckpt, recipe)
        return {"val_loss": evaluate_loss(model, load_text(config)[2])}
    return evaluate


def charlm_sampler(recipe: str) -> Callable[..., Iterator[str]]:
    """A recipe's `sample(ckpt, prompt, max_new_tokens, temperature, top_k, top_p, seed)`: the characters
    that continue the prompt, as they come (the prompt is checked before the first one)."""
    def sample(ckpt: str, prompt: str, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None) -> Iterator[str]:
        model, _, chars = load_charlm(ckpt, recipe)
        ids = CharTokenizer(chars).encode(prompt)
        if ids.size == 0:
            raise common.PromptError("the prompt needs at least one character")
        if seed is not None:
            rng.manual_seed(seed)
        return (chars[i] for i in stream(model, ids, max_new_tokens, temperature, top_k, top_p))
    return sample


@dataclass
class RNNCharLMConfig(CharLMRecipeConfig):
    cell: str = "rnn"


def charlm_recipe(name: str, description: str, config_class: type) -> common.Recipe:
    return common.Recipe(name, description, config_class, lambda config: train_charlm(config, name),
                         charlm_evaluator(name), sample=charlm_sampler(name),
                         choices={"cell": CELLS}, extra_check=check_dropout_between_layers)


LSTM_CHARLM = charlm_recipe("lstm-charlm", "LSTM character language model on the stdlib source (val_loss in "
                            "nats/char, a sample)", CharLMRecipeConfig)
RNN_CHARLM = charlm_recipe("rnn-charlm", "Vanilla RNN character language model, same size as lstm-charlm",
                           RNNCharLMConfig)
CHARLM_RECIPES = {recipe.name: recipe for recipe in (LSTM_CHARLM, RNN_CHARLM)}
