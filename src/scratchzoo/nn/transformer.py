"""The Transformer's parts (Vaswani et al., 2017) with PyTorch's arguments and parameter names.

Positions:   pe[pos, 2i] = sin(pos / 10000^(2i/d_model)),  pe[pos, 2i+1] = cos(pos / 10000^(2i/d_model)),
             or a learned table of one vector per position.
Encoder layer (post-LN, the paper):  y = LayerNorm(x + SelfAttn(x));  out = LayerNorm(y + FFN(y)),
             FFN(y) = linear2(dropout(activation(linear1(y)))).
             Pre-LN (norm_first=True): y = x + SelfAttn(LayerNorm(x));  out = y + FFN(LayerNorm(y)).
Decoder layer: masked self-attention, then cross-attention (queries from the decoder, keys and values
             from the encoder's output, `memory`), then the FFN; each a residual block as above.
Incremental decoding: given a KVCache, the decoder takes only the new target positions; each layer's
             self-attention appends their keys and values to slot "layer{i}.self" and its cross-attention
             projects `memory` once into slot "layer{i}.cross". Every sublayer but attention acts on each
             position alone, so the new positions' outputs equal those of a full causal pass.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Hashable

import numpy as np

from scratchzoo import functional as F
from scratchzoo.autograd import ShapeError, Tensor
from scratchzoo.nn import init
from scratchzoo.nn.attention import MultiheadAttention
from scratchzoo.nn.containers import ModuleList
from scratchzoo.nn.kv_cache import KVCache
from scratchzoo.nn.layers import Dropout, LayerNorm, Linear
from scratchzoo.nn.module import Module, Parameter, check_input


# ============================================================================ positions


def sinusoidal_table(max_len: int, d_model: int) -> np.ndarray:
    """(max_len, d_model): pe[pos, 2i] = sin(pos / 10000^(2i/d)), pe[pos, 2i+1] = cos(pos / 10000^(2i/d))."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]
    two_i = np.arange(0, d_model, 2, dtype=np.float64)  # 2i = 0, 2, 4, ...
    angle = pos / 10000.0 ** (two_i / d_model)  # (max_len, ceil(d/2))
    pe = np.zeros((max_len, d_model))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : d_model // 2])  # an odd d_model has one more sine than cosine column
    return pe


class _PositionTable(Module):
    """What both positional modules share: y = dropout(x + table[start : start + T]) in either layout.
    A subclass sets d_model, max_len, batch_first and dropout, and gives `_rows`: rows start..start+T-1."""

    def _rows(self, start: int, length: int, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        check_input(self, x, ndims=(2, 3), last_dim=self.d_model)  # floating; a learned table's dtype as well
        length = x.shape[-2] if self.batch_first or x.ndim == 2 else x.shape[0]
        if start < 0 or start + length > self.max_len:
            raise ShapeError(f"{self.describe()}: positions {start}..{start + length - 1} exceed "
                             f"max_len {self.max_len}")
        pe = self._rows(start, length, x)  # (T, d)
        if not self.batch_first and x.ndim == 3:
            pe = F.unsqueeze(pe, 1)  # (T, 1, d): the same positions for every sequence of the batch
        return self.dropout(F.add(x, pe))


class SinusoidalPositionalEncoding(_PositionTable):
    """y = dropout(x + pe[start : start + T]), pe a fixed table (a non-persistent buffer: rebuilt, never saved).

    x is (N, T, d_model) with batch_first (the default), (T, N, d_model) without, or (T, d_model);
    `start` is the position of x's first step (nonzero when decoding one step at a time).
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0, batch_first: bool = True):
        super().__init__()
        self.d_model, self.max_len, self.batch_first = d_model, max_len, batch_first
        # float64, so a float64 model adds the exact table; cast to the input's dtype where it is added
        self.register_buffer("pe", Tensor(sinusoidal_table(max_len, d_model)), persistent=False)
        self.dropout = Dropout(dropout)

    def _rows(self, start: int, length: int, x: Tensor) -> Tensor:
        return Tensor(self.pe.data[start:start + length].astype(x.dtype, copy=False))  # a constant: no gradient

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}, batch_first={self.batch_first}"


class LearnedPositionalEmbedding(_PositionTable):
    """y = dropout(x + weight[start : start + T]), weight (max_len, d_model) learned (BERT/GPT-2 style, init
    N(0, 0.02^2)); `start` is the position of x's first step (nonzero when decoding one step at a time)."""

    def __init__(self, max_len: int, d_model: int, dropout: float = 0.0, batch_first: bool = True,
                 std: float = 0.02):
        super().__init__()
        self.max_len, self.d_model, self.batch_first = max_len, d_model, batch_first
        self.weight = init.normal_(Parameter(np.empty((max_len, d_model), dtype=np.float32)), std=std)
        self.dropout = Dropout(dropout)

    def _rows(self, start: int, length: int, x: Tensor) -> Tensor:
        return F.index(self.weight, slice(start, start + length))  # each used row gets its positions' gradient

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}, batch_first={self.batch_first}"


