"""gpt-char: a tiny configuration learns, resumes bit for bit, evaluates every validation character, and
keeps nanoGPT's optimiser set-up (decay on >= 2-D parameters only, warmup + cosine to min_lr)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import scratchzoo as sz
from helpers import SimulatedCrash, crash_at_step
from torch_nanogpt import TorchGPT
from scratchzoo import io, losses
from scratchzoo.cli import main
from scratchzoo.data import datasets
from scratchzoo.models.gpt import GPTConfig
from scratchzoo.nn import Module
from scratchzoo.recipes import RECIPES, common
from scratchzoo.recipes import gpt as recipe
from scratchzoo.recipes.gpt import GPTCharConfig

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "8",
        "--lr", "1e-2", "--min-lr", "1e-3", "--warmup-iters", "2", "--sample-chars", "20"]
TEXT = "".join(f"def f{i % 7}(x):\n    return x * {i % 5} + {i % 3}\n" for i in range(600))  # ~20k chars


@pytest.fixture
def small_corpus(monkeypatch):
    """A ~20k-character Python-like corpus in place of the 2 MB standard library (keeps the tests fast)."""
    monkeypatch.setattr(datasets, "text_corpus", lambda name: TEXT)


def test_defaults_are_nanogpts_shakespeare_char_cpu_config():
    c = RECIPES["gpt-char"].config_class()
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size, c.batch_size, c.max_iters, c.lr_decay_iters) == \
        (4, 4, 128, 64, 12, 2000, 2000)
    assert (c.dropout, c.lr, c.min_lr, c.beta2, c.warmup_iters, c.weight_decay, c.grad_clip, c.bias) == \
        (0.0, 1e-3, 1e-4, 0.99, 100, 0.1, 1.0, False)
    assert c.corpus == "stdlib" and c.val_fraction == 0.1 and RECIPES["gpt-char"].sample is not None


def test_tiny_gpt_char_learns(tmp_path, small_corpus):
    out = tmp_path / "run"
    assert main(["train", "gpt-char", *TINY, "--max-iters", "40", "--lr-decay-iters", "40", "--eval-interval", "20",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_loss"] < math.log(len(set(TEXT))) - 1.0  # far below guessing uniformly
    assert metrics["train_seconds"] > 0 and metrics["sample"].startswith("\n") and len(metrics["sample"]) == 21
    checkpoint = io.load_checkpoint(out)
    assert checkpoint.step == 40 and checkpoint.extra["vocab"] == "".join(sorted(set(TEXT)))
    assert checkpoint.extra["recipe"] == "gpt-char"
    assert main(["eval", "gpt-char", "--ckpt", str(out)]) == 0
    with pytest.raises(io.CheckpointError, match="was trained by recipe gpt-char, not moe-gpt"):
        RECIPES["moe-gpt"].evaluate(str(out))


def test_resume_is_bit_identical(tmp_path, monkeypatch, small_corpus):
    n = 4
    args = ["train", "gpt-char", *TINY, "--dropout", "0.1", "--max-iters", str(2 * n), "--lr-decay-iters",
              str(2 * n), "--checkpoint-every", str(n), "--eval-interval", "0"]
    straight, crashed, resumed = tmp_path / "straight", tmp_path / "crashed", tmp_path / "resumed"
    assert main([*args, "--out", str(straight)]) == 0
    with monkeypatch.context() as mp:
        crash_at_step(mp, n + 1)
        with pytest.raises(SimulatedCrash):
            main([*args, "--out", str(crashed)])
    assert io.load_checkpoint(crashed).step == n
    assert main([*args, "--resume", str(crashed), "--out", str(resumed)]) == 0
    a, b = io.load_checkpoint(straight), io.load_checkpoint(resumed)
    for name, value in a.model_state.items():
        np.testing.assert_array_equal(value, b.model_state[name], err_msg=name)
    for index, state in a.optimizer_state["state"].items():
        for key, value in state.items():
            np.testing.assert_array_equal(value, b.optimizer_state["state"][index][key])
    assert a.rng_state == b.rng_state and a.extra["scheduler"] == b.extra["scheduler"]
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (straight, resumed)]
    assert metrics[0]["val_loss"] == metrics[1]["val_loss"] and metrics[0]["sample"] == metrics[1]["sample"]


def test_batches_are_random_windows_fixed_by_seed_and_step():
    ids = np.arange(1000)
    x, y = recipe.random_batch(ids, 12, 64, seed=1, step=7)
    assert x.shape == y.shape == (12, 64)
    np.testing.assert_array_equal(y, x + 1)  # the target is the input shifted by one
    np.testing.assert_array_equal(x, recipe.random_batch(ids, 12, 64, seed=1, step=7)[0])
    assert not np.array_equal(x, recipe.random_batch(ids, 12, 64, seed=1, step=8)[0])


class Uniform(Module):
    """Equal logits for every class: the loss of each prediction is exactly log(V). Records the windows."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.shapes = vocab, []

    def forward(self, idx):
        self.shapes.append(idx.shape)
        return sz.Tensor(np.zeros(idx.shape + (self.vocab,), dtype=np.float32))


