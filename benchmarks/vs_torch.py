"""Speed of one training step (forward, backward, optimizer step): scratchzoo vs PyTorch CPU.

Run from the repository root:

    python benchmarks/vs_torch.py                  # every config, a table
    python benchmarks/vs_torch.py --config mlp     # one config
    python benchmarks/vs_torch.py --json           # one JSON object per config and line
    python benchmarks/vs_torch.py --steps 100      # more measured steps (default 50)
    scratchzoo bench [--config mlp] [--json] [--steps 100]   # the same, through the CLI

Both libraries run on this machine in one process, with PyTorch's intra-op threads set to the number of
threads NumPy's BLAS uses (both are printed, with where the BLAS count came from: threadpoolctl when it is
installed, else the *_NUM_THREADS variable NumPy's BLAS reads, else the CPU count). These machines are
noisy (a second core is sometimes slowed by 10-35%), so each config is warmed up (>= 10 steps each;
PyTorch's oneDNN needs about that many), then timed interleaved (ours, torch, ours, torch, ...) and
reported as medians. Before timing, the first
steps' losses of the two must agree to 1e-4, so a wrong computation is never timed. Each `--json` row
also says what was measured: the thread counts, the checked, warm-up and measured step counts.

A config is one function registered with `@config(name, target)`: it builds both models with the same
weights (ours' state_dict loaded into torch's) and the same batches, and returns a `Case` of two
zero-argument step functions that each return that step's loss as a float. `target` is the ratio
(ours / torch) the config should stay under. `extras` (optional) measures further figures printed under
the config's row and added to its JSON (gpt: sampling speed with and without the KV cache, warmed up,
interleaved, medians of SAMPLE_RUNS runs).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo import nn, optim
from scratchzoo.models.cnn import CNN, CNNConfig
from scratchzoo.models.gpt import GPT, GPTConfig

WARMUP_STEPS = 10
MIN_STEPS = 20
DEFAULT_STEPS = 50
LOSS_TOLERANCE = 1e-4
CHECKED_STEPS = 2  # step 1 checks forward; step 2 also sees the backward and the optimizer of step 1


@dataclass
class Case:
    """One config, built: a training step of ours and of torch's, each returning its loss."""

    ours: Callable[[], float]
    torch: Callable[[], float]


@dataclass
class Config:
    name: str
    target: float
    build: Callable[[], Case]
    extras: Callable[[], dict[str, float]] | None = None  # more figures of the config, measured after the step


CONFIGS: dict[str, Config] = {}


def config(name: str, target: float, extras: Callable[[], dict[str, float]] | None = None
           ) -> Callable[[Callable[[], Case]], Callable[[], Case]]:
    """Register a config builder under `name`, with its target ratio ours/torch; `extras()` returns
    further named figures (say, sampling speed) added to the config's row."""
    def register(build: Callable[[], Case]) -> Callable[[], Case]:
        CONFIGS[name] = Config(name, target, build, extras)
        return build
    return register


def copy_weights(ours: nn.Module, theirs: torch.nn.Module) -> None:
    """Load our state dict into the torch module (same names, shapes and layouts by design)."""
    theirs.load_state_dict({name: torch.from_numpy(array) for name, array in ours.state_dict().items()})


def cycle(batches: list) -> Callable[[], object]:
    """A function returning the next batch of a fixed list, round and round."""
    position = [0]

    def next_batch() -> object:
        batch = batches[position[0] % len(batches)]
        position[0] += 1
        return batch
    return next_batch


def adam_cross_entropy_case(ours: nn.Module, theirs: torch.nn.Module, batches: list[tuple[np.ndarray, np.ndarray]],
                            before_step: Callable[[str], None] | None = None) -> Case:
    """The step every config times: the same weights and batches on both sides, forward, cross-entropy,
    backward, Adam(lr=1e-3). `before_step(side)` runs first on each step ('ours' or 'torch')."""
    copy_weights(ours, theirs)
    ours_optimizer = optim.Adam(ours.parameters(), lr=1e-3)
    torch_optimizer = torch.optim.Adam(theirs.parameters(), lr=1e-3)
    ours_batch = cycle([(sz.Tensor(x), sz.Tensor(y)) for x, y in batches])
    torch_batch = cycle([(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches])

    def ours_step() -> float:
        if before_step is not None:
            before_step("ours")
        x, y = ours_batch()
        ours_optimizer.zero_grad()
        loss = F.cross_entropy(ours(x), y)
        loss.backward()
        ours_optimizer.step()
        return loss.item()

    def torch_step() -> float:
        if before_step is not None:
            before_step("torch")
        x, y = torch_batch()
        torch_optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(theirs(x), y)
        loss.backward()
        torch_optimizer.step()
        return loss.item()

    return Case(ours_step, torch_step)


# ============================================================================ configs


@config("mlp", target=1.5)
def mlp() -> Case:
    """64 -> 256 -> 256 -> 10 with ReLU, batch 128, cross-entropy, Adam(lr=1e-3), float32."""
    sz.manual_seed(0)
    ours = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    theirs = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                 torch.nn.ReLU(), torch.nn.Linear(256, 10))
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((128, 64)).astype(np.float32), rng.integers(0, 10, size=128))
               for _ in range(4)]
    return adam_cross_entropy_case(ours, theirs, batches)


