"""What docs/en/moe.md claims about Mixture-of-Experts, each as a test."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import rand

import scratchzoo as sz
import scratchzoo.models.moe as moe_module
from scratchzoo.models.moe import MoE, MoEConfig, load_balancing_loss
from scratchzoo.optim import SGD


def layer(**options) -> MoE:
    sz.manual_seed(0)
    return MoE(MoEConfig(**{"d_model": 6, "hidden": 10, "num_experts": 5, "top_k": 2, **options})).double()


def test_top_k_gating_uses_exactly_k_experts_per_token():
    moe = layer()
    x = rand(9, 6)
    y = moe(sz.Tensor(x)).data
    index = moe.last_expert_index
    assert index.shape == (9, 2) and all(len(set(row)) == 2 for row in index)
    for n in range(9):  # y_n is the gated sum of exactly those k experts' outputs on x_n
        token = sz.Tensor(x[n:n + 1])
        expected = sum(g * moe.experts[int(e)](token).data[0] for e, g in zip(index[n], moe.last_gates[n]))
        assert np.allclose(y[n], expected, atol=1e-12)


def test_gate_weights_of_a_token_sum_to_one_and_renormalise_the_router_probabilities():
    moe = layer(top_k=3)
    x = rand(7, 6)
    moe(sz.Tensor(x))
    gates, index = moe.last_gates, moe.last_expert_index
    assert np.allclose(gates.sum(axis=1), 1.0) and np.all(gates > 0)
    scores = x @ moe.router.gate.weight.data.T
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    chosen = np.take_along_axis(probs, index, axis=1)
    assert np.allclose(gates, chosen / chosen.sum(axis=1, keepdims=True))  # softmax over the k = renormalised
    assert np.all(np.diff(gates, axis=1) <= 0)  # best first


def balance_loss(shares: list[float], tokens: int = 400) -> float:
    """The loss for a confident router (P_i = f_i) that sends `shares[i]` of the tokens to expert i."""
    counts = np.round(np.array(shares) * tokens).astype(int)
    index = np.repeat(np.arange(len(shares)), counts)[:, None]  # top-1 choices
    probs = np.eye(len(shares))[index[:, 0]] * 0.999 + 0.001 / len(shares)
    return load_balancing_loss(sz.Tensor(probs), index, len(shares)).item()


def test_balancing_loss_is_one_for_uniform_routing_and_grows_with_imbalance():
    assert balance_loss([0.25] * 4) == pytest.approx(1.0)
    losses = [balance_loss(shares) for shares in ([0.25] * 4, [0.4, 0.2, 0.2, 0.2], [0.7, 0.1, 0.1, 0.1], [1, 0, 0, 0])]
    assert np.all(np.diff(losses) > 0), losses
    assert losses[-1] == pytest.approx(4.0, rel=1e-2)  # everything on one expert: L -> E
    # uniform load with uniform probabilities through the layer: a zero router scores every expert equally
    moe = layer(top_k=1, num_experts=4)
    moe.router.gate.weight.data[:] = 0
    moe(sz.Tensor(rand(8, 6)))
    assert moe.aux_loss.item() == pytest.approx(1.0)


def test_tokens_over_capacity_pass_through_the_residual_unchanged():
    moe = layer(top_k=1, num_experts=4, capacity_factor=1.0)  # capacity = ceil(1.0 * 8 * 1 / 4) = 2
    moe.router.gate.weight.data[:] = 0
    moe.router.gate.weight.data[0] = 1.0  # every (positive) token prefers expert 0
    x = sz.Tensor(np.abs(rand(8, 6)), requires_grad=True)
    y = moe(x)
    assert moe.capacity(8) == 2 and moe.last_dropped == pytest.approx(6 / 8)
    assert np.all(y.data[2:] == 0) and np.all(np.abs(y.data[:2]).sum(axis=1) > 0)  # first come, first served
    block = x + y  # the residual connection around the layer
    assert np.array_equal(block.data[2:], x.data[2:])
    block.sum().backward()
    assert np.array_equal(x.grad[2:], np.ones((6, 6)))  # their gradient flows through the residual only


def test_capacity_limits_training_and_eval_has_its_own_factor():
    """In eval mode the default sets no limit, so a token's output is its own (with a limit it would depend
    on the other tokens of the call); eval_capacity_factor sets one."""
    for eval_factor, dropped in ((None, 0.0), (1.0, 6 / 8)):
        moe = layer(top_k=1, num_experts=4, capacity_factor=1.0, eval_capacity_factor=eval_factor)
        moe.router.gate.weight.data[:] = 0
        moe.router.gate.weight.data[0] = 1.0  # every (positive) token prefers expert 0
        x = sz.Tensor(np.abs(rand(8, 6)))
        moe(x)
        assert moe.last_dropped == pytest.approx(6 / 8)  # training: capacity 2 of 8
        moe.eval()
        y = moe(x).data
        assert moe.last_dropped == pytest.approx(dropped)
        if eval_factor is None:  # every token's output equals that of the token alone
            assert np.allclose(y, np.concatenate([moe(x[i:i + 1]).data for i in range(8)]), atol=1e-12)


def test_shared_experts_serve_every_token():
    moe = layer(top_k=1, num_experts=4, capacity_factor=1.0, num_shared_experts=1)
    moe.router.gate.weight.data[:] = 0
    moe.router.gate.weight.data[0] = 1.0
    x = sz.Tensor(np.abs(rand(8, 6)))
    y = moe(x)
    assert np.allclose(y.data[2:], moe.shared_experts[0](x).data[2:])  # dropped by routing, still served


def test_noise_only_in_training_mode():
    noisy = layer(noisy_gating=True)
    x = sz.Tensor(rand(10, 6))
    noisy.train()
    assert not np.allclose(noisy(x).data, noisy(x).data)  # a fresh N(0,1) draw each forward
    noisy.eval()
    first = noisy(x).data
    assert np.array_equal(first, noisy(x).data)
    clean = layer()
    clean.load_state_dict({k: v for k, v in noisy.state_dict().items() if "noise" not in k})
    assert np.array_equal(first, clean(x).data)  # eval: H(x) = x W_g, the noise branch is off


def test_the_noise_scale_is_learned():
    """softplus(x W_noise) scales the noise, and W_noise gets a gradient from the task loss in training."""
    noisy = layer(noisy_gating=True).train()
    noisy(sz.Tensor(rand(10, 6))).sum().backward()
    assert noisy.router.noise.weight.grad is not None and np.abs(noisy.router.noise.weight.grad).sum() > 0


def test_the_balancing_loss_alone_evens_out_a_skewed_router():
    """Gradient descent on E sum_i f_i P_i takes router probability from the busiest experts: a router
    that sends most tokens to one expert spreads them out."""
    moe = layer(top_k=1, num_experts=4)
    moe.router.gate.weight.data[:] = 0
    moe.router.gate.weight.data[0] = 0.5  # expert 0 favoured for positive inputs
    x = sz.Tensor(np.abs(rand(200, 6)) + rand(200, 6, seed=3))
    optimizer = SGD(moe.router.parameters(), lr=1.0)
    moe(x)
    before = moe.last_load.max() * 4
    for _ in range(50):
        moe(x)
        optimizer.zero_grad()
        moe.aux_loss.backward()
        optimizer.step()
    moe(x)
    after = moe.last_load.max() * 4
    assert before > 2.0 and after < 1.5, (before, after)


def test_each_expert_runs_once_on_a_contiguous_block_of_its_tokens():
    moe = layer(num_experts=3)
    calls = []
    for i, expert in enumerate(moe.experts):
        original = expert.forward
        expert.forward = lambda block, i=i, original=original: calls.append((i, block.shape[0])) or original(block)
    moe(sz.Tensor(rand(4, 5, 6)))
    assert sorted(i for i, _ in calls) == sorted(set(i for i, _ in calls))  # no expert twice
    assert {i: n for i, n in calls} == {i: c for i, c in enumerate(np.bincount(moe.last_expert_index.ravel(),
                                                                              minlength=3)) if c}


def test_lighter_experts_share_one_down_projection_and_run_it_once_per_token(monkeypatch):
    """share_down_projection: every expert keeps its own up-projection W1_i and all share W2. Since W2 is
    linear, y = W2 (sum_j g_j act(W1_j x)) + (sum_j g_j) b2 equals the usual sum_j g_j (W2 act(W1_j x) + b2)
    (checked against the unshared layer given that same W2, drops included), with E - 1 fewer W2 matrices
    and one (hidden -> d_model) product per token instead of k."""
    shared = layer(capacity_factor=0.6, share_down_projection=True)
    plain = layer(capacity_factor=0.6)
    plain.router.load_state_dict(shared.router.state_dict())
    for mine, theirs in zip(plain.experts, shared.experts):
        mine.up.load_state_dict(theirs[0].state_dict())
        mine.down.load_state_dict(shared.down.state_dict())
    x = rand(3, 4, 6)
    inputs = [sz.Tensor(x, requires_grad=True) for _ in range(2)]
    outputs = [moe(t) for moe, t in zip((shared, plain), inputs)]
    assert shared.last_dropped > 0  # the case drops assignments: their share of b2 must not leak in
    np.testing.assert_allclose(outputs[0].data, outputs[1].data, rtol=1e-12, atol=1e-12)
    for out in outputs:
        out.sum().backward()
    np.testing.assert_allclose(inputs[0].grad, inputs[1].grad, rtol=1e-12, atol=1e-12)
    assert plain.num_parameters() - shared.num_parameters() == (5 - 1) * shared.down.num_parameters()

    rows = []  # the rows of every product with the shared W2
    real = moe_module.F.linear

    def linear(x, weight, bias=None):
        if weight is shared.down.weight:
            rows.append(x.shape[0])
        return real(x, weight, bias)

    monkeypatch.setattr(moe_module.F, "linear", linear)
    shared(sz.Tensor(x))
    assert rows == [12]  # 3 x 4 tokens, each through W2 once (not k = 2 times)
