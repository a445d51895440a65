"""gpt-char: a character-level GPT (models/gpt.py) trained as nanoGPT trains shakespeare_char.

The defaults are nanoGPT's documented CPU configuration for shakespeare_char (README, "I only have a
macbook"): n_layer 4, n_head 4, n_embd 128, block_size 64, batch_size 12, max_iters 2000, lr_decay_iters
2000, dropout 0, and from config/train_shakespeare_char.py lr 1e-3, min_lr 1e-4, beta2 0.99, warmup 100,
bias False, with train.py's weight_decay 0.1 and grad_clip 1.0. nanoGPT publishes val loss ~1.88 for it.

- Tokenizer: one id per character of the corpus (sorted), saved in the checkpoint (`extra["vocab"]`).
- Data: the first 90% of the characters train, the last 10% validate. A training batch is batch_size
  random windows of block_size + 1 characters (input, and the same shifted by one as target), drawn from
  a generator seeded with (seed, step): the batch of a step is a function of the step, so `--resume`
  continues exactly.
- Optimiser: AdamW(betas (0.9, beta2)); weight decay on every parameter with >= 2 dims (the matrices and
  embeddings, as nanoGPT), none on biases and LayerNorm gains. Linear warmup, then cosine decay to
  min_lr at lr_decay_iters; global gradient norm clipped at grad_clip.
- Validation: mean cross-entropy (nats per character) over the WHOLE validation split, read as
  non-overlapping block_size windows, every position predicted, every eval_interval steps and at the end.

`train_language_model` is the loop itself, shared with recipes that train another model on the same data
(moe-gpt builds a GPT with Mixture-of-Experts feed-forward layers and adds their load-balancing loss).
metrics.json: val_loss, train_seconds, sample.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from scratchzoo import io, losses, rng
from scratchzoo.autograd import Tensor, no_grad
from scratchzoo.data import datasets
from scratchzoo.models.gpt import GPT, GPTConfig
from scratchzoo.nn import Module, eval_mode
from scratchzoo.optim import AdamW
from scratchzoo.optim.lr_scheduler import LambdaLR, warmup_cosine
from scratchzoo.recipes import common


@dataclass
class GPTCharConfig:
    """gpt-char: nanoGPT's shakespeare_char CPU configuration (the same on the stdlib corpus)."""
    corpus: str = "stdlib"  # or 'tinyshakespeare'
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = False
    batch_size: int = 12
    max_iters: int = 2000
    lr: float = 1e-3  # peak learning rate, reached after warmup_iters
    min_lr: float = 1e-4  # reached at lr_decay_iters, kept after
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    weight_decay: float = 0.1  # on parameters with >= 2 dims only
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    eval_interval: int = 250  # validation loss over the whole split every this many steps (0: at the end only)
    val_fraction: float = 0.1  # the last 10% of the characters
    prompt: str = "\n"  # the start of the sample written at the end
    sample_chars: int = 500
    temperature: float = 0.8
    top_k: int | None = None
    seed: int = 1337
    checkpoint_every: int = 500  # 0: only at the end
    out: str | None = None
    resume: str | None = None  # a checkpoint directory to continue from


# ============================================================================ characters and batches


@dataclass(frozen=True)
class CharTokenizer:
    """Id i stands for chars[i]: the corpus' distinct characters, sorted."""
    chars: str

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        lookup = {ch: i for i, ch in enumerate(self.chars)}
        unknown = sorted(set(text) - lookup.keys())
        if unknown:
            raise common.PromptError(f"characters not in the model's vocabulary: {''.join(unknown)!r} "
                                     f"(it knows {self.vocab_size} characters: {self.chars[:60]!r}...)")
        return np.fromiter((lookup[ch] for ch in text), dtype=np.int64, count=len(text))

    def decode(self, ids: Any) -> str:
        return "".join(self.chars[i] for i in np.asarray(ids).reshape(-1))


def load_corpus(config: GPTCharConfig) -> tuple[CharTokenizer, np.ndarray, np.ndarray]:
    """The tokenizer and the train / validation id sequences (first 1 - val_fraction / the rest)."""
    text = datasets.text_corpus(config.corpus)
    tokenizer = CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    cut = int(len(ids) * (1 - config.val_fraction))
    return tokenizer, ids[:cut], ids[cut:]


