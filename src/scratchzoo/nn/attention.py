"""Multi-head attention with PyTorch's parameter layout and mask conventions.

    q = query W_q^T + b_q,  k = key W_k^T + b_k,  v = value W_v^T + b_v   (W_q, W_k, W_v: rows of in_proj_weight)
    head_h = softmax(q_h k_h^T / sqrt(d_head) + mask) v_h                 (F.scaled_dot_product_attention)
    out = concat(head_1 .. head_H) W_o^T + b_o                             (out_proj)

Incremental decoding (optional `cache`, a KVCache): self-attention projects k, v for the new positions
only and appends them to the slot's keys and values of earlier steps; cross-attention (`static_kv`)
projects the fixed encoder output once, stores it, and reuses it at every later step.
"""
from __future__ import annotations

from typing import Any, Hashable

import numpy as np

from scratchzoo import functional as F
from scratchzoo.autograd import ShapeError, Tensor
from scratchzoo.functional.attention import float_mask
from scratchzoo.nn import init
from scratchzoo.nn.kv_cache import KVCache
from scratchzoo.nn.layers import Linear
from scratchzoo.nn.module import Module, Parameter, check_input

_MASK_NAMES = ("attn_mask", "key_padding_mask")  # what MultiheadAttention itself calls its two masks


