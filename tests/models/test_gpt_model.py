"""models/gpt.py against a nanoGPT-style PyTorch reference (weights copied): the block and the whole model,
forward and backward, float32 and float64; the key/value cache; sampling; the feed-forward hook."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as TF

import scratchzoo as sz
from helpers import assert_matches_torch
from torch_nanogpt import TorchBlock, TorchGPT
from scratchzoo.models.gpt import GPT, MLP, Block, GPTConfig
from scratchzoo.models.moe import MoE, MoEConfig
from scratchzoo.nn import KVCache, Linear, Module
from scratchzoo import functional as F
from scratchzoo.functional.elementwise import normal_cdf_and_kernel_float32

SMALL = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, bias=True)


def ids(*shape: int, vocab: int = SMALL.vocab_size, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=shape)


# ============================================================================ parity


def parity_pair(torch_class: type, bias: bool) -> tuple[GPTConfig, torch.nn.Module]:
    """A tiny config and the torch reference built from it, seeded, every parameter ~ N(0, 0.3): LayerNorm
    starts at (1, 0), so moving it makes its gradients tested for real."""
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, bias=bias)
    sz.manual_seed(0)
    torch.manual_seed(0)
    theirs = torch_class(config)
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_(0.0, 0.3)
    return config, theirs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_block_matches_nanogpt(dtype, bias):
    config, theirs = parity_pair(TorchBlock, bias)
    assert_matches_torch(Block(config, MLP(config)), theirs, [np.random.default_rng(1).standard_normal((3, 7, 8))],
                         dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_gpt_matches_nanogpt(dtype, bias):
    config, theirs = parity_pair(TorchGPT, bias)
    # (3, 8): the whole block; the tied weight's gradient is the sum of its two uses on both sides
    assert_matches_torch(GPT(config), theirs, [ids(3, 8)], dtype=dtype)


def test_state_dict_has_nanogpt_names_and_the_head_is_tied():
    model = GPT(SMALL)
    assert list(model.state_dict()) == list(TorchGPT(SMALL).state_dict())
    assert model.lm_head.weight is model.transformer.wte.weight
    names = [name for name, _ in model.named_parameters()]
    assert "lm_head.weight" not in names and names[0] == "transformer.wte.weight"  # listed once, as in torch
    assert "transformer.h.1.attn.c_attn.weight" in names and "transformer.h.1.mlp.c_fc.bias" in names


def test_gpt2_initialisation():
    sz.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=True)
    params = dict(GPT(config).named_parameters())
    assert abs(params["transformer.wte.weight"].data.std() - 0.02) < 1e-3
    assert abs(params["transformer.h.0.mlp.c_fc.weight"].data.std() - 0.02) < 1e-3
    residual = 0.02 / math.sqrt(2 * config.n_layer)
    assert abs(params["transformer.h.3.attn.c_proj.weight"].data.std() - residual) < 1e-3 * residual / 0.02 * 2
    assert abs(params["transformer.h.3.mlp.c_proj.weight"].data.std() - residual) < 1e-3
    assert np.all(params["transformer.h.0.attn.c_attn.bias"].data == 0)
    assert np.all(params["transformer.ln_f.weight"].data == 1)
    assert GPT(GPTConfig(bias=False)).num_parameters() == 795_904  # nanoGPT prints 0.80M for this config


def test_bad_input_is_a_clear_error():
    model = GPT(SMALL)
    with pytest.raises(ValueError, match=r"GPT: cannot read 9 tokens.*block size.*8"):
        model(sz.Tensor(ids(1, 9)))
    cache = KVCache()
    model(sz.Tensor(ids(1, 6)), cache)
    with pytest.raises(ValueError, match=r"6 cached \+ 3 new"):
        model(sz.Tensor(ids(1, 3)), cache)
    with pytest.raises(TypeError, match="GPT: idx must hold integer ids"):
        model(sz.Tensor(np.zeros((1, 3))))
    with pytest.raises(ValueError, match=r"GPT: idx must have shape \(N, L\) with L >= 1, got \(3,\)"):
        model(sz.Tensor(ids(3)))
    with pytest.raises(IndexError, match=rf"GPT: idx ids must lie in \[0, {SMALL.vocab_size}\)"):
        model(np.array([[SMALL.vocab_size]]))
    with pytest.raises(IndexError, match=r"GPT.generate: the prompt ids must lie in"):
        model.generate(np.array([[-1]]), 2)
    assert model(ids(1, 3)).shape == (1, 3, SMALL.vocab_size)  # plain arrays are ids too
    with pytest.raises(ValueError, match="multiple of n_head"):
        GPTConfig(n_embd=10, n_head=4)


# ============================================================================ the key/value cache


def moe_feed_forward(config: GPTConfig, layer: int) -> MoE:
    """A MoE layer whose training capacity would drop tokens (eval mode sets no limit by default)."""
    return MoE(MoEConfig(d_model=config.n_embd, hidden=16, num_experts=4, top_k=2, capacity_factor=0.5))


@pytest.mark.parametrize("feed_forward", [None, moe_feed_forward], ids=["mlp", "moe-with-capacity"])
@pytest.mark.parametrize("prefill", [1, 5])
def test_cached_logits_equal_the_full_forward(prefill, feed_forward):
    sz.manual_seed(0)
    model = GPT(SMALL, feed_forward=feed_forward).double().eval()
    tokens = ids(2, SMALL.block_size)
    full = model(sz.Tensor(tokens)).data
    cache = KVCache()
    pieces = [model(sz.Tensor(tokens[:, :prefill]), cache).data]
    for t in range(prefill, SMALL.block_size):
        pieces.append(model(sz.Tensor(tokens[:, t:t + 1]), cache).data)  # one position per step
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=1e-12, atol=1e-12)
    assert cache.length("h.0") == cache.length("h.1") == SMALL.block_size


def test_cached_and_uncached_generation_agree_within_the_block():
    sz.manual_seed(0)
    model = GPT(SMALL)
    prompt = ids(3, 2)
    with_cache = model.generate(prompt, 6, temperature=0)
    without = model.generate(prompt, 6, temperature=0, use_cache=False)
    np.testing.assert_array_equal(with_cache, without)
    assert with_cache.shape == (3, 8) and np.array_equal(with_cache[:, :2], prompt)
    sz.manual_seed(5)
    a = model.generate(prompt, 6, temperature=1.0, top_k=4)
    sz.manual_seed(5)
    b = model.generate(prompt, 6, temperature=1.0, top_k=4, use_cache=False)
    np.testing.assert_array_equal(a, b)  # the same draws from the same probabilities


def test_generation_past_the_block_slides_the_cached_window_by_half_a_block():
    """Past block_size the cached decoder rebuilds its cache from the last block_size // 2 tokens; each
    step's logits are then those of the full model on the window it documents."""
    sz.manual_seed(0)
    model = GPT(SMALL).double()
    out = model.generate(ids(1, 3), 15, temperature=0)
    assert out.shape == (1, 18)
    block, half = SMALL.block_size, SMALL.block_size // 2
    for n in range(3, 18):  # out[:, n] was predicted from out[:, :n]; the window the cache held then:
        # rebuilt at n = block + 1 from the last `half` tokens, it grows one token a step back to `block`
        start = 0 if n <= block else n - half - (n - block - 1) % (block - half + 1)
        window = out[:, start:n]
        assert window.shape[1] <= block and (n <= block or window.shape[1] >= half)
        expected = model.eval()(sz.Tensor(window)).data[:, -1].argmax(-1)
        assert out[0, n] == expected[0], f"token {n} from a window of {window.shape[1]}"
    uncached = model.generate(ids(1, 3), 15, temperature=0, use_cache=False)
    np.testing.assert_array_equal(uncached[:, :block + 1], out[:, :block + 1])


