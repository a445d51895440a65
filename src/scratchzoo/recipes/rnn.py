"""Recurrent recipes.

gru-mnist1d and lstm-mnist1d: MNIST-1D read as a sequence of 40 steps of one number each. Target: test
accuracy >= 91%, the GRU figure of the MNIST-1D paper. The recurrent layer sees one sample per step and
classifies from its last hidden state (models/rnn.py, SequenceClassifier).

lstm-charlm and rnn-charlm: a character language model (models/rnn.py, CharLM) on the Python standard
library's source (or --corpus tinyshakespeare), trained with truncated backprop through time: the text is
cut into batch_size parallel streams, read seq_len characters at a time; the state carries over from one
window to the next but the graph does not (detach), and the gradient norm is clipped. metrics.json:
val_loss (nats per character on the held-out last 10% of the text), train_seconds and a generated sample.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from scratchzoo import io, losses, rng
from scratchzoo.autograd import Tensor, no_grad
from scratchzoo.data import datasets
from scratchzoo.models.rnn import (CharLM, CharLMConfig, SequenceClassifier, SequenceClassifierConfig, detach_state,
                                   generate)
from scratchzoo.nn.utils import clip_grad_norm_
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


GRU_MNIST1D = classifier_recipe("gru-mnist1d", "GRU over MNIST-1D's 40 steps (target: test accuracy >= 91%, "
                                "the paper's GRU)", GRUMNIST1DConfig, mnist1d_sequences, build_classifier)
LSTM_MNIST1D = classifier_recipe("lstm-mnist1d", "LSTM over MNIST-1D's 40 steps (target: test accuracy >= 91%)",
                                 LSTMMNIST1DConfig, mnist1d_sequences, build_classifier)


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
    out: str | None = None


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
    them as `streams` rows with the state carried across windows."""
    model.eval()
    data = as_streams(ids, streams)
    total, count, state = 0.0, 0, None
    for start in range(0, data.shape[1] - 1, window):
        x, y = data[:, start:start + window], data[:, start + 1:start + window + 1]
        x = x[:, :y.shape[1]]
        logits, state = model(Tensor(x), state)
        flat = logits.reshape(-1, logits.shape[-1])
        total += losses.cross_entropy(flat, Tensor(y.reshape(-1)), reduction="sum").item()
        count += y.size
    return total / count


def train_charlm(config: CharLMRecipeConfig, name: str = "lstm-charlm") -> dict[str, Any]:
    rng.manual_seed(config.seed)
    chars, train_ids, val_ids = load_text(config)
    model = build_charlm(config, len(chars))
    optimizer = Adam(model.parameters(), lr=config.lr)
    scheduler = CosineAnnealingLR(optimizer, T_max=config.steps)
    run_dir = common.run_directory(name, config.out)
    data = as_streams(train_ids, config.batch_size)
    windows = (data.shape[1] - 1) // config.seq_len
    losses_seen: list[float] = []
    evaluations: dict[str, list] = {}
    began = time.perf_counter()
    state = None
    model.train()
    for step in range(config.steps):
        w = step % windows
        if w == 0:
            state = None  # back at the start of the streams: a fresh state
        x = data[:, w * config.seq_len:(w + 1) * config.seq_len]
        y = data[:, w * config.seq_len + 1:(w + 1) * config.seq_len + 1]
        logits, state = model(Tensor(x), state)
        state = detach_state(state)  # truncated BPTT: the next window starts from these values, not this graph
        loss = losses.cross_entropy(logits.reshape(-1, logits.shape[-1]), Tensor(y.reshape(-1)))
        value = loss.item()
        if not math.isfinite(value):
            raise common.TrainingDiverged(f"loss became {value} at step {step + 1}")
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        scheduler.step()
        losses_seen.append(value)
    seconds = time.perf_counter() - began
    common.save(run_dir, model, optimizer, config.steps, config, scheduler)
    val_loss = evaluate_loss(model, val_ids)
    evaluations["val_loss"] = [(config.steps, val_loss)]
    prompt = [chars.index(ch) for ch in "def " if ch in chars] or [0]
    sample_ids = generate(model, prompt, config.sample_chars, temperature=config.temperature)
    sample = "".join(chars[i] for i in sample_ids)
    (run_dir / "sample.txt").write_text(sample, encoding="utf-8")
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
