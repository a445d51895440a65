"""The Transformer for sequence-to-sequence tasks (Vaswani et al., 2017): training and decoding.

Data flow (every shape batch first; S source and T target positions):

  src ids (N, S) -> Embedding * sqrt(d_model) + pe[:S] -> encoder (L_enc layers + LayerNorm) -> memory (N, S, d)
  tgt ids (N, T) -> Embedding * sqrt(d_model) + pe[:T] -> decoder (L_dec layers + LayerNorm)  -> h (N, T, d)
                                                          (causal self-attention, cross-attention on memory)
  h -> Linear (its weight the target embedding when tied) -> logits (N, T, V_tgt)

  pe[pos, 2i] = sin(pos / 10000^(2i/d)),  pe[pos, 2i+1] = cos(pos / 10000^(2i/d))    nn/transformer.py
  attention:  softmax(q k^T / sqrt(d_k) + mask) v, per head                         functional/attention.py

Training (teacher forcing): tgt = [bos, y_1 .. y_m, eos, pad ...]; the decoder reads tgt[:, :-1] (the
target shifted right) and is scored on predicting tgt[:, 1:], with label-smoothed cross-entropy
  loss = -sum_c q_c log p_c,  q = (1 - eps) one_hot(y) + eps / V,  pads ignored.

Decoding, all inputs of the batch at once (rows that have emitted eos keep emitting pad):
  greedy:  y_t = argmax_v p(v | y_<t, src)
  beam:    keep the beam_width best partial outputs by  score = log p(y) / lp(y),
           lp(y) = ((5 + |y|) / 6)^alpha  (GNMT's length penalty, alpha = length_penalty; |y| counts eos).
With a key/value cache each step feeds only the newest token: the keys and values of earlier positions
are kept (nn/kv_cache.py), so a step costs O(t) instead of re-running all t positions.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from scratchzoo import functional as F
from scratchzoo.autograd import DTypeError, ShapeError, Tensor, no_grad
from scratchzoo.nn import (Embedding, KVCache, Linear, Module, MultiheadAttention, SinusoidalPositionalEncoding,
                           Transformer, check_token_ids, eval_mode, init)

NAME = "Seq2SeqTransformer"


@dataclass
class Seq2SeqConfig:
    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 256
    nhead: int = 4
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dim_feedforward: int = 1024
    dropout: float = 0.1
    max_len: int = 64            # longest source or target sequence (incl. bos/eos)
    norm_first: bool = True      # pre-LN trains more stably from scratch; False = the paper's post-LN
    tie_embeddings: bool = True  # output projection shares the target embedding matrix
    aligned_memory: bool = False  # one output token per source token: decoder input t also gets memory[t]
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2


# ============================================================================ checking inputs


def _ids(ids: Any, what: str, vocab_size: int, max_len: int) -> np.ndarray:
    """`ids` as an (N, L) int64 array, 1 <= L <= max_len, every id in [0, vocab_size); else a clear error."""
    array = check_token_ids(ids, NAME, what, vocab_size)
    if array.shape[1] > max_len:
        raise ShapeError(f"{NAME}: {what} has length {array.shape[1]}, longer than max_len {max_len}")
    return array


# ============================================================================ the model


class Seq2SeqTransformer(Module):
    """Encoder-decoder Transformer: embeddings, positions, nn.Transformer (batch first), output projection.

    Parameters: src_embed, tgt_embed (Embedding), transformer (torch.nn.Transformer's names, with the
    final LayerNorms transformer.encoder.norm and transformer.decoder.norm), generator (Linear d -> V_tgt).
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = config
        specials = {"pad_id": c.pad_id, "bos_id": c.bos_id, "eos_id": c.eos_id}
        if len(set(specials.values())) != 3 or not all(0 <= i < c.tgt_vocab_size for i in specials.values()):
            raise ValueError(f"{NAME}: pad_id, bos_id and eos_id must be distinct ids below tgt_vocab_size "
                             f"{c.tgt_vocab_size}, got {specials}")
        if not 0 <= c.pad_id < c.src_vocab_size:
            raise ValueError(f"{NAME}: pad_id {c.pad_id} must lie below src_vocab_size {c.src_vocab_size}")
        self.config = config
        self.src_embed = Embedding(c.src_vocab_size, c.d_model)
        self.tgt_embed = Embedding(c.tgt_vocab_size, c.d_model)
        self.pos_encoding = SinusoidalPositionalEncoding(c.d_model, c.max_len, dropout=c.dropout)
        self.transformer = Transformer(c.d_model, c.nhead, c.num_encoder_layers, c.num_decoder_layers,
                                       c.dim_feedforward, c.dropout, batch_first=True, norm_first=c.norm_first)
        self.generator = Linear(c.d_model, c.tgt_vocab_size)
        # Embeddings ~ N(0, 1/d_model): times sqrt(d_model) each input vector has unit-variance entries, the
        # scale of the positional table (|pe| <= 1); and as the tied output matrix, logits w_v . h of a
        # LayerNorm-ed h (unit-variance entries) have variance d_model * (1/d_model) = 1 at the start.
        for embed in (self.src_embed, self.tgt_embed):
            init.normal_(embed.weight, std=c.d_model ** -0.5)
        if c.tie_embeddings:
            self.generator.weight = self.tgt_embed.weight  # one (V_tgt, d) matrix reads tokens in and scores them out
        self.scale = math.sqrt(c.d_model)

    # ---- encoder ---------------------------------------------------------------------------------
    def encode(self, src: Any) -> tuple[Tensor, np.ndarray]:
        """memory (N, S, d) and the source padding mask (N, S), True where src is pad."""
        src = _ids(src, "src", self.config.src_vocab_size, self.config.max_len)
        padding = src == self.config.pad_id
        x = self.pos_encoding(self.src_embed(Tensor(src)) * self.scale)  # E[src] sqrt(d) + pe[:S]
        return self.transformer.encoder(x, src_key_padding_mask=padding), padding

    # ---- decoder -----------------------------------------------------------------------------------
    def decode(self, tgt_in: Any, memory: Tensor, src_padding: np.ndarray, cache: KVCache | None = None,
               start: int = 0) -> Tensor:
        """Logits (N, T, V_tgt) for target positions start .. start + T - 1.

        Without a cache, tgt_in holds the whole prefix (start = 0). With one, it holds only the tokens after
        the `start` positions already cached. The decoder needs no target padding mask: pads only follow a
        sequence's tokens, so the causal mask already hides them from every real position.
        """
        tgt_in = _ids(tgt_in, "tgt_in", self.config.tgt_vocab_size, self.config.max_len)
        if start + tgt_in.shape[1] > self.config.max_len:
            raise ShapeError(f"{NAME}: target positions {start}..{start + tgt_in.shape[1] - 1} exceed max_len "
                             f"{self.config.max_len}")
        if tgt_in.shape[0] != memory.shape[0]:
            raise ShapeError(f"{NAME}: tgt_in has {tgt_in.shape[0]} rows but memory has {memory.shape[0]}")
        y = self.pos_encoding(self.tgt_embed(Tensor(tgt_in)) * self.scale, start=start)  # E[y] sqrt(d) + pe
        if self.config.aligned_memory:
            y = y + self._aligned_memory(memory, src_padding, start, tgt_in.shape[1])
        h = self.transformer.decoder(y, memory, memory_key_padding_mask=src_padding, tgt_is_causal=True,
                                     cache=cache)  # (N, T, d), after the final LayerNorm
        return self.generator(h)  # h W^T + b: (N, T, V_tgt)

    @staticmethod
    def _aligned_memory(memory: Tensor, src_padding: np.ndarray, start: int, length: int) -> Tensor:
        """memory[:, t] for the decoder positions t = start .. start + length - 1: the encoding of source
        token t, which is what position t must read out when every source token gives one output token
        (a character its syllable). Zero at source padding and past the source's end (where eos is due).
        The decoder then never has to find its place by attention alone, which long inputs make it lose."""
        window = memory[:, start:start + length] * Tensor((~src_padding[:, start:start + length, None])
                                                          .astype(memory.dtype))
        missing = length - window.shape[1]
        if missing:
            window = F.cat([window, Tensor(np.zeros((memory.shape[0], missing, memory.shape[2]), memory.dtype))],
                           dim=1)
        return window

    def forward(self, src: Any, tgt_in: Any) -> Tensor:
        """Logits (N, T, V_tgt) of every next target token given src (N, S) and the decoder input tgt_in (N, T)."""
        memory, src_padding = self.encode(src)
        return self.decode(tgt_in, memory, src_padding)

    # ---- training ----------------------------------------------------------------------------------
    def loss(self, src: Any, tgt: Any, label_smoothing: float = 0.1) -> Tensor:
        """Teacher forcing: read tgt[:, :-1] (bos, y_1, ...), predict tgt[:, 1:] (y_1, ..., eos); the mean
        label-smoothed cross-entropy over the non-pad targets."""
        tgt = _ids(tgt, "tgt", self.config.tgt_vocab_size, self.config.max_len)
        if tgt.shape[1] < 2:
            raise ShapeError(f"{NAME}: tgt needs at least bos and eos (length >= 2), got shape {tgt.shape}")
        logits = self(src, tgt[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1),
                               ignore_index=self.config.pad_id, label_smoothing=label_smoothing)

    # ---- decoding ----------------------------------------------------------------------------------
    def _steps(self, max_len: int | None) -> int:
        """How many tokens a decoder may emit: max_len counts bos and eos, so at most max_len - 1 after bos."""
        max_len = self.config.max_len if max_len is None else max_len
        if not 2 <= max_len <= self.config.max_len:
            raise ValueError(f"{NAME}: max_len must lie in [2, {self.config.max_len}] (bos and eos included), "
                             f"got {max_len}")
        return max_len - 1

    def _next_logits(self, ys: np.ndarray, memory: Tensor, src_padding: np.ndarray,
                     cache: KVCache | None) -> np.ndarray:
        """Scores (rows, V_tgt) of the token after ys: with a cache, feed only the newest token of each row.
        pad and bos score -inf: they are never part of an output."""
        if cache is None:
            logits = self.decode(ys, memory, src_padding).data[:, -1]
        else:
            logits = self.decode(ys[:, -1:], memory, src_padding, cache, start=ys.shape[1] - 1).data[:, -1]
        logits[:, [self.config.pad_id, self.config.bos_id]] = -np.inf
        return logits

    def _lengths(self, output_lengths: Any, rows: int, steps: int) -> np.ndarray | None:
        """output_lengths as an (N,) int array, checked: each must leave room for eos within the steps."""
        if output_lengths is None:
            return None
        lengths = np.asarray(output_lengths)
        if lengths.shape != (rows,):
            raise ShapeError(f"{NAME}: output_lengths must be {rows} integers (one per source row), got shape "
                             f"{lengths.shape}")
        if not np.issubdtype(lengths.dtype, np.integer):
            raise DTypeError(f"{NAME}: output_lengths must be integers (token counts), got {lengths.dtype}")
        if lengths.size and (lengths.min() < 0 or lengths.max() > steps - 1):
            raise ValueError(f"{NAME}: output_lengths must lie in [0, {steps - 1}] (max_len leaves room for "
                             f"{steps - 1} tokens before eos), got [{lengths.min()}, {lengths.max()}]")
        return lengths

    def _force_length(self, logits: np.ndarray, emitted: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """A row that has emitted fewer than its length tokens may not end (eos -> -inf); one that has
        emitted them all may only end (everything but eos -> -inf)."""
        eos = self.config.eos_id
        logits[:, eos] = np.where(emitted < lengths, -np.inf, logits[:, eos])
        ending = emitted >= lengths
        logits[ending] = -np.inf
        logits[ending, eos] = 0.0
        return logits

    def _strip(self, ys: np.ndarray) -> list[list[int]]:
        """Rows [bos, y_1, ..., eos, pad, ...] -> [y_1, ...]: the tokens before the first eos."""
        body = ys[:, 1:]
        is_end = body == self.config.eos_id
        ends = np.where(is_end.any(axis=1), is_end.argmax(axis=1), body.shape[1])
        return [row[:end].tolist() for row, end in zip(body, ends)]

    def greedy_decode(self, src: Any, max_len: int | None = None, use_cache: bool = True,
                      output_lengths: Any = None) -> list[list[int]]:
        """y_t = argmax_v p(v | y_<t, src) for every row at once, until all rows emit eos or max_len tokens
        (bos and eos counted) are reached. Returns each row's ids without bos and eos.

        output_lengths: (N,) ints, for tasks whose output length is known (one syllable per character):
        row i then emits exactly output_lengths[i] tokens, the best ones under that constraint."""
        steps = self._steps(max_len)
        pad, eos = self.config.pad_id, self.config.eos_id
        with eval_mode(self), no_grad():
            memory, src_padding = self.encode(src)
            n = memory.shape[0]
            lengths = self._lengths(output_lengths, n, steps)
            ys = np.full((n, 1), self.config.bos_id, dtype=np.int64)
            done = np.zeros(n, dtype=bool)
            cache = KVCache() if use_cache else None
            for _ in range(steps):
                logits = self._next_logits(ys, memory, src_padding, cache)
                if lengths is not None:
                    logits = self._force_length(logits, np.full(n, ys.shape[1] - 1), lengths)
                token = logits.argmax(axis=-1)
                token = np.where(done, pad, token)  # a finished row only pads
                ys = np.concatenate([ys, token[:, None]], axis=1)
                done |= token == eos
                if done.all():
                    break
        return self._strip(ys)

    def beam_search(self, src: Any, beam_width: int = 4, max_len: int | None = None, length_penalty: float = 0.6,
                    use_cache: bool = True, output_lengths: Any = None) -> list[list[int]]:
        """Beam search over N * beam_width rows at once; returns each input's best output without bos/eos.

        Each step extends every beam by every token, scores the candidates by log p(y) / lp(y) with
        lp(y) = ((5 + |y|) / 6)^length_penalty, and keeps the beam_width best per input. A finished beam
        (it emitted eos) stays a candidate unchanged (extended by pad at no cost); the search ends when
        every beam of every input has finished, or after max_len tokens (bos and eos counted).
        output_lengths: as in greedy_decode, every beam of input i emits exactly output_lengths[i] tokens.
        """
        if beam_width < 1:
            raise ValueError(f"{NAME}: beam_width must be >= 1, got {beam_width}")
        if length_penalty < 0:
            raise ValueError(f"{NAME}: length_penalty must be >= 0, got {length_penalty}")
        steps = self._steps(max_len)
        pad, eos, vocab, b = self.config.pad_id, self.config.eos_id, self.config.tgt_vocab_size, beam_width
        with eval_mode(self), no_grad():
            memory, src_padding = self.encode(src)
            n = memory.shape[0]
            required = self._lengths(output_lengths, n, steps)
            rows = np.repeat(np.arange(n), b)  # row i * b + j is beam j of input i
            required = None if required is None else required[rows]  # each beam's length
            memory, src_padding = F.index(memory, rows), src_padding[rows]  # (N b, S, d), (N b, S)
            ys = np.full((n * b, 1), self.config.bos_id, dtype=np.int64)
            logp = np.zeros((n, b))  # log p(y) of each beam
            logp[:, 1:] = -np.inf  # all beams start equal: keep one, or the first step picks b copies
            lengths = np.zeros((n, b), dtype=np.int64)  # |y|: tokens emitted, eos included
            finished = np.zeros((n, b), dtype=bool)
            pad_only = np.where(np.arange(vocab) == pad, 0.0, -np.inf)  # a finished beam's one continuation
            cache = KVCache() if use_cache else None
            for _ in range(steps):
                logits = self._next_logits(ys, memory, src_padding, cache)
                if required is not None:
                    logits = self._force_length(logits, lengths.reshape(-1), required)
                logits = Tensor(logits)
                step_logp = F.log_softmax(logits, dim=-1).data.reshape(n, b, vocab)  # log p(v | y, src)
                step_logp = np.where(finished[..., None], pad_only, step_logp)
                cand_logp = (logp[..., None] + step_logp).reshape(n, b * vocab)  # (beam j, token v) at j V + v
                cand_len = np.repeat(lengths + ~finished, vocab, axis=1)
                score = cand_logp / ((5.0 + cand_len) / 6.0) ** length_penalty  # log p(y) / lp(y)
                best = np.argsort(-score, axis=1, kind="stable")[:, :b]  # (N, b), best first
                beam, token = np.divmod(best, vocab)
                logp = np.take_along_axis(cand_logp, best, axis=1)
                lengths = np.take_along_axis(cand_len, best, axis=1)
                finished = np.take_along_axis(finished, beam, axis=1) | (token == eos)
                parents = (np.arange(n)[:, None] * b + beam).reshape(-1)  # rows the survivors extend
                ys = np.concatenate([ys[parents], token.reshape(-1, 1)], axis=1)
                if cache is not None:
                    cache.reorder(parents)  # each surviving beam keeps its parent's keys and values
                if (finished | np.isinf(logp)).all():
                    break
            score = logp / ((5.0 + lengths) / 6.0) ** length_penalty
            best_rows = np.arange(n) * b + score.argmax(axis=1)
        return self._strip(ys[best_rows])

    # ---- looking inside ------------------------------------------------------------------------------
    def attention_maps(self, src: Any, tgt_in: Any) -> dict[str, np.ndarray]:
        """The attention weights of one example (batch 1), per layer and head:
        "encoder_self" (L_enc, H, S, S), "decoder_self" (L_dec, H, T, T), "cross" (L_dec, H, T, S)."""
        src = _ids(src, "src", self.config.src_vocab_size, self.config.max_len)
        if src.shape[0] != 1:
            raise ShapeError(f"{NAME}: attention_maps takes one example (src of shape (1, S)), got {src.shape}")
        groups = {"encoder_self": [layer.self_attn for layer in self.transformer.encoder.layers],
                  "decoder_self": [layer.self_attn for layer in self.transformer.decoder.layers],
                  "cross": [layer.multihead_attn for layer in self.transformer.decoder.layers]}
        maps: dict[str, list[np.ndarray]] = {name: [] for name in groups}
        with eval_mode(self), no_grad(), _recording(groups, maps):
            self(src, tgt_in)
        return {name: np.stack(weights) for name, weights in maps.items()}


@contextmanager
def _recording(groups: dict[str, list[MultiheadAttention]], maps: dict[str, list[np.ndarray]]) -> Iterator[None]:
    """While inside, every attention layer in `groups` also computes its per-head weights (N, H, L, S) and
    appends those of example 0 to maps[group] (a forward hook); the layers are restored on leaving."""
    def recorder(attn: MultiheadAttention, weights: list[np.ndarray]) -> Any:
        forward = type(attn).forward

        def recording_forward(*args: Any, **kwargs: Any) -> tuple[Tensor, None]:
            out, w = forward(attn, *args, **{**kwargs, "need_weights": True, "average_attn_weights": False})
            weights.append(w.data[0])
            return out, None
        return recording_forward

    layers = [attn for attns in groups.values() for attn in attns]
    for name, attns in groups.items():
        for attn in attns:
            object.__setattr__(attn, "forward", recorder(attn, maps[name]))  # shadows the class's forward
    try:
        yield
    finally:
        for attn in layers:
            del attn.forward