@config("cnn", target=2.5)
def cnn() -> Case:
    """1x28x28 images, batch 64: Conv2d(1,32,3,p=1)-BN-ReLU-MaxPool(2)-Conv2d(32,64,3,p=1)-BN-ReLU-MaxPool(2)-
    AdaptiveAvgPool(1)-Flatten-Linear(64,128)-ReLU-Dropout(0.5)-Linear(128,10), cross-entropy, Adam, float32.

    Dropout draws its masks from each library's own generator, so with p = 0.5 the two losses could never
    agree. The first CHECKED_STEPS steps of each side (the ones `check_losses` compares) therefore run with
    p = 0, which makes the two computations identical (BatchNorm in training mode, Adam included); every
    later step, all warm-up and timed steps among them, runs with p = 0.5, the real cost of the mask.
    """
    sz.manual_seed(0)
    ours = CNN(CNNConfig(in_channels=1, num_classes=10, channels=(32, 64), kernel_size=3, pooled_size=1,
                         hidden=128, dropout=0.5, dims=2))

    class TorchCNN(torch.nn.Module):  # the same module tree, so the state dicts share their keys
        def __init__(self) -> None:
            super().__init__()
            def block(c_in: int, c_out: int) -> torch.nn.Sequential:
                return torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.BatchNorm2d(c_out),
                                           torch.nn.ReLU(), torch.nn.MaxPool2d(2))
            self.features = torch.nn.Sequential(block(1, 32), block(32, 64), torch.nn.AdaptiveAvgPool2d(1))
            self.classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                                  torch.nn.Dropout(0.5), torch.nn.Linear(128, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(x))

    theirs = TorchCNN()
    ours.train()
    theirs.train()
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((64, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, size=64))
               for _ in range(4)]
    steps_done = {"ours": 0, "torch": 0}

    def set_dropout(side: str) -> None:
        steps_done[side] += 1
        p = 0.0 if steps_done[side] <= CHECKED_STEPS else 0.5  # p = 0 only while the losses are compared
        (ours if side == "ours" else theirs).classifier[3].p = p

    return adam_cross_entropy_case(ours, theirs, batches, before_step=set_dropout)


@config("lstm", target=3.0)
def lstm() -> Case:
    """LSTM(64, 256) over 64 steps, batch 32 (time-major), Linear(256, 65) at every step, cross-entropy over
    all 64 * 32 positions, Adam(lr=1e-3), float32: one training step of a character language model."""
    sz.manual_seed(0)

    class Ours(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.head = nn.LSTM(64, 256), nn.Linear(256, 65)

        def forward(self, x: sz.Tensor) -> sz.Tensor:
            output, _ = self.rnn(x)                                # (T, B, 256)
            return self.head(output).reshape(-1, 65)               # (T*B, 65)

    class Theirs(torch.nn.Module):  # the same module tree, so the state dicts share their keys
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.head = torch.nn.LSTM(64, 256), torch.nn.Linear(256, 65)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            output, _ = self.rnn(x)
            return self.head(output).reshape(-1, 65)

    ours, theirs = Ours(), Theirs()
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((64, 32, 64)).astype(np.float32), rng.integers(0, 65, size=64 * 32))
               for _ in range(4)]
    return adam_cross_entropy_case(ours, theirs, batches)


