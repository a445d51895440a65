"""The seq2seq Transformer: parity with a PyTorch model built from torch.nn parts (weights copied through
state_dict; forward and backward; padding), the teacher-forcing loss, cached == uncached decoding, batched
== one-by-one decoding, beam width 1 == greedy, a tiny training run, and clear errors for bad input."""
from __future__ import annotations

import copy
import itertools
import math
import time

import numpy as np
import pytest
import torch

import scratchzoo as sz
import scratchzoo.optim  # noqa: F401  (sz.optim)
from scratchzoo import nn
from scratchzoo.models.transformer import Seq2SeqConfig, Seq2SeqTransformer

from helpers import assert_close, assert_matches_torch, randomize_

PAD, BOS, EOS = 0, 1, 2


def small_config(**overrides) -> Seq2SeqConfig:
    args = dict(src_vocab_size=11, tgt_vocab_size=13, d_model=16, nhead=2, num_encoder_layers=2,
                num_decoder_layers=2, dim_feedforward=24, dropout=0.0, max_len=12)
    return Seq2SeqConfig(**{**args, **overrides})


class TorchSeq2Seq(torch.nn.Module):
    """The same model written with torch.nn parts: Embedding * sqrt(d) + sinusoidal table, nn.Transformer
    (batch first, final LayerNorms), Linear (tied to the target embedding when asked)."""

    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.src_embed = torch.nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_embed = torch.nn.Embedding(c.tgt_vocab_size, c.d_model)
        pos = torch.arange(c.max_len, dtype=torch.float64)[:, None]
        div = torch.exp(torch.arange(0, c.d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / c.d_model))
        pe = torch.zeros(c.max_len, c.d_model, dtype=torch.float64)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)  # the PyTorch tutorial's table
        self.register_buffer("pe", pe, persistent=False)
        self.transformer = torch.nn.Transformer(c.d_model, c.nhead, c.num_encoder_layers, c.num_decoder_layers,
                                                c.dim_feedforward, dropout=c.dropout, batch_first=True,
                                                norm_first=c.norm_first)
        self.generator = torch.nn.Linear(c.d_model, c.tgt_vocab_size)
        if c.tie_embeddings:
            self.generator.weight = self.tgt_embed.weight
        self.config = c

    def forward(self, src, tgt_in):
        scale = math.sqrt(self.config.d_model)
        x = self.src_embed(src) * scale + self.pe[: src.shape[1]].to(self.generator.bias.dtype)
        y = self.tgt_embed(tgt_in) * scale + self.pe[: tgt_in.shape[1]].to(self.generator.bias.dtype)
        padding = src == self.config.pad_id
        causal = torch.nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], dtype=y.dtype)
        h = self.transformer(x, y, tgt_mask=causal, tgt_is_causal=True, src_key_padding_mask=padding,
                             memory_key_padding_mask=padding)
        return self.generator(h)



# a padded batch: source lengths 7, 4, 6; target rows [bos, y.., eos, pad..]
SRC = np.array([[3, 4, 5, 6, 7, 8, 9], [5, 3, 10, 4, 0, 0, 0], [9, 8, 7, 6, 5, 4, 0]])
TGT = np.array([[1, 5, 6, 7, 8, 2, 0], [1, 9, 2, 0, 0, 0, 0], [1, 3, 4, 10, 11, 12, 2]])


class LossOf(nn.Module):
    def __init__(self, model, label_smoothing):
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing

    def forward(self, src, tgt):
        return self.model.loss(src, tgt, label_smoothing=self.label_smoothing)


class TorchLossOf(torch.nn.Module):
    def __init__(self, model, label_smoothing):
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing

    def forward(self, src, tgt):
        logits = self.model(src, tgt[:, :-1])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1),
                                                 ignore_index=PAD, label_smoothing=self.label_smoothing)


