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
bit for bit (the window read at a step is a function of the step).

Figures (matplotlib optional, viz/rnn.py): hidden.png for every recipe here (the hidden state while reading
one test signal / the first 100 validation characters) and, for lstm-charlm, gates.png (the input, forget
and output gates over those characters).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scratchzoo import io, losses, rng
from scratchzoo.autograd import Tensor, no_grad
from scratchzoo.data import datasets
from scratchzoo.models.rnn import (CharLM, CharLMConfig, SequenceClassifier, SequenceClassifierConfig, detach_state,
                                   generate)
from scratchzoo.nn import eval_mode
from scratchzoo.optim import Adam
from scratchzoo.optim.lr_scheduler import CosineAnnealingLR
from scratchzoo.recipes import common
from scratchzoo.recipes.classify import TrainingFields, classifier_recipe


# ============================================================================ MNIST-1D as a sequence


@dataclass
class GRUMNIST1DConfig(TrainingFields):
    cell: str = "gru"
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0  # between stacked layers only
    steps: int | None = 3000
    batch_size: int = 100
    lr: float = 3e-3
    weight_decay: float = 0.0


@dataclass
class LSTMMNIST1DConfig(GRUMNIST1DConfig):
    cell: str = "lstm"


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
                                draw_classifier_figures)
LSTM_MNIST1D = classifier_recipe("lstm-mnist1d", "LSTM over MNIST-1D's 40 steps (target: test accuracy >= 91%)",
                                 LSTMMNIST1DConfig, mnist1d_sequences, build_classifier, draw_classifier_figures)


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
                scheduler: Any, state: Any) -> None:
    """What common.save writes plus the state carried into the next window (truncated BPTT keeps it across
    steps, so a resumed run needs it to continue exactly)."""
    extra = {"config": dataclasses.asdict(config), "scheduler": scheduler.state_dict(),
             "carried_state": state_to_json(state)}
    io.save_checkpoint(run_dir, model.state_dict(), optimizer.state_dict(), step, rng.get_rng_state(), extra)


def draw_charlm_figures(model: CharLM, config: CharLMRecipeConfig, chars: str, val_ids: np.ndarray,
                        run_dir: Path) -> None:
    """hidden.png (and gates.png for an LSTM): the model reading the first 100 validation characters."""
    from scratchzoo.viz.rnn import plot_gates, plot_hidden_states  # optional dependency, imported late
    ids = val_ids[:100]
    labels = [chars[i] for i in ids]
    plot_hidden_states(model, ids, run_dir / "hidden.png", labels=labels)
    if config.cell == "lstm":
        plot_gates(model, ids, run_dir / "gates.png", labels=labels)


def train_charlm(config: CharLMRecipeConfig, name: str = "lstm-charlm") -> dict[str, Any]:
    rng.manual_seed(config.seed)
    chars, train_ids, val_ids = load_text(config)
    model = build_charlm(config, len(chars))
    optimizer = Adam(model.parameters(), lr=config.lr)
    scheduler = CosineAnnealingLR(optimizer, T_max=config.steps)
    run_dir = common.run_directory(name, config.out)
    data = as_streams(train_ids, config.batch_size)
    windows = (data.shape[1] - 1) // config.seq_len
    start, state, last_saved = 0, None, None
    if config.resume:
        checkpoint = io.load_checkpoint(config.resume)
        model.load_state_dict(checkpoint.model_state)
        optimizer.load_state_dict(checkpoint.optimizer_state)
        if "scheduler" in checkpoint.extra:
            scheduler.load_state_dict(checkpoint.extra["scheduler"])
        rng.set_rng_state(checkpoint.rng_state)
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
            save_charlm(run_dir, model, optimizer, done, config, scheduler, state)
            last_saved = (done, run_dir)
    seconds = time.perf_counter() - began
    if start >= config.steps:  # nothing left to run: still leave a checkpoint in run_dir
        save_charlm(run_dir, model, optimizer, config.steps, config, scheduler, state)
    val_loss = evaluate_loss(model, val_ids)
    evaluations["val_loss"] = [(config.steps, val_loss)]
    prompt = [chars.index(ch) for ch in "def " if ch in chars] or [0]
    sample_ids = generate(model, prompt, config.sample_chars, temperature=config.temperature)
    sample = "".join(chars[i] for i in sample_ids)
    (run_dir / "sample.txt").write_text(sample, encoding="utf-8")
    draw_charlm_figures(model, config, chars, val_ids, run_dir)
    return common.finish(run_dir, {"val_loss": val_loss, "train_seconds": seconds, "sample": sample},
                         losses_seen, evaluations)


def evaluate_charlm(ckpt: str) -> dict[str, float]:
    checkpoint = io.load_checkpoint(ckpt)
    config = common.config_from_dict(CharLMRecipeConfig, checkpoint.extra.get("config", {}))
    chars, _, val_ids = load_text(config)
    model = build_charlm(config, len(chars))
    model.load_state_dict(checkpoint.model_state)
    return {"val_loss": evaluate_loss(model, val_ids)}


@dataclass
class RNNCharLMConfig(CharLMRecipeConfig):
    cell: str = "rnn"


LSTM_CHARLM = common.Recipe("lstm-charlm", "LSTM character language model on the stdlib source (val_loss in "
                            "nats/char, a sample)", CharLMRecipeConfig,
                            lambda config: train_charlm(config, "lstm-charlm"), evaluate_charlm)
RNN_CHARLM = common.Recipe("rnn-charlm", "Vanilla RNN character language model, same size as lstm-charlm",
                           RNNCharLMConfig, lambda config: train_charlm(config, "rnn-charlm"), evaluate_charlm)