def test_validation_reads_every_character_in_non_overlapping_windows():
    ids = np.random.default_rng(0).integers(0, 5, size=1001)  # 1000 predictions: 15 windows of 64 + 40
    model = Uniform(5)
    assert recipe.evaluate_loss(model, ids, block_size=64, batch_windows=4) == pytest.approx(math.log(5))
    assert sum(math.prod(s) for s in model.shapes) == 1000
    assert model.shapes == [(4, 64)] * 3 + [(3, 64), (1, 40)]


def test_weight_decay_on_matrices_and_embeddings_only():
    config = GPTCharConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, bias=True)
    model = recipe.build_gpt(config, 10)
    optimizer = recipe.configure_optimizer(model, config)
    decay, no_decay = optimizer.param_groups
    names = {id(p): name for name, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in decay["params"]) == sorted(
        ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
         "transformer.h.0.attn.c_proj.weight", "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight"])
    assert all(p.ndim == 1 for p in no_decay["params"]) and len(no_decay["params"]) == 10  # 3 LN x 2 + 4 biases
    assert optimizer.defaults["betas"] == (0.9, 0.99)


def test_learning_rate_warms_up_then_decays_to_min_lr():
    config = GPTCharConfig(n_layer=1, n_head=2, n_embd=8, block_size=8)
    optimizer = recipe.configure_optimizer(recipe.build_gpt(config, 10), config)
    scheduler = recipe.make_scheduler(optimizer, config)
    lrs = []
    for _ in range(2100):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-5) and lrs[99] == pytest.approx(1e-3)  # (t + 1) / warmup * lr
    assert lrs[1050] == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4), rel=1e-6)  # halfway down the cosine
    assert lrs[2000] == pytest.approx(1e-4) and lrs[2099] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[99:], lrs[100:]))


def test_auxiliary_loss_is_added_and_recorded(tmp_path, small_corpus):
    calls = []

    def auxiliary(model):
        calls.append(1)
        return (model.transformer.wte.weight ** 2).sum() * 1e-3  # stands in for a load-balancing loss

    config = GPTCharConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=6,
                           lr_decay_iters=6, warmup_iters=1, eval_interval=3, sample_chars=5, checkpoint_every=0)
    metrics = recipe.train_language_model(config, recipe.build_gpt, tmp_path, auxiliary_loss=auxiliary,
                                          recipe="gpt-char")
    assert len(calls) == 6 and metrics["val_loss"] > 0