# ============================================================================ parity with PyTorch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_first,tie", [(True, True), (False, False)])
def test_forward_and_backward_match_torch(dtype, norm_first, tie):
    config = small_config(norm_first=norm_first, tie_embeddings=tie)
    ours, theirs = Seq2SeqTransformer(config), randomize_(TorchSeq2Seq(config), scale=0.3)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    assert_matches_torch(ours, theirs, [SRC, TGT[:, :-1]], dtype=dtype)


def test_tied_projection_is_the_target_embedding():
    model = Seq2SeqTransformer(small_config())
    assert model.generator.weight is model.tgt_embed.weight
    names = [name for name, _ in model.named_parameters()]
    assert "tgt_embed.weight" in names and "generator.weight" not in names  # listed once, as torch does
    untied = Seq2SeqTransformer(small_config(tie_embeddings=False))
    assert untied.generator.weight is not untied.tgt_embed.weight


def test_embeddings_start_with_std_one_over_sqrt_d_model():
    sz.manual_seed(0)
    model = Seq2SeqTransformer(small_config(src_vocab_size=400, d_model=64))
    assert abs(model.src_embed.weight.data.std() - 64 ** -0.5) < 0.01


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_loss_is_teacher_forcing_with_label_smoothing_as_torch(label_smoothing):
    config = small_config(norm_first=False)
    model, reference = Seq2SeqTransformer(config), randomize_(TorchSeq2Seq(config), scale=0.3)
    assert_matches_torch(LossOf(model, label_smoothing), TorchLossOf(reference, label_smoothing), [SRC, TGT],
                         dtype=np.float64)
    # the same number as torch's cross_entropy on our own logits of tgt[:, :-1] against tgt[:, 1:]
    logits = torch.from_numpy(model(SRC, TGT[:, :-1]).data)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 13), torch.from_numpy(TGT[:, 1:]).reshape(-1),
                                                 ignore_index=PAD, label_smoothing=label_smoothing)
    assert_close("loss", model.loss(SRC, TGT, label_smoothing).item(), expected.item(), 1e-12, 1e-12)


# ============================================================================ a tiny task: reversal


def reversal_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """src: 3..5 symbols from 3..8, padded to 5; tgt: bos, the symbols reversed, eos, padded to 7."""
    lengths = rng.integers(3, 6, n)
    symbols = rng.integers(3, 9, (n, 5))
    keep = np.arange(5)[None, :] < lengths[:, None]
    reversed_ = np.take_along_axis(symbols, (lengths[:, None] - 1 - np.arange(5)) % 5, axis=1)
    tgt = np.concatenate([np.full((n, 1), BOS), np.where(keep, reversed_, PAD), np.full((n, 1), PAD)], axis=1)
    tgt[np.arange(n), lengths + 1] = EOS
    return np.where(keep, symbols, PAD), tgt


def answers(tgt: np.ndarray) -> list[list[int]]:
    return [row[1:list(row).index(EOS)].tolist() for row in tgt]


