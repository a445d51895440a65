"""The MoE layer (models/moe.py) against a dense PyTorch reference written here: every expert runs on every
token and the results are combined with the same top-k weights (zero for experts not chosen, or chosen but
over capacity). Forward, input gradients and every parameter gradient; float32 and float64; with and
without capacity drops and shared experts. Then finite differences in float64 (noise off)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close, assert_matches_torch, gradcheck, rand

import scratchzoo as sz
from scratchzoo.models.moe import MoE, MoEConfig


class TorchFFN(torch.nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.up = torch.nn.Linear(d_model, hidden)
        self.down = torch.nn.Linear(hidden, d_model)

    def forward(self, x):
        return self.down(torch.nn.functional.gelu(self.up(x)))


def reference_keep(index: np.ndarray, num_experts: int, capacity: int | None) -> np.ndarray:
    """(N, E) 1/0: is the assignment of token n to expert e kept? Plain loops over the rule: first choices
    of all tokens (in token order) before second choices; an expert takes at most `capacity`."""
    tokens, k = index.shape
    keep, used = np.zeros((tokens, num_experts)), [0] * num_experts
    for slot in range(k):
        for n in range(tokens):
            e = index[n, slot]
            if capacity is None or used[e] < capacity:
                keep[n, e], used[e] = 1.0, used[e] + 1
    return keep


class TorchDenseMoE(torch.nn.Module):
    """The same layer written densely: E expert outputs for every token, weighted by an (N, E) matrix."""

    def __init__(self, c: MoEConfig):
        super().__init__()
        self.c = c
        self.router = torch.nn.Module()
        self.router.gate = torch.nn.Linear(c.d_model, c.num_experts, bias=False)
        self.experts = torch.nn.ModuleList(TorchFFN(c.d_model, c.hidden) for _ in range(c.num_experts))
        self.shared_experts = torch.nn.ModuleList(TorchFFN(c.d_model, c.shared_hidden or c.hidden)
                                                  for _ in range(c.num_shared_experts))

    def forward(self, x):
        c = self.c
        tokens = x.reshape(-1, c.d_model)
        values, index = self.router.gate(tokens).topk(c.top_k, dim=-1)
        weights = torch.zeros(tokens.shape[0], c.num_experts, dtype=x.dtype).scatter(1, index, values.softmax(-1))
        capacity = None if c.capacity_factor is None else int(np.ceil(c.capacity_factor * tokens.shape[0] * c.top_k
                                                                      / c.num_experts))
        weights = weights * torch.from_numpy(reference_keep(index.numpy(), c.num_experts, capacity)).to(x.dtype)
        dense = torch.stack([expert(tokens) for expert in self.experts], dim=1)  # (N, E, d)
        out = (weights.unsqueeze(-1) * dense).sum(dim=1)
        for expert in self.shared_experts:
            out = out + expert(tokens)
        return out.reshape(x.shape)


CASES = {
    "plain": dict(),
    "capacity": dict(capacity_factor=0.6),
    "shared": dict(num_shared_experts=2, shared_hidden=12),
    "capacity+shared": dict(capacity_factor=0.5, num_shared_experts=1),
    "top1": dict(top_k=1, capacity_factor=1.0),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_moe_matches_dense_torch_reference(case, dtype):
    config = MoEConfig(**{"d_model": 8, "hidden": 16, "num_experts": 4, "top_k": 2, **CASES[case]})
    sz.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = MoE(config), TorchDenseMoE(config)
    assert_matches_torch(ours, theirs, [rand(3, 7, 8)], dtype=dtype)
    if config.capacity_factor is None:
        assert ours.last_dropped == 0
    elif config.capacity_factor < 1:
        assert ours.last_dropped > 0  # the case really drops assignments


def test_aux_loss_and_its_gradient_match_torch():
    """L = E sum_i f_i P_i and dL/dW_g (through P only: the counts f are constants) for router and input."""
    config = MoEConfig(d_model=6, hidden=8, num_experts=5, top_k=2)
    layer = MoE(config).double()
    x = rand(11, 6)
    ours_x = sz.Tensor(x, requires_grad=True)
    layer(ours_x)
    layer.aux_loss.backward()
    theirs_x = torch.from_numpy(x).requires_grad_()
    gate = torch.from_numpy(layer.router.gate.weight.data.copy()).requires_grad_()
    scores = theirs_x @ gate.T
    chosen = scores.topk(2, dim=-1).indices
    f = torch.bincount(chosen.reshape(-1), minlength=5).double() / chosen.numel()
    expected = 5 * (f * scores.softmax(-1).mean(0)).sum()
    expected.backward()
    assert_close("aux_loss", layer.aux_loss.data, expected.detach().numpy(), 1e-12, 1e-12)
    assert_close("last_load", layer.last_load, f.numpy(), 0, 0)
    assert_close("aux_loss gradient of W_g", layer.router.gate.weight.grad, gate.grad.numpy(), 1e-9, 1e-12)
    assert_close("aux_loss gradient of x", ours_x.grad, theirs_x.grad.numpy(), 1e-9, 1e-12)


@pytest.mark.parametrize("case", ["plain", "capacity+shared", "shared down-projection"])
def test_moe_gradcheck_float64(case):
    """Finite differences for the input and for every parameter (noise off; routing is piecewise constant,
    and with random inputs no score lies within eps of a tie)."""
    options = {**CASES, "shared down-projection": dict(capacity_factor=0.5, share_down_projection=True)}[case]
    config = MoEConfig(d_model=4, hidden=6, num_experts=3, top_k=2, **options)
    sz.manual_seed(1)
    layer = MoE(config).double()
    gradcheck(layer, [rand(2, 5, 4)])

    x = sz.Tensor(rand(2, 5, 4))
    weights = rand(2, 5, 4, seed=7)
    for _, p in layer.named_parameters():
        p.grad = None
    (layer(x) * sz.Tensor(weights)).sum().backward()
    eps = 1e-6
    for name, p in layer.named_parameters():
        numeric = np.zeros(p.shape)
        flat = p.data.reshape(-1)
        for j in range(flat.size):
            original = flat[j]
            values = []
            for shifted in (original + eps, original - eps):
                flat[j] = shifted
                with sz.no_grad():
                    values.append(float(np.sum(layer(x).data * weights)))
            flat[j] = original
            numeric.flat[j] = (values[0] - values[1]) / (2 * eps)
        analytic = np.zeros(p.shape) if p.grad is None else p.grad
        assert_close(f"gradcheck: parameter {name}", analytic, numeric, 1e-5, 1e-6)


def test_moe_rejects_bad_options_naming_the_layer():
    with pytest.raises(ValueError, match=r"MoE: top_k must lie in \[1, num_experts=4\], got top_k=5"):
        MoE(MoEConfig(num_experts=4, top_k=5))
    with pytest.raises(ValueError, match="MoE: capacity_factor"):
        MoE(MoEConfig(capacity_factor=0.0))
    with pytest.raises(ValueError, match=r"MoE: eval_capacity_factor must be > 0 \(or None for no limit\), got -1"):
        MoE(MoEConfig(eval_capacity_factor=-1))
    with pytest.raises(ValueError, match="last dim 8"):
        MoE(MoEConfig(d_model=8, hidden=4))(sz.zeros(2, 3))


def test_state_dict_names():
    layer = MoE(MoEConfig(d_model=4, hidden=6, num_experts=2, top_k=1, noisy_gating=True, num_shared_experts=1))
    assert sorted(layer.state_dict()) == sorted(
        ["router.gate.weight", "router.noise.weight"]
        + [f"{group}.{i}.{lin}.{p}" for group, n in (("experts", 2), ("shared_experts", 1)) for i in range(n)
           for lin in ("up", "down") for p in ("weight", "bias")])
    assert np.all(layer.router.noise.weight.data == 0)
