"""GPT: a decoder-only transformer that predicts the next token from every prefix (nanoGPT's layout).

    ids (B, T) -> wte(ids) + wpe(0..T-1)                         token + learned position embeddings (B, T, C)
               -> n_layer x Block:  x = x + attn(ln_1(x))         causal self-attention, pre-LN residual
                                    x = x + mlp(ln_2(x))          feed-forward C -> 4C -> GELU -> C
               -> ln_f -> lm_head (= wte^T, tied)                 logits (B, T, vocab_size)

The logits at position t score the token at t + 1; the causal mask makes them depend on tokens 0..t
only, so one forward pass trains all T next-token predictions at once.

Parameter names are nanoGPT's (transformer.wte, transformer.wpe, transformer.h.{i}.ln_1, .attn.c_attn,
.attn.c_proj, .ln_2, .mlp.c_fc, .mlp.c_proj, transformer.ln_f, lm_head), so a state dict moves between
this model and nanoGPT's `GPT` with `load_state_dict`.

Decoding (`GPT.generate`, `GPT.stream`): the next token is drawn from softmax(logits / temperature),
optionally restricted to the top_k highest scores and/or the smallest set of tokens whose probability
adds up to top_p; temperature 0 takes the argmax. With a key/value cache (`nn.KVCache`) each new token
runs the model over one position only; see `GPT.stream` for what happens past block_size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from scratchzoo import functional as F
from scratchzoo.autograd import ShapeError, Tensor, no_grad
from scratchzoo.nn import (GELU, Dropout, Embedding, KVCache, LayerNorm, Linear, Module, ModuleDict, ModuleList,
                           check_token_ids, eval_mode, init)
from scratchzoo.sampling import sample_next


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64  # the longest context: positions 0..block_size-1 have an embedding
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # C = n_head * d_head
    dropout: float = 0.0
    bias: bool = True  # biases in the Linear layers and LayerNorms (nanoGPT's option; False is a bit better)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")


# ============================================================================ the blocks, in data-flow order


class CausalSelfAttention(Module):
    """Multi-head self-attention in which position t attends to positions 0..t only.

    One fused projection c_attn makes q, k and v for all heads at once (C -> 3 * n_head * d_head), which is
    split into q, k, v and then into heads; each head computes softmax(q k^T / sqrt(d_head) + mask) v, the
    heads are concatenated and c_proj mixes them.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = Dropout(config.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, slot: str = "") -> Tensor:  # x: (B, T, C)
        B, T, C = x.shape
        q, k, v = (self._heads(t) for t in self.c_attn(x).split(C, dim=2))  # each (B, n_head, T, d_head)
        dropout_p = self.dropout if self.training else 0.0
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
        else:
            past = cache.length(slot)
            k, v = cache.append(slot, k, v)  # keys and values of all past + T positions
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=F.causal_mask(T, past + T, past),
                                               dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))

    def _heads(self, t: Tensor) -> Tensor:
        """(B, T, C) -> (B, n_head, T, d_head): head h owns channels h*d_head .. (h+1)*d_head - 1."""
        B, T, C = t.shape
        return t.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2)