@config("transformer", target=1.5)
def transformer() -> Case:
    """nn.Transformer(d_model 128, nhead 4, 2 encoder + 2 decoder layers, dim_feedforward 512, dropout 0,
    batch_first) between source and target Embeddings (vocabularies of 64) and a Linear(128, 64) head;
    source and target length 16, batch 64, causal target mask, cross-entropy over all 64 * 16 target
    positions, Adam(lr=1e-3), float32: one teacher-forced training step of a small seq2seq model.
    A batch's input is (64, 32) ids: the 16 source ids, then the 16 target-input ids."""
    sz.manual_seed(0)
    vocab, d_model, length = 64, 128, 16
    sizes = dict(d_model=d_model, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=512,
                 dropout=0.0, batch_first=True)

    class Ours(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.src_embed, self.tgt_embed = nn.Embedding(vocab, d_model), nn.Embedding(vocab, d_model)
            self.transformer, self.head = nn.Transformer(**sizes), nn.Linear(d_model, vocab)
            self.tgt_mask = nn.Transformer.generate_square_subsequent_mask(length)  # -inf above the diagonal

        def forward(self, ids: sz.Tensor) -> sz.Tensor:
            src, tgt = self.src_embed(ids[:, :length]), self.tgt_embed(ids[:, length:])  # (N, 16, 128) each
            out = self.transformer(src, tgt, tgt_mask=self.tgt_mask)                      # (N, 16, 128)
            return self.head(out).reshape(-1, vocab)                                      # (N*16, 64)

    class Theirs(torch.nn.Module):  # the same module tree, so the state dicts share their keys
        def __init__(self) -> None:
            super().__init__()
            self.src_embed = torch.nn.Embedding(vocab, d_model)
            self.tgt_embed = torch.nn.Embedding(vocab, d_model)
            self.transformer, self.head = torch.nn.Transformer(**sizes), torch.nn.Linear(d_model, vocab)
            self.register_buffer("tgt_mask", torch.nn.Transformer.generate_square_subsequent_mask(length),
                                 persistent=False)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            src, tgt = self.src_embed(ids[:, :length]), self.tgt_embed(ids[:, length:])
            out = self.transformer(src, tgt, tgt_mask=self.tgt_mask)
            return self.head(out).reshape(-1, vocab)

    ours, theirs = Ours(), Theirs()
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, vocab, size=(64, 2 * length)), rng.integers(0, vocab, size=64 * length))
               for _ in range(4)]
    return adam_cross_entropy_case(ours, theirs, batches)


# ---------------------------------------------------------------------------- gpt (models/gpt.py)

GPT_SIZES = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)
GPT_BATCH = 12
SAMPLE_TOKENS = 192  # from a one-token prompt: the first 63 inside the block, the rest past it


class TorchGPT(torch.nn.Module):
    """nanoGPT's model.py, condensed (flash attention path, no bias, tied head), with the same names."""

    class Block(torch.nn.Module):
        def __init__(self, n_embd: int, n_head: int) -> None:
            super().__init__()
            self.n_head = n_head
            self.ln_1 = torch.nn.LayerNorm(n_embd, bias=False)
            self.attn = torch.nn.Module()
            self.attn.c_attn = torch.nn.Linear(n_embd, 3 * n_embd, bias=False)
            self.attn.c_proj = torch.nn.Linear(n_embd, n_embd, bias=False)
            self.ln_2 = torch.nn.LayerNorm(n_embd, bias=False)
            self.mlp = torch.nn.Module()
            self.mlp.c_fc = torch.nn.Linear(n_embd, 4 * n_embd, bias=False)
            self.mlp.c_proj = torch.nn.Linear(4 * n_embd, n_embd, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            B, T, C = x.size()
            q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                       for t in self.attn.c_attn(self.ln_1(x)).split(C, dim=2))
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
            return x + self.mlp.c_proj(torch.nn.functional.gelu(self.mlp.c_fc(self.ln_2(x))))

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int, **_: object):
        super().__init__()
        self.block_size = block_size
        self.transformer = torch.nn.ModuleDict(dict(
            wte=torch.nn.Embedding(vocab_size, n_embd), wpe=torch.nn.Embedding(block_size, n_embd),
            h=torch.nn.ModuleList([self.Block(n_embd, n_head) for _ in range(n_layer)]),
            ln_f=torch.nn.LayerNorm(n_embd, bias=False)))
        self.lm_head = torch.nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.size(1)))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """nanoGPT's generate: the whole (cropped) context through the model for every new token."""
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.block_size:])[:, -1, :]
            idx = torch.cat((idx, torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1)), dim=1)
        return idx


SAMPLE_RUNS = 5  # timed runs of each generator, interleaved, after one warm-up run each
SAMPLE_WARMUP_TOKENS = 72  # past block_size, so the warm-up also takes the cropping path