def random_batch(ids: np.ndarray, batch_size: int, block_size: int, seed: int, step: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """batch_size random windows (x, y) of block_size ids, y = x shifted by one (nanoGPT's get_batch),
    from a generator seeded with (seed, step)."""
    starts = np.random.default_rng([seed, step]).integers(0, len(ids) - block_size, size=batch_size)
    rows = starts[:, None] + np.arange(block_size)  # (B, T) positions
    return ids[rows], ids[rows + 1]


@no_grad()
def evaluate_loss(model: Module, ids: np.ndarray, block_size: int, batch_windows: int = 128) -> float:
    """Mean cross-entropy (nats per character) of predicting every character of `ids` after the first:
    non-overlapping windows of block_size (the last one shorter), each position predicted from the
    characters before it in its window. In eval mode; the caller's mode is back afterwards."""
    inputs, targets = ids[:-1], ids[1:]
    full = len(targets) // block_size
    x = inputs[:full * block_size].reshape(full, block_size)
    y = targets[:full * block_size].reshape(full, block_size)
    batches = [(x[i:i + batch_windows], y[i:i + batch_windows]) for i in range(0, full, batch_windows)]
    if len(targets) > full * block_size:  # the tail that does not fill a window
        batches.append((inputs[None, full * block_size:], targets[None, full * block_size:]))
    total = 0.0
    with eval_mode(model):
        for xb, yb in batches:
            logits = model(Tensor(xb))
            total += losses.cross_entropy(logits.reshape(-1, logits.shape[-1]), Tensor(yb.reshape(-1)),
                                          reduction="sum").item()
    return total / len(targets)


# ============================================================================ the training loop


def build_gpt(config: GPTCharConfig, vocab_size: int) -> GPT:
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=config.block_size, n_layer=config.n_layer,
                         n_head=config.n_head, n_embd=config.n_embd, dropout=config.dropout, bias=config.bias))