@pytest.fixture(scope="module")
def reverser():
    """A model trained for 200 steps to reverse short sequences, a copy of it after 40 steps (half-trained:
    unsure, so beams and greedy disagree), the losses, and the seconds it took."""
    start = time.perf_counter()
    sz.manual_seed(0)
    rng = np.random.default_rng(0)
    model = Seq2SeqTransformer(small_config(src_vocab_size=9, tgt_vocab_size=9, d_model=32, nhead=4,
                                            num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=64,
                                            max_len=7))
    optimizer = sz.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(200):
        src, tgt = reversal_batch(rng, 32)
        loss = model.loss(src, tgt, label_smoothing=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if len(losses) == 40:
            half_trained = copy.deepcopy(model)
    return model, half_trained, losses, time.perf_counter() - start


def test_tiny_training_run_learns_to_reverse_sequences(reverser):
    model, _, losses, seconds = reverser
    src, tgt = reversal_batch(np.random.default_rng(1), 64)
    accuracy = np.mean([out == answer for out, answer in zip(model.greedy_decode(src), answers(tgt))])
    assert np.mean(losses[-20:]) < 0.3 * np.mean(losses[:20])
    assert accuracy > 0.6, f"only {accuracy:.0%} of the reversals are right"
    assert seconds < 30


# ============================================================================ decoding


@pytest.fixture
def decoder_model(reverser):
    """The half-trained reverser in float64, with dropout switched on: decoding must turn it off (eval mode),
    or cached and uncached runs would differ."""
    model = copy.deepcopy(reverser[1]).double()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.3
        if isinstance(module, nn.MultiheadAttention):
            module.dropout = 0.3
    return model


# sources of different lengths (3 to 5 symbols, padded)
SRC_DECODE, TGT_DECODE = reversal_batch(np.random.default_rng(2), 8)


@pytest.mark.parametrize("norm_first,bounds,aligned", [(True, range(8), False), (False, range(8), False),
                                                       (True, [0, 3, 4, 7], False), (True, range(8), True)])
def test_cached_step_logits_equal_the_full_forward(norm_first, bounds, aligned):
    """Feed TGT through the cache in pieces tgt[:, a:b] (one token at a time, or a 3-token prefix then more):
    the causal mask of each piece is offset by the positions already cached (and, with aligned_memory, each
    piece reads the memory rows of its own positions)."""
    sz.manual_seed(0)
    model = Seq2SeqTransformer(small_config(norm_first=norm_first, aligned_memory=aligned)).double().eval()
    full = model(SRC, TGT).data
    memory, padding = model.encode(SRC)
    cache = nn.KVCache()
    steps = [model.decode(TGT[:, a:b], memory, padding, cache, start=a).data for a, b in zip(bounds, bounds[1:])]
    assert cache.length("layer1.self") == 7 and cache.length("layer1.cross") == SRC.shape[1]
    assert_close("cached logits", np.concatenate(steps, axis=1), full, 1e-10, 1e-10)


def test_aligned_memory_adds_source_token_t_encoding_to_decoder_input_t(monkeypatch):
    """With aligned_memory, decoder position t reads E[y_t-1] sqrt(d) + pe[t] + memory[t]: memory[t] where
    source token t exists, zero at its padding and past its end (TGT is one longer than SRC)."""
    sz.manual_seed(0)
    plain = Seq2SeqTransformer(small_config()).double()
    aligned = Seq2SeqTransformer(small_config(aligned_memory=True)).double()
    aligned.load_state_dict(plain.state_dict())  # the option adds no parameter
    inputs = {}
    for name, model in (("plain", plain), ("aligned", aligned)):
        def capture(y, *args, name=name, decoder=model.transformer.decoder.forward, **kwargs):
            inputs[name] = y.data
            return decoder(y, *args, **kwargs)
        monkeypatch.setattr(model.transformer.decoder, "forward", capture)
        model(SRC, TGT)
    memory, padding = plain.encode(SRC)
    expected = np.zeros_like(inputs["plain"])
    expected[:, :SRC.shape[1]] = memory.data * ~padding[..., None]
    assert_close("decoder input", inputs["aligned"] - inputs["plain"], expected, 1e-12, 1e-12)


def test_cached_decoding_equals_uncached(decoder_model):
    greedy = decoder_model.greedy_decode(SRC_DECODE, use_cache=True)
    assert greedy == decoder_model.greedy_decode(SRC_DECODE, use_cache=False)
    assert len({len(row) for row in greedy}) > 1  # rows really stop at different steps
    for width in (2, 4):
        beams = decoder_model.beam_search(SRC_DECODE, width, use_cache=True)
        assert beams == decoder_model.beam_search(SRC_DECODE, width, use_cache=False)
        assert beams != greedy  # beams were reordered: the cache had to follow them
    assert decoder_model.training  # the caller's mode is back


def test_beam_width_one_is_greedy(decoder_model):
    greedy = decoder_model.greedy_decode(SRC_DECODE)
    assert decoder_model.beam_search(SRC_DECODE, beam_width=1) == greedy
    assert decoder_model.beam_search(SRC_DECODE, beam_width=1, length_penalty=0.0) == greedy


def test_batched_decoding_equals_decoding_each_input_alone(decoder_model):
    alone = [SRC_DECODE[i:i + 1, : int((SRC_DECODE[i] != PAD).sum())] for i in range(len(SRC_DECODE))]  # no pads
    assert decoder_model.greedy_decode(SRC_DECODE) == [decoder_model.greedy_decode(src)[0] for src in alone]
    assert decoder_model.beam_search(SRC_DECODE, 3) == [decoder_model.beam_search(src, 3)[0] for src in alone]


def test_decoding_outputs_hold_no_special_tokens_and_respect_max_len(decoder_model):
    decoder_model.generator.bias.data[EOS] = -100.0  # never stop: every row runs to max_len
    for out in (decoder_model.greedy_decode(SRC_DECODE, max_len=5),
                decoder_model.beam_search(SRC_DECODE, beam_width=2, max_len=5)):
        assert all(len(row) == 4 for row in out)  # 5 tokens = bos + 4, no eos
        assert not {PAD, BOS, EOS} & {t for row in out for t in row}


def log_prob(model, src, ys):
    """log p(y_1 .. y_m, eos | src) under teacher forcing (bos and pad are never emitted)."""
    tgt = np.array([[BOS] + ys + [EOS]])
    with sz.no_grad():
        logits = model(src, tgt[:, :-1]).data
    logits[..., [PAD, BOS]] = -np.inf
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    return logp[0, np.arange(len(ys) + 1), tgt[0, 1:]].sum()


def test_output_lengths_fix_how_many_tokens_each_row_emits(decoder_model):
    """A known output length (one syllable per character) is enforced exactly; greedy output that already has
    that length is unchanged, and beam width 1 applies the constraint as greedy does."""
    greedy = decoder_model.greedy_decode(SRC_DECODE)
    natural = np.array([len(row) for row in greedy])
    assert decoder_model.greedy_decode(SRC_DECODE, output_lengths=natural) == greedy
    shifted = np.maximum(natural - 1, 0)
    assert decoder_model.beam_search(SRC_DECODE, 1, output_lengths=shifted) == decoder_model.greedy_decode(
        SRC_DECODE, output_lengths=shifted)
    for wanted in (np.minimum(natural + 1, 5), np.maximum(natural - 2, 0), np.arange(len(natural)) % 4):
        for out in (decoder_model.greedy_decode(SRC_DECODE, output_lengths=wanted),
                    decoder_model.beam_search(SRC_DECODE, 3, output_lengths=wanted)):
            assert [len(row) for row in out] == wanted.tolist()
            assert not {PAD, BOS, EOS} & {t for row in out for t in row}


def test_output_lengths_are_checked(decoder_model):
    with pytest.raises(sz.ShapeError, match=r"output_lengths must be 8 integers \(one per source row\), got shape"):
        decoder_model.greedy_decode(SRC_DECODE, output_lengths=[3, 4])
    with pytest.raises(sz.DTypeError, match="output_lengths must be integers .token counts., got float64"):
        decoder_model.greedy_decode(SRC_DECODE, output_lengths=np.full(8, 2.0))
    with pytest.raises(ValueError, match=r"output_lengths must lie in \[0, 3\]"):
        decoder_model.beam_search(SRC_DECODE, 2, max_len=5, output_lengths=np.full(8, 4))


def test_beam_search_finds_outputs_at_least_as_likely_as_greedy(decoder_model):
    model = decoder_model.eval()
    greedy = model.greedy_decode(SRC_DECODE)
    beams = model.beam_search(SRC_DECODE, beam_width=4, length_penalty=0.0)  # pure log-probability
    assert greedy != beams  # the search found something greedy missed
    for i, (g, b) in enumerate(zip(greedy, beams)):
        src = SRC_DECODE[i:i + 1]
        assert log_prob(model, src, b) >= log_prob(model, src, g) - 1e-9


def test_length_penalty_ranks_outputs_by_log_p_over_lp_as_an_exhaustive_search_does():
    """With a beam as wide as the output space, beam search returns the argmax over every output of
    log p(y) / lp(y), lp(y) = ((5 + |y|) / 6)^alpha (|y| counts eos; an output cut at max_len has none); a
    larger alpha divides long outputs' (more negative) log-probabilities more, so it favours them."""
    sz.manual_seed(0)
    model = Seq2SeqTransformer(small_config(src_vocab_size=6, tgt_vocab_size=6, num_encoder_layers=1,
                                            num_decoder_layers=1, dim_feedforward=16, max_len=8)).double().eval()
    src, steps = np.array([[3, 4, 5]]), 4  # max_len 5: up to 4 tokens after bos

    def best(alpha: float) -> list[int]:
        scored = []
        for n in range(steps + 1):
            for body in itertools.product((3, 4, 5), repeat=n):
                ys = [BOS, *body] + ([EOS] if n < steps else [])
                with sz.no_grad():
                    logits = model(src, np.array([ys[:-1]])).data[0]
                logits[:, [PAD, BOS]] = -np.inf  # never emitted, as in decoding
                logp = logits - logits.max(-1, keepdims=True)
                logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
                scored.append((logp[np.arange(len(ys) - 1), ys[1:]].sum() / ((5 + len(ys) - 1) / 6) ** alpha,
                               list(body)))
        return max(scored)[1]

    answers = {}
    for alpha in (0.0, 1.0, 3.0):
        answers[alpha] = model.beam_search(src, beam_width=3 ** steps, max_len=steps + 1, length_penalty=alpha)[0]
        assert answers[alpha] == best(alpha), alpha
    assert len(answers[3.0]) > len(answers[0.0])  # the penalty changed the answer towards a longer one


def test_attention_maps_shapes_and_causality():
    sz.manual_seed(0)
    model = Seq2SeqTransformer(small_config())
    maps = model.attention_maps(SRC[1:2, :4], TGT[1:2, :3])
    assert maps["encoder_self"].shape == (2, 2, 4, 4)
    assert maps["decoder_self"].shape == (2, 2, 3, 3)
    assert maps["cross"].shape == (2, 2, 3, 4)
    assert np.all(maps["decoder_self"][..., np.triu(np.ones((3, 3), dtype=bool), k=1)] == 0)
    for weights in maps.values():
        np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    assert model.training and "forward" not in vars(model.transformer.decoder.layers[0].self_attn)


# ============================================================================ errors


def test_bad_inputs_raise_clear_errors():
    model = Seq2SeqTransformer(small_config())
    with pytest.raises(sz.DTypeError, match=r"Seq2SeqTransformer: src must hold integer ids, got dtype float64"):
        model(SRC.astype(np.float64), TGT)
    with pytest.raises(sz.ShapeError, match=r"Seq2SeqTransformer: src must have shape \(N, L\).*got \(7,\)"):
        model.greedy_decode(SRC[0])
    with pytest.raises(sz.ShapeError, match="tgt_in has length 13, longer than max_len 12"):
        model(SRC, np.ones((3, 13), dtype=np.int64))
    with pytest.raises(IndexError, match=r"Seq2SeqTransformer: src ids must lie in \[0, 11\), got min 11 max 11"):
        model(np.full((1, 3), 11), TGT[:1])
    with pytest.raises(sz.ShapeError, match="tgt_in has 2 rows but memory has 3"):
        model(SRC, TGT[:2])
    with pytest.raises(sz.ShapeError, match="at least bos and eos"):
        model.loss(SRC, TGT[:, :1])
    with pytest.raises(ValueError, match=r"max_len must lie in \[2, 12\].*got 13"):
        model.greedy_decode(SRC, max_len=13)
    with pytest.raises(ValueError, match="beam_width must be >= 1, got 0"):
        model.beam_search(SRC, beam_width=0)
    with pytest.raises(sz.ShapeError, match=r"one example.*got \(3, 7\)"):
        model.attention_maps(SRC, TGT)
    with pytest.raises(ValueError, match="pad_id, bos_id and eos_id must be distinct"):
        Seq2SeqTransformer(small_config(eos_id=0))