def gpt_sampling() -> dict[str, float | int]:
    """Tokens per second of sampling SAMPLE_TOKENS tokens (batch 1, temperature 1): ours with and without
    the KV cache, and nanoGPT's torch generate (no cache) for reference. Each is warmed up once (a run of
    SAMPLE_WARMUP_TOKENS tokens), then the three are timed interleaved (cache, no cache, torch, cache, ...)
    SAMPLE_RUNS times; the rates are from the median times. The row also says what was measured."""
    sz.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = GPT(GPTConfig(**GPT_SIZES)), TorchGPT(**GPT_SIZES).eval()
    copy_weights(ours, theirs)
    prompt = np.zeros((1, 1), dtype=np.int64)
    generators: dict[str, Callable[[int], object]] = {
        "sample_tokens_per_s_kv_cache": lambda tokens: ours.generate(prompt, tokens),
        "sample_tokens_per_s_no_cache": lambda tokens: ours.generate(prompt, tokens, use_cache=False),
        "torch_sample_tokens_per_s_no_cache": lambda tokens: theirs.generate(torch.from_numpy(prompt), tokens)}
    for generate in generators.values():
        generate(SAMPLE_WARMUP_TOKENS)
    times: dict[str, list[float]] = {name: [] for name in generators}
    for _ in range(SAMPLE_RUNS):
        for name, generate in generators.items():
            start = time.perf_counter()
            generate(SAMPLE_TOKENS)
            times[name].append(time.perf_counter() - start)
    rates = {name: round(SAMPLE_TOKENS / statistics.median(seconds), 1) for name, seconds in times.items()}
    return {**rates, "sample_tokens": SAMPLE_TOKENS, "sample_warmup_tokens": SAMPLE_WARMUP_TOKENS,
            "sample_runs": SAMPLE_RUNS}