class MLP(Module):
    """The position-wise feed-forward network: C -> 4C -> GELU -> C (each token on its own)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = GELU()
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(Module):
    """Pre-LN residual block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)).

    Normalising the input of each branch (not the sum) leaves the residual path x -> x an identity, so
    gradients reach the first layers undamped however deep the stack.
    """

    def __init__(self, config: GPTConfig, feed_forward: Module):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = feed_forward

    def forward(self, x: Tensor, cache: KVCache | None = None, slot: str = "") -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, slot)
        return x + self.mlp(self.ln_2(x))


FeedForwardFactory = Callable[[GPTConfig, int], Module]


def residual_init_std(n_layer: int) -> float:
    """GPT-2's std for a projection that writes into the residual stream: 0.02 / sqrt(2 * n_layer), since
    each of the n_layer blocks adds two such branches to the sum."""
    return 0.02 / math.sqrt(2 * n_layer)


def dense_mlp(config: GPTConfig, layer: int) -> Module:
    """The default feed-forward of every block: the dense 4x MLP."""
    return MLP(config)


class GPT(Module):
    """nanoGPT's GPT: embeddings, n_layer pre-LN blocks, a final LayerNorm, a head tied to wte.

    feed_forward: a factory `(config, layer_index) -> Module` building the feed-forward network of block
        `layer_index`; the module maps (B, T, C) -> (B, T, C) and is registered as `transformer.h.{i}.mlp`.
        Default: the dense MLP (C -> 4C -> GELU -> C). A Mixture-of-Experts layer plugs in here, e.g.
        `GPT(config, feed_forward=lambda config, i: MoE(MoEConfig(d_model=config.n_embd)) if i % 2 else MLP(config))`
        (models/moe.py).

    Initialisation (GPT-2): every Linear and Embedding weight in the model, the feed-forward modules'
    included, ~ N(0, 0.02), biases 0; then every parameter named `c_proj.weight` (the projections that
    write into the residual stream) ~ N(0, 0.02 / sqrt(2 * n_layer)), so the variance of the residual
    sum stays about the same however many blocks add to it. A feed-forward module that needs another
    initialisation can be re-initialised after the GPT is built.
    """

    def __init__(self, config: GPTConfig, feed_forward: FeedForwardFactory | None = None):
        super().__init__()
        self.config = config
        build = feed_forward or dense_mlp
        self.transformer = ModuleDict(dict(
            wte=Embedding(config.vocab_size, config.n_embd),
            wpe=Embedding(config.block_size, config.n_embd),
            drop=Dropout(config.dropout),
            h=ModuleList(Block(config, build(config, i)) for i in range(config.n_layer)),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: logits = x wte^T (one matrix, two uses)
        for module in self.modules():
            if isinstance(module, (Linear, Embedding)):
                init.normal_(module.weight, 0.0, 0.02)
                if isinstance(module, Linear) and module.bias is not None:
                    init.zeros_(module.bias)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                init.normal_(param, 0.0, residual_init_std(config.n_layer))

    def num_parameters(self, non_embedding: bool = True) -> int:
        """As nanoGPT reports it: without the position embeddings (the token ones are the tied head)."""
        total = super().num_parameters()
        return total - self.transformer.wpe.weight.numel() if non_embedding else total

    def forward(self, idx: Any, cache: KVCache | None = None) -> Tensor:  # idx: (B, T) integer ids
        idx = Tensor(check_token_ids(idx, "GPT", "idx", self.config.vocab_size))
        past = 0 if cache is None else cache.length("h.0")
        T = idx.shape[1]
        if past + T > self.config.block_size:
            raise ShapeError(f"GPT: cannot read {past + T} tokens ({past} cached + {T} new); the block size "
                             f"(the longest context, one position embedding each) is {self.config.block_size}")
        pos = Tensor(np.arange(past, past + T, dtype=np.int64))     # positions of the new tokens
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)   # (B, T, C) + (T, C)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache, f"h.{i}")
        return self.lm_head(self.transformer.ln_f(x))               # (B, T, vocab_size)

    # ------------------------------------------------------------------------ decoding

    def stream(self, idx: np.ndarray | Tensor, max_new_tokens: int, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, use_cache: bool = True
               ) -> Iterator[np.ndarray]:
        """Yield the next token of every row, (B,) int64, `max_new_tokens` times (e.g. to print as they come).

        Without the cache each step runs the model over the last block_size tokens (nanoGPT's crop).
        With the cache the prompt is read once and each step then runs over the one new token, attending
        to the cached keys and values. Position embeddings exist for 0..block_size-1 only and cached keys
        carry their positions, so when the cache is full the window slides by half a block: the cache is
        rebuilt from the last block_size // 2 tokens (one forward pass) and one-token steps resume. Up to
        block_size tokens in all the two give identical logits; past it the cached model sees between
        block_size / 2 and block_size tokens of context instead of always block_size.
        """
        idx = check_token_ids(idx, "GPT.generate", "the prompt", self.config.vocab_size)
        block = self.config.block_size
        with eval_mode(self):  # dropout off for the whole generation, the caller's mode back after
            cache, fed = None, 0  # tokens[:, :fed] have gone through the model into the cache
            tokens = idx
            for _ in range(max_new_tokens):
                with no_grad():  # around the model only: the caller's code runs between the yields
                    if not use_cache:
                        logits = self(Tensor(tokens[:, -block:]))
                    else:
                        if cache is None or cache.length("h.0") == block:
                            keep = block if cache is None else block // 2  # the prompt's window, or half a block
                            cache, fed = KVCache(), max(tokens.shape[1] - keep, 0)
                        logits = self(Tensor(tokens[:, fed:]), cache)
                        fed = tokens.shape[1]
                new = sample_next(logits.data[:, -1], temperature, top_k, top_p)
                tokens = np.concatenate([tokens, new[:, None]], axis=1)
                yield new

    def generate(self, idx: np.ndarray | Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, use_cache: bool = True) -> np.ndarray:
        """The prompt (B, T) followed by `max_new_tokens` sampled tokens: (B, T + max_new_tokens) int64."""
        idx = check_token_ids(idx, "GPT.generate", "the prompt", self.config.vocab_size)
        new = list(self.stream(idx, max_new_tokens, temperature, top_k, top_p, use_cache))
        return np.concatenate([idx, np.stack(new, axis=1)], axis=1) if new else idx