class MultiheadAttention(Module):
    """Attention with num_heads heads of size embed_dim // num_heads, as torch.nn.MultiheadAttention.

    Parameters: in_proj_weight (3E, E) (query, key and value projections stacked), in_proj_bias (3E,),
    out_proj (Linear E -> E). Inputs (L, N, E) or (N, L, E) with batch_first, or unbatched (L, E).
    Masks: attn_mask (L, S) or (N * num_heads, L, S), key_padding_mask (N, S) ((S,) unbatched); bool True
    means "may not attend", a float mask is added to the scores (a Tensor that requires grad gets its
    gradient, as in torch).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        self.in_proj_weight = init.xavier_uniform_(Parameter(np.empty((3 * embed_dim, embed_dim), dtype=np.float32)))
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        if bias:
            self.in_proj_bias = Parameter(np.zeros(3 * embed_dim, dtype=np.float32))
            init.zeros_(self.out_proj.bias)  # torch zeroes both biases
        else:
            self.register_parameter("in_proj_bias", None)

    def _project(self, x: Tensor, part: int) -> Tensor:
        """x W_part^T + b_part with W_part the part-th block of E rows of in_proj_weight (0 q, 1 k, 2 v)."""
        e = self.embed_dim
        rows = slice(part * e, (part + 1) * e)
        bias = None if self.in_proj_bias is None else F.index(self.in_proj_bias, rows)
        return F.linear(x, F.index(self.in_proj_weight, rows), bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        n, length, _ = x.shape  # (N, L, E) -> (N, H, L, d_head)
        return F.permute(F.reshape(x, (n, length, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def _additive(self, mask: Any, name: str, dtype: np.dtype) -> Tensor:
        """MHA's convention as a mask added to the scores: bool True = may NOT attend (-> -inf); a float mask
        as it is (a constant of the input's dtype, or the Tensor itself when it requires grad)."""
        array = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
        if array.dtype == np.bool_:
            return Tensor(np.where(array, dtype.type(-np.inf), dtype.type(0)))
        return float_mask(mask, dtype, self.describe(), name)

    def _mask(self, attn_mask: Any, key_padding_mask: Any, is_causal: bool, n: int, tq: int, tk: int,
              dtype: np.dtype, past: int = 0, unbatched: bool = False,
              names: tuple[str, str] = _MASK_NAMES) -> Tensor | None:
        """One additive mask broadcasting to the scores (N, H, L, S), or None.

        The causal mask lets query i (position past + i, after `past` cached positions) see keys 0..past + i.
        `names` are the caller's names of the two masks, for the errors (a Transformer layer's src_mask ...).
        """
        attn_name, padding_name = names
        total = None
        if attn_mask is None and is_causal:
            attn_mask = ~F.causal_mask(tq, tk, past)
        if attn_mask is not None:
            mask = self._additive(attn_mask, attn_name, dtype)
            if mask.shape == (tq, tk):
                total = mask
            elif mask.shape == (n * self.num_heads, tq, tk):
                total = F.reshape(mask, (n, self.num_heads, tq, tk))
            else:
                raise ShapeError(f"{self.describe()}: {attn_name} must have shape ({tq}, {tk}) or "
                                 f"({n * self.num_heads}, {tq}, {tk}), got {mask.shape}")
        if key_padding_mask is not None:
            mask = self._additive(key_padding_mask, padding_name, dtype)
            expected = (tk,) if unbatched else (n, tk)
            if mask.shape != expected:
                raise ShapeError(f"{self.describe()}: {padding_name} must have shape {expected}, got {mask.shape}")
            padding = F.reshape(mask, (n, 1, 1, tk))
            total = padding if total is None else total + padding
        return total

    def _keys_values(self, key: Tensor, value: Tensor, cache: KVCache | None, slot: Hashable,
                     static_kv: bool) -> tuple[Tensor, Tensor, int]:
        """(k, v, past): the keys and values to attend over, and how many of them earlier steps cached."""
        if cache is not None and static_kv and cache.get(slot) is not None:
            return (*cache.get(slot), 0)  # fixed memory: projected on the first step, reused since
        k, v = (self._split_heads(self._project(x, part)) for part, x in ((1, key), (2, value)))
        if cache is None:
            return k, v, 0
        if static_kv:
            cache.put(slot, k, v)
            return k, v, 0
        past = cache.length(slot)
        k, v = cache.append(slot, k, v)  # positions 0 .. past + L - 1
        return k, v, past

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Any = None,
                need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                is_causal: bool = False, *, cache: KVCache | None = None, cache_slot: Hashable = None,
                static_kv: bool = False, mask_names: tuple[str, str] = _MASK_NAMES) -> tuple[Tensor, Tensor | None]:
        """Attention of `query` over `key`/`value`; returns (output, weights or None) as torch.

        With `cache`, keys and values live in `cache` under `cache_slot`: by default the new positions'
        k, v are appended (self-attention, one step at a time; masks then cover all cached keys); with
        `static_kv` they are projected on the first call, stored, and reused afterwards (cross-attention).
        `mask_names` are what a calling layer calls attn_mask and key_padding_mask (("src_mask",
        "src_key_padding_mask") in TransformerEncoderLayer), so a bad mask is reported by the caller's name.
        """
        for x in (query, key, value):
            check_input(self, x, last_dim=self.embed_dim, ndims=(2, 3))
        if not query.ndim == key.ndim == value.ndim:
            raise ShapeError(f"{self.describe()}: query, key and value must be all batched (3-D) or all unbatched "
                             f"(2-D), got query {query.shape}, key {key.shape}, value {value.shape}")
        unbatched = query.ndim == 2
        if unbatched:  # (L, E) -> (1, L, E)
            query, key, value = (F.unsqueeze(x, 0) for x in (query, key, value))
        elif not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = (F.transpose(x, 0, 1) for x in (query, key, value))
        n, tq = query.shape[0], query.shape[1]
        if key.shape[0] != n or value.shape[:2] != key.shape[:2]:
            raise ShapeError(f"{self.describe()}: query, key and value disagree on batch or length: "
                             f"{query.shape}, {key.shape}, {value.shape}")

        q = self._split_heads(self._project(query, 0))  # (N, H, L, d_head)
        k, v, past = self._keys_values(key, value, cache, cache_slot, static_kv)  # (N, H, S, d_head)
        mask = self._mask(attn_mask, key_padding_mask, is_causal, n, tq, k.shape[2], query.dtype, past, unbatched,
                          mask_names)
        dropout_p = self.dropout if self.training else 0.0
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                               need_weights=need_weights)  # (N, H, L, d_head)
        weights = None
        if need_weights:
            heads, weights = heads
            if average_attn_weights:
                weights = F.mean(weights, 1)  # (N, L, S)
            if unbatched:
                weights = F.squeeze(weights, 0)
        out = F.reshape(F.permute(heads, (0, 2, 1, 3)), (n, tq, self.embed_dim))  # concat heads: (N, L, E)
        out = self.out_proj(out)
        if unbatched:
            out = F.squeeze(out, 0)
        elif not self.batch_first:
            out = F.transpose(out, 0, 1)
        return out, weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, " \
               f"batch_first={self.batch_first}"