def configure_optimizer(model: Module, config: GPTCharConfig) -> AdamW:
    """AdamW with two groups, as nanoGPT: weight decay on parameters with >= 2 dims (matrices, embeddings),
    none on biases and LayerNorm gains (decaying them toward 0 would only fight the normalisation)."""
    params = list(model.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def make_scheduler(optimizer: AdamW, config: GPTCharConfig) -> LambdaLR:
    """lr(t) = lr * (t + 1) / warmup_iters during warmup, then cosine down to min_lr at lr_decay_iters, min_lr
    after (nanoGPT's get_lr, whose warmup is (t + 1) / (warmup_iters + 1): 1% apart at most, in warmup only)."""
    return warmup_cosine(optimizer, config.warmup_iters, config.lr_decay_iters, config.min_lr / config.lr)


def train_language_model(config: GPTCharConfig, build_model: Callable[[GPTCharConfig, int], Module], run_dir: Path,
                         auxiliary_loss: Callable[[Module], Tensor] | None = None, *, recipe: str) -> dict[str, Any]:
    """Train `build_model(config, vocab_size)` as a character language model; return the metrics.

    recipe: the name its checkpoints record (and a resume must match).

    config: GPTCharConfig or a subclass (extra fields are for build_model; all are saved in checkpoints).
    build_model: makes the model, a Module mapping ids (B, T) to logits (B, T, vocab_size), with a
        `stream(idx, max_new_tokens, temperature, top_k, top_p)` method for the sample (GPT has one).
    auxiliary_loss: called after each forward pass with the model; its (scalar) result is added to the
        cross-entropy before backward (e.g. a Mixture-of-Experts load-balancing loss). Its mean since the
        last evaluation is recorded as `aux_loss`.
    The loop: random batches, AdamW with decay on >= 2-D parameters, warmup + cosine lr, gradient
    clipping, validation loss over the whole split every eval_interval steps, checkpoints every
    checkpoint_every steps and at the end, `config.resume` continuing exactly.
    metrics.json: val_loss (nats/char, whole validation split), train_seconds, sample; curves.png.
    """
    rng.manual_seed(config.seed)
    tokenizer, train_ids, val_ids = load_corpus(config)
    model = build_model(config, tokenizer.vocab_size)
    optimizer = configure_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    start, last_saved = 0, None

    def save(step: int) -> None:
        common.save(run_dir, model, optimizer, step, config, scheduler, recipe=recipe,
                    extra={"vocab": tokenizer.chars})

    if config.resume:
        checkpoint = common.read_checkpoint(config.resume, recipe)
        if checkpoint.extra.get("vocab") != tokenizer.chars:
            raise io.CheckpointError(f"{config.resume} was trained on another vocabulary (corpus); resume with "
                                     f"the same --corpus")
        common.restore(checkpoint, config.resume, recipe, model, optimizer, scheduler)
        start, last_saved = checkpoint.step, (checkpoint.step, config.resume)
    losses_seen: list[float] = []
    evaluations: dict[str, list[tuple[int, float]]] = {}
    aux_values: list[float] = []
    began = time.perf_counter()
    model.train()
    for step in range(start, config.max_iters):
        x, y = random_batch(train_ids, config.batch_size, config.block_size, config.seed, step)
        logits = model(Tensor(x))
        loss = losses.cross_entropy(logits.reshape(-1, logits.shape[-1]), Tensor(y.reshape(-1)))
        value = loss.item()
        if auxiliary_loss is not None:
            aux = auxiliary_loss(model)
            aux_values.append(aux.item())
            loss = loss + aux
        common.check_finite(loss.item(), step, last_saved)
        common.optimization_step(loss, model, optimizer, scheduler, config.grad_clip)
        losses_seen.append(value)
        done = step + 1
        if config.eval_interval and done % config.eval_interval == 0 and done != config.max_iters:
            val_loss = evaluate_loss(model, val_ids, config.block_size)
            evaluations.setdefault("val_loss", []).append((done, val_loss))
            if aux_values:
                evaluations.setdefault("aux_loss", []).append((done, float(np.mean(aux_values))))
                aux_values.clear()
            print(f"step {done}: train loss {np.mean(losses_seen[-config.eval_interval:]):.4f}, "
                  f"val loss {val_loss:.4f}, {time.perf_counter() - began:.1f}s", file=sys.stderr, flush=True)
        if common.checkpoint_due(done, config.checkpoint_every, config.max_iters):
            save(done)
            last_saved = (done, run_dir)
    seconds = time.perf_counter() - began
    if config.resume and start >= config.max_iters:  # nothing left to run: still leave a checkpoint in run_dir
        common.keep_finished_run(config.resume, run_dir, lambda: save(start))
    val_loss = evaluate_loss(model, val_ids, config.block_size)
    evaluations.setdefault("val_loss", []).append((config.max_iters, val_loss))
    if aux_values:
        evaluations.setdefault("aux_loss", []).append((config.max_iters, float(np.mean(aux_values))))
    sample = config.prompt + "".join(stream_text(model, tokenizer, config.prompt, config.sample_chars,
                                                 config.temperature, config.top_k))
    (run_dir / "sample.txt").write_text(sample, encoding="utf-8")
    return common.finish(run_dir, {"val_loss": val_loss, "train_seconds": seconds, "sample": sample},
                         losses_seen, evaluations)


# ============================================================================ from a checkpoint


def load_language_model(ckpt: str, config_class: type, build_model: Callable[[Any, int], Module], recipe: str
                        ) -> tuple[Module, Any, CharTokenizer]:
    """The model, recipe config and tokenizer saved in a checkpoint directory (of `recipe`)."""
    checkpoint = common.read_checkpoint(ckpt, recipe)
    if "vocab" not in checkpoint.extra:
        raise io.CheckpointError(f"{ckpt} holds no character vocabulary; is it a {recipe} checkpoint?")
    config = common.config_from_dict(config_class, checkpoint.extra.get("config", {}))
    tokenizer = CharTokenizer(checkpoint.extra["vocab"])
    with common.restoring(ckpt, recipe):
        model = build_model(config, tokenizer.vocab_size)
        model.load_state_dict(checkpoint.model_state)
    return model, config, tokenizer


def stream_text(model: Module, tokenizer: CharTokenizer, prompt: str, max_new_tokens: int,
                temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> Iterator[str]:
    """The characters that continue `prompt`, one at a time as the model produces them (the prompt is
    checked at once, before the first character is asked for)."""
    ids = tokenizer.encode(prompt)
    if ids.size == 0:
        raise common.PromptError("the prompt needs at least one character")
    return (tokenizer.chars[int(token[0])]
            for token in model.stream(ids[None, :], max_new_tokens, temperature, top_k, top_p))


def language_model_evaluator(recipe: str, config_class: type, build_model: Callable[[Any, int], Module]
                             ) -> Callable[[str], dict[str, float]]:
    """A recipe's `evaluate(ckpt)`: the validation loss over the whole split."""
    def evaluate(ckpt: str) -> dict[str, float]:
        model, config, _ = load_language_model(ckpt, config_class, build_model, recipe)
        _, _, val_ids = load_corpus(config)
        return {"val_loss": evaluate_loss(model, val_ids, config.block_size)}
    return evaluate


def language_model_sampler(recipe: str, config_class: type, build_model: Callable[[Any, int], Module]
                           ) -> Callable[..., Iterator[str]]:
    """A recipe's `sample(ckpt, prompt, max_new_tokens, temperature, top_k, top_p, seed)`."""
    def sample(ckpt: str, prompt: str, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None) -> Iterator[str]:
        model, _, tokenizer = load_language_model(ckpt, config_class, build_model, recipe)
        if seed is not None:
            rng.manual_seed(seed)
        return stream_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p)
    return sample


def train_gpt_char(config: GPTCharConfig) -> dict[str, Any]:
    return train_language_model(config, build_gpt, common.run_directory("gpt-char", config.out), recipe="gpt-char")


RECIPE = common.Recipe("gpt-char", "character-level GPT, nanoGPT's shakespeare_char CPU config (target with "
                       "--corpus tinyshakespeare: val_loss <= 1.90 nats/char)", GPTCharConfig, train_gpt_char,
                       language_model_evaluator("gpt-char", GPTCharConfig, build_gpt),
                       sample=language_model_sampler("gpt-char", GPTCharConfig, build_gpt),
                       extra_check=lambda name, config: common.check_multiple(name, config, "n_embd", "n_head"))