# ============================================================================ layers


def _activation(layer: str, activation: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if callable(activation):
        return activation
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    raise ValueError(f"{layer}: activation must be 'relu', 'gelu' or a callable, got {activation!r}")


class _FeedForwardBlocks(Module):
    """What both layers share: the FFN block and the residual wiring (post-LN or pre-LN)."""

    def _init_ffn(self, d_model: int, dim_feedforward: int, dropout: float, activation: Any, layer_norm_eps: float,
                  norm_first: bool, bias: bool, num_norms: int) -> None:
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias)
        for i in range(1, num_norms + 1):
            setattr(self, f"norm{i}", LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
            setattr(self, f"dropout{i}", Dropout(dropout))
        self.activation_name = activation if isinstance(activation, str) else getattr(activation, "__name__", "custom")
        self.activation = _activation(type(self).__name__, activation)
        self.norm_first, self.d_model = norm_first, d_model

    def _residual(self, x: Tensor, norm: LayerNorm, block: Callable[[Tensor], Tensor]) -> Tensor:
        """post-LN: LayerNorm(x + block(x));  pre-LN: x + block(LayerNorm(x))."""
        if self.norm_first:
            return F.add(x, block(norm(x)))
        return norm(F.add(x, block(x)))

    def _ff_block(self, x: Tensor, out_dropout: Dropout) -> Tensor:
        return out_dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def extra_repr(self) -> str:
        return f"activation={self.activation_name}, norm_first={self.norm_first}"


class TransformerEncoderLayer(_FeedForwardBlocks):
    """Self-attention then a position-wise FFN, each wrapped in a residual and LayerNorm, as
    torch.nn.TransformerEncoderLayer (parameters self_attn, linear1, linear2, norm1, norm2)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable[[Tensor], Tensor] = "relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self._init_ffn(d_model, dim_feedforward, dropout, activation, layer_norm_eps, norm_first, bias, num_norms=2)

    def _sa_block(self, x: Tensor, mask: Any, padding: Any, is_causal: bool) -> Tensor:
        return self.dropout1(self.self_attn(x, x, x, key_padding_mask=padding, attn_mask=mask, need_weights=False,
                                            is_causal=is_causal, mask_names=("src_mask", "src_key_padding_mask"))[0])

    def forward(self, src: Tensor, src_mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool = False) -> Tensor:
        x = self._residual(src, self.norm1, lambda h: self._sa_block(h, src_mask, src_key_padding_mask, is_causal))
        return self._residual(x, self.norm2, lambda h: self._ff_block(h, self.dropout2))


class TransformerDecoderLayer(_FeedForwardBlocks):
    """Masked self-attention, cross-attention over the encoder's output (`memory`), then the FFN, as
    torch.nn.TransformerDecoderLayer (self_attn, multihead_attn, linear1, linear2, norm1, norm2, norm3)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable[[Tensor], Tensor] = "relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self._init_ffn(d_model, dim_feedforward, dropout, activation, layer_norm_eps, norm_first, bias, num_norms=3)

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Any = None, memory_mask: Any = None,
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False, *, cache: KVCache | None = None,
                cache_slot: Hashable = "layer0") -> Tensor:
        """With `cache`, `tgt` holds only the new positions; keys and values go to slots
        f"{cache_slot}.self" (appended) and f"{cache_slot}.cross" (memory, projected once)."""
        def self_block(h: Tensor) -> Tensor:  # queries, keys and values all from the target side
            return self.dropout1(self.self_attn(h, h, h, key_padding_mask=tgt_key_padding_mask, attn_mask=tgt_mask,
                                                need_weights=False, is_causal=tgt_is_causal, cache=cache,
                                                cache_slot=f"{cache_slot}.self",
                                                mask_names=("tgt_mask", "tgt_key_padding_mask"))[0])

        def cross_block(h: Tensor) -> Tensor:  # queries from the decoder, keys and values from the encoder
            return self.dropout2(self.multihead_attn(h, memory, memory, key_padding_mask=memory_key_padding_mask,
                                                     attn_mask=memory_mask, need_weights=False,
                                                     is_causal=memory_is_causal, cache=cache,
                                                     cache_slot=f"{cache_slot}.cross", static_kv=True,
                                                     mask_names=("memory_mask", "memory_key_padding_mask"))[0])

        x = self._residual(tgt, self.norm1, self_block)
        x = self._residual(x, self.norm2, cross_block)
        return self._residual(x, self.norm3, lambda h: self._ff_block(h, self.dropout3))