def test_the_training_step_matches_a_nanogpt_loop_in_torch():
    """Batches, AdamW groups, warmup + cosine lr and clipping, as train_language_model runs them, against
    nanoGPT's loop in torch from the same weights: the same losses and gradient norms step after step."""
    config = GPTCharConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, batch_size=4, warmup_iters=3,
                           lr_decay_iters=8, max_iters=8, lr=1e-2, min_lr=1e-3)
    ids = np.frombuffer(TEXT.encode(), dtype=np.uint8).astype(np.int64) % 50
    sz.manual_seed(0)
    ours = recipe.build_gpt(config, 50).double()
    theirs = TorchGPT(GPTConfig(vocab_size=50, block_size=config.block_size, n_layer=config.n_layer,
                                n_head=config.n_head, n_embd=config.n_embd, bias=False)).double()
    theirs.load_state_dict({name: torch.from_numpy(value) for name, value in ours.state_dict().items()})
    optimizer = recipe.configure_optimizer(ours, config)
    scheduler = recipe.make_scheduler(optimizer, config)
    params = list(theirs.parameters())
    torch_optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                                         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                                        lr=config.lr, betas=(0.9, 0.99))
    for step in range(config.max_iters):
        x, y = recipe.random_batch(ids, config.batch_size, config.block_size, config.seed, step)
        for group in torch_optimizer.param_groups:
            group["lr"] = optimizer.param_groups[0]["lr"]
        logits = ours(sz.Tensor(x))
        loss = losses.cross_entropy(logits.reshape(-1, 50), sz.Tensor(y.reshape(-1)))
        norm = common.optimization_step(loss, ours, optimizer, scheduler, config.grad_clip)  # the recipe's step
        torch_loss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)).reshape(-1, 50),
                                                       torch.from_numpy(y.reshape(-1)))
        torch_optimizer.zero_grad()
        torch_loss.backward()
        torch_norm = torch.nn.utils.clip_grad_norm_(theirs.parameters(), config.grad_clip)
        torch_optimizer.step()
        assert loss.item() == pytest.approx(torch_loss.item(), rel=1e-9), f"step {step}"
        assert norm == pytest.approx(torch_norm.item(), rel=1e-9), f"step {step}"


def test_training_clips_every_step_at_grad_clip(monkeypatch, tmp_path, small_corpus):
    """train_language_model sends every update through common.optimization_step with config.grad_clip (the
    step itself is compared with torch's clipping above)."""
    clips = []
    step = common.optimization_step

    def recording(loss, model, optimizer, scheduler=None, clip=0.0):
        clips.append(clip)
        return step(loss, model, optimizer, scheduler, clip)

    monkeypatch.setattr(common, "optimization_step", recording)
    config = GPTCharConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=3,
                           lr_decay_iters=3, warmup_iters=1, eval_interval=0, sample_chars=0, grad_clip=0.5,
                           out=str(tmp_path / "run"))
    recipe.train_language_model(config, recipe.build_gpt, tmp_path / "run", recipe="gpt-char")
    assert clips == [0.5, 0.5, 0.5]


def test_the_character_tokenizer_round_trips_and_names_unknown_characters():
    """One id per distinct character, sorted; decode(encode(text)) == text; a character outside the
    vocabulary is an error that names it."""
    tokenizer = recipe.CharTokenizer.from_text("hello world")
    assert tokenizer.chars == " dehlorw" and tokenizer.vocab_size == 8
    ids = tokenizer.encode("hello world")
    assert ids.dtype == np.int64 and ids.tolist() == [3, 2, 4, 4, 5, 0, 7, 5, 6, 4, 1]
    assert tokenizer.decode(ids) == "hello world"
    with pytest.raises(common.PromptError, match="characters not in the model's vocabulary: 'z'"):
        tokenizer.encode("hz")


def test_the_pytorch_reference_scores_the_whole_split_as_gpt_char_does():
    """benchmarks/gpt_char_reference.py (gpt-char's target reference) and evaluate_loss, same weights."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpt_char_reference.py"
    spec = importlib.util.spec_from_file_location("gpt_char_reference", path)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    config = GPTCharConfig(n_layer=1, n_head=2, n_embd=16, block_size=16)
    sz.manual_seed(0)
    ours = recipe.build_gpt(config, 11)
    theirs = reference.TorchGPT(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16)
    theirs.load_state_dict({name: torch.from_numpy(a) for name, a in ours.state_dict().items()})
    ids = np.random.default_rng(1).integers(0, 11, size=200)  # 199 predictions: 12 windows of 16 + 7
    assert reference.whole_split_loss(theirs, ids, 16) == pytest.approx(
        recipe.evaluate_loss(ours, ids, block_size=16), rel=1e-5)
    assert reference.nanogpt_lr(GPTCharConfig(), 2000) == pytest.approx(GPTCharConfig().min_lr)