@config("gpt", target=1.5, extras=gpt_sampling)
def gpt() -> Case:
    """nanoGPT's shakespeare_char CPU configuration (n_layer 4, n_head 4, n_embd 128, block_size 64, vocab 65,
    no bias, dropout 0): one training step on a batch of 12 x 64 tokens, cross-entropy over all 768
    positions, AdamW(lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on the >= 2-D parameters) as gpt-char
    configures it (recipes/gpt.py; its gradient clipping is left out on both sides), float32. The torch side
    is nanoGPT's model (TorchGPT) with the same weights."""
    sz.manual_seed(0)
    ours, theirs = GPT(GPTConfig(**GPT_SIZES)), TorchGPT(**GPT_SIZES)
    copy_weights(ours, theirs)

    def adamw(params: list, make: Callable[..., object]) -> object:
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        return make(groups, lr=1e-3, betas=(0.9, 0.99))

    ours_optimizer = adamw(list(ours.parameters()), optim.AdamW)
    torch_optimizer = adamw(list(theirs.parameters()), torch.optim.AdamW)
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 65, size=(GPT_BATCH, 64)), rng.integers(0, 65, size=GPT_BATCH * 64))
               for _ in range(4)]
    ours_batch = cycle([(sz.Tensor(x), sz.Tensor(y)) for x, y in batches])
    torch_batch = cycle([(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches])

    def ours_step() -> float:
        x, y = ours_batch()
        ours_optimizer.zero_grad()
        loss = F.cross_entropy(ours(x).reshape(-1, 65), y)
        loss.backward()
        ours_optimizer.step()
        return loss.item()

    def torch_step() -> float:
        x, y = torch_batch()
        torch_optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(theirs(x).reshape(-1, 65), y)
        loss.backward()
        torch_optimizer.step()
        return loss.item()

    return Case(ours_step, torch_step)


# ============================================================================ measuring


# the environment variables each BLAS reads for its thread count, first found first (OpenBLAS: driver/others/
# blas_server.c; MKL: MKL_NUM_THREADS over OMP_NUM_THREADS); an unknown BLAS gets the common ones in this order
BLAS_THREAD_VARIABLES = {"openblas": ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"),
                         "mkl": ("MKL_NUM_THREADS", "OMP_NUM_THREADS")}
COMMON_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def cpu_count() -> int:
    """The CPUs this process may run on (what OpenBLAS caps its threads at)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def numpy_blas_name() -> str:
    """The BLAS NumPy was built with, lower case ('scipy-openblas', 'mkl', ...), or '' when it does not say."""
    try:
        return str(np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]).lower()
    except Exception:  # NumPy < 1.25 has no mode="dicts"; other builds may lack the entry
        return ""


def blas_threads() -> tuple[int, str]:
    """How many threads NumPy's BLAS uses, and where that number came from: threadpoolctl when it is
    installed (it asks the loaded library), else the *_NUM_THREADS variables in the order NumPy's BLAS
    reads them (capped at the CPU count, as OpenBLAS does), else the CPU count."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
        chosen = [info for info in blas if "numpy" in info.get("filepath", "")] or blas
        if chosen:
            return int(chosen[0]["num_threads"]), "threadpoolctl"
    name = numpy_blas_name()
    kind = next((kind for kind in BLAS_THREAD_VARIABLES if kind in name), None)
    for variable in BLAS_THREAD_VARIABLES.get(kind, COMMON_THREAD_VARIABLES):
        value = os.environ.get(variable, "").split(",")[0].strip()  # OMP_NUM_THREADS may list nested levels
        if value.isdigit() and int(value) > 0:
            return min(int(value), cpu_count()), variable
    return cpu_count(), "CPU count"


class WrongComputation(AssertionError):
    """The two libraries disagree on a loss: timing them would compare different work."""


def check_losses(name: str, case: Case) -> None:
    for step in range(1, CHECKED_STEPS + 1):
        ours, theirs = case.ours(), case.torch()
        if not abs(ours - theirs) <= LOSS_TOLERANCE * max(1.0, abs(theirs)):
            raise WrongComputation(f"{name}: step {step} loss {ours:.7g} (ours) != {theirs:.7g} (torch)")


MEASURED_KEYS = ("config", "ours_ms", "torch_ms", "ratio", "target", "blas_threads", "blas_threads_from",
                 "torch_threads", "checked_steps", "warmup_steps", "measured_steps", "statistic")  # then the extras


def measure(entry: Config, steps: int, blas: tuple[int, str] | None = None) -> dict[str, float | int | str]:
    """Medians over `steps` interleaved steps, after a check and a warm-up of each. `blas`: NumPy's BLAS
    thread count and its source, as `blas_threads()` returns them (looked up when not given)."""
    blas_count, blas_source = blas if blas is not None else blas_threads()
    case = entry.build()
    check_losses(entry.name, case)
    for _ in range(WARMUP_STEPS):
        case.ours()
        case.torch()
    ours_times, torch_times = [], []
    clock = time.perf_counter
    for _ in range(steps):
        start = clock()
        case.ours()
        middle = clock()
        case.torch()
        end = clock()
        ours_times.append(middle - start)
        torch_times.append(end - middle)
    ours_ms = 1e3 * statistics.median(ours_times)
    torch_ms = 1e3 * statistics.median(torch_times)
    values = (entry.name, round(ours_ms, 3), round(torch_ms, 3), round(ours_ms / torch_ms, 3), entry.target,
              blas_count, blas_source, torch.get_num_threads(), CHECKED_STEPS, WARMUP_STEPS, steps, "median")
    return {**dict(zip(MEASURED_KEYS, values)), **(entry.extras() if entry.extras else {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help=f"one of: {', '.join(CONFIGS)} (default: all)")
    parser.add_argument("--json", action="store_true", help="one JSON object per config and line")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help=f"measured steps per library (>= {MIN_STEPS}, default {DEFAULT_STEPS})")
    args = parser.parse_args(argv)
    if args.config is not None and args.config not in CONFIGS:
        print(f"vs_torch: unknown config {args.config!r}; choose from: {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    if args.steps < MIN_STEPS:
        print(f"vs_torch: --steps must be at least {MIN_STEPS}, got {args.steps}", file=sys.stderr)
        return 2

    threads, source = blas_threads()
    torch.set_num_threads(threads)
    names = [args.config] if args.config else list(CONFIGS)
    header = (f"threads: NumPy BLAS {threads} (from {source}), PyTorch {torch.get_num_threads()}; "
              f"{WARMUP_STEPS} warm-up + {args.steps} measured steps each, interleaved, medians")
    print(header, file=sys.stderr if args.json else sys.stdout)  # --json keeps stdout to JSON lines
    if not args.json:
        print(f"{'config':<10} {'ours ms/step':>13} {'torch ms/step':>14} {'ratio':>7} {'target':>7}")
    for name in names:
        try:
            row = measure(CONFIGS[name], args.steps, (threads, source))
        except WrongComputation as error:
            print(f"vs_torch: {error}; not timed", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{name:<10} {row['ours_ms']:>13.3f} {row['torch_ms']:>14.3f} {row['ratio']:>7.2f} "
                  f"{row['target']:>7.2f}", flush=True)
            extras = [key for key in row if key not in MEASURED_KEYS]  # the header says how steps were measured
            for key in extras:  # a config's extras, one per line under its row
                print(f"  {key}: {row[key]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