# ============================================================================ stacks


class _LayerStack(Module):
    """What both stacks share: num_layers deep copies of one layer (independent weights), then an optional norm."""

    def __init__(self, layer: Module, num_layers: int, norm: Module | None):
        super().__init__()
        self.layers = ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = norm

    def _final_norm(self, x: Tensor) -> Tensor:
        return x if self.norm is None else self.norm(x)


class TransformerEncoder(_LayerStack):
    """num_layers copies of `encoder_layer` (independent weights), then an optional final norm."""

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Module | None = None):
        super().__init__(encoder_layer, num_layers, norm)

    def forward(self, src: Tensor, mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool | None = None) -> Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return self._final_norm(x)


class TransformerDecoder(_LayerStack):
    """num_layers copies of `decoder_layer`, each attending to the same `memory`, then an optional norm."""

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Module | None = None):
        super().__init__(decoder_layer, num_layers, norm)

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Any = None, memory_mask: Any = None,
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False, *,
                cache: KVCache | None = None) -> Tensor:
        """With `cache` (incremental decoding), `tgt` holds only the positions after those cached;
        layer i keeps its keys and values in slots "layer{i}.self" and "layer{i}.cross"."""
        x = tgt
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask, tgt_key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=bool(tgt_is_causal),
                      memory_is_causal=memory_is_causal, cache=cache, cache_slot=f"layer{i}")
        return self._final_norm(x)


class Transformer(Module):
    """The encoder-decoder of the paper, as torch.nn.Transformer: encoder and decoder stacks, each ending in
    a LayerNorm (encoder.norm, decoder.norm); every weight matrix re-drawn with xavier_uniform_."""

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable[[Tensor], Tensor] = "relu", custom_encoder: Module | None = None,
                 custom_decoder: Module | None = None, layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True):
        super().__init__()
        layer_args = dict(dim_feedforward=dim_feedforward, dropout=dropout, activation=activation,
                          layer_norm_eps=layer_norm_eps, batch_first=batch_first, norm_first=norm_first, bias=bias)
        self.encoder = custom_encoder if custom_encoder is not None else TransformerEncoder(
            TransformerEncoderLayer(d_model, nhead, **layer_args), num_encoder_layers,
            LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
        self.decoder = custom_decoder if custom_decoder is not None else TransformerDecoder(
            TransformerDecoderLayer(d_model, nhead, **layer_args), num_decoder_layers,
            LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p)

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Any = None, tgt_mask: Any = None, memory_mask: Any = None,
                src_key_padding_mask: Any = None, tgt_key_padding_mask: Any = None,
                memory_key_padding_mask: Any = None, src_is_causal: bool | None = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Tensor:
        self._check_src_tgt(src, tgt)
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal,
                            memory_is_causal=memory_is_causal)

    def _check_src_tgt(self, src: Tensor, tgt: Tensor) -> None:
        """As torch: src and tgt share the batch size and are both d_model wide (checked here, since an inner
        attention layer would report a mismatch naming neither)."""
        ok = src.ndim == tgt.ndim in (2, 3) and src.shape[-1] == tgt.shape[-1] == self.d_model
        if ok and src.ndim == 3:
            n = 0 if self.batch_first else 1  # the batch axis
            ok = src.shape[n] == tgt.shape[n]
        if not ok:
            d = self.d_model
            layout = f"(N, S, {d}) and tgt (N, T, {d})" if self.batch_first else f"(S, N, {d}) and tgt (T, N, {d})"
            raise ShapeError(f"{type(self).__name__} expected src {layout} with the same N "
                             f"(batch_first={self.batch_first}), or unbatched src (S, {d}) and tgt (T, {d}); "
                             f"got src shape {src.shape} and tgt shape {tgt.shape}")

    @staticmethod
    def generate_square_subsequent_mask(sz: int, dtype: Any = np.float32) -> Tensor:
        """(sz, sz) additive causal mask: 0 on and below the diagonal, -inf above (position i sees 0..i)."""
        if isinstance(sz, bool) or not isinstance(sz, (int, np.integer)) or sz < 0:
            raise ShapeError(f"Transformer.generate_square_subsequent_mask: sz must be a non-negative int, got {sz!r}")
        return Tensor(np.triu(np.full((sz, sz), -np.inf, dtype=dtype), k=1))