def test_stream_yields_one_token_per_row_per_step_without_recording_a_graph(monkeypatch):
    model = GPT(SMALL)
    recorded, positions = [], []
    real = GPT.forward

    def forward(self, *args, **kwargs):
        logits = real(self, *args, **kwargs)
        recorded.append(logits.requires_grad)
        positions.append(logits.shape[1])
        return logits

    monkeypatch.setattr(GPT, "forward", forward)
    steps = []
    for token in model.stream(ids(2, 3), 4, temperature=0.7):
        steps.append(token)
        assert sz.is_grad_enabled()  # the caller's code between tokens runs with gradients as usual
    assert len(steps) == 4 and all(s.shape == (2,) and s.dtype == np.int64 for s in steps)
    assert recorded == [False] * 4  # no graph while sampling
    assert positions == [3, 1, 1, 1]  # the cache: the prompt once, then one position per new token
    assert model.training  # generation leaves the mode as it found it


# ============================================================================ the feed-forward hook


class Doubler(Module):
    """A stand-in for a Mixture-of-Experts layer: any (B, T, C) -> (B, T, C) module."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.proj = Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        return self.proj(x) * 2.0


def test_feed_forward_factory_replaces_the_mlp():
    seen = []

    def factory(config: GPTConfig, layer: int) -> Module:
        seen.append(layer)
        return Doubler(config, layer) if layer == 1 else MLP(config)

    model = GPT(SMALL, feed_forward=factory)
    assert seen == [0, 1]
    assert isinstance(model.transformer.h[0].mlp, MLP) and model.transformer.h[1].mlp.layer == 1
    assert "transformer.h.1.mlp.proj.weight" in model.state_dict()
    assert abs(model.transformer.h[1].mlp.proj.weight.data.std() - 0.02) < 0.01  # GPT init reaches it too
    logits = model(sz.Tensor(ids(2, 5)))
    logits.sum().backward()
    assert logits.shape == (2, 5, SMALL.vocab_size) and model.transformer.h[1].mlp.proj.weight.grad is not None


def test_float32_gelu_fast_path_matches_torch_and_the_true_cdf():
    """The GPT's exact GELU runs, in float32, on functional/elementwise.py's normal_cdf_and_kernel_float32
    (A&S 7.1.26 with one shared exp, cache-blocked): Phi within 3e-7 of the true value, GELU's forward and
    backward within float32 tolerance of torch's, including the block boundaries and odd shapes."""
    x = np.linspace(-12, 12, 100003)
    cdf, kernel = normal_cdf_and_kernel_float32(x.astype(np.float32))
    exact = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float32).astype(np.float64)])
    assert cdf.dtype == kernel.dtype == np.float32 and np.max(np.abs(cdf - exact)) < 3e-7
    np.testing.assert_allclose(kernel, np.exp(-0.5 * x.astype(np.float32).astype(np.float64) ** 2), rtol=1e-5,
                               atol=1e-30)
    for shape in [(3, 40000), (7, 5), ()]:
        assert_matches_torch(F.gelu, TF.gelu, [np.random.default_rng(2).standard_normal(shape) * 3],
                             dtype=np.float32)
