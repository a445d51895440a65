"""Claims the docs make about the basic layers, each checked on the real modules: a stack of Linear
layers without activations is one linear map; an activation acts on every element on its own; the FFN
block keeps (B, T, d_model); dropout keeps the expectation; LayerNorm normalises each token on its own."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest

import scratchzoo as sz
from scratchzoo import nn
from scratchzoo.models.mlp import FFN

from helpers import rand


def test_an_mlp_without_activations_collapses_to_one_linear_map() -> None:
    # y = W3 (W2 (W1 x + b1) + b2) + b3 = (W3 W2 W1) x + (W3 W2 b1 + W3 b2 + b3): depth adds nothing
    model = nn.Sequential(nn.Linear(5, 16), nn.Linear(16, 8), nn.Linear(8, 3)).double()
    (w1, b1), (w2, b2), (w3, b3) = [(layer.weight.data, layer.bias.data) for layer in model]
    weight = w3 @ w2 @ w1
    bias = w3 @ w2 @ b1 + w3 @ b2 + b3
    x = rand(10, 5)
    np.testing.assert_allclose(model(sz.tensor(x)).data, x @ weight.T + bias, rtol=1e-12, atol=1e-12)
    single = nn.Linear(5, 3).double()
    single.load_state_dict({"weight": weight, "bias": bias})  # the collapsed map is an ordinary Linear
    np.testing.assert_allclose(single(sz.tensor(x)).data, model(sz.tensor(x)).data, rtol=1e-12, atol=1e-12)


def test_with_an_activation_the_stack_is_no_longer_linear() -> None:
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    a, b = sz.tensor(rand(5)), sz.tensor(rand(5))
    additive = model(a + b).data - model(a).data - model(b).data + model(sz.zeros(5, dtype=np.float64)).data
    assert np.abs(additive).max() > 1e-3  # f(a + b) != f(a) + f(b) - f(0)


def phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


SCALAR_ACTIVATIONS: list[tuple[Callable[[], nn.Module], Callable[[float], float]]] = [
    (nn.ReLU, lambda x: max(x, 0.0)),
    (lambda: nn.LeakyReLU(0.1), lambda x: x if x > 0 else 0.1 * x),
    (nn.Sigmoid, lambda x: 1 / (1 + math.exp(-x))),
    (nn.Tanh, math.tanh),
    (nn.GELU, lambda x: x * phi(x)),
    (lambda: nn.GELU("tanh"), lambda x: 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    (nn.SiLU, lambda x: x / (1 + math.exp(-x))),
]


@pytest.mark.parametrize("make, scalar", SCALAR_ACTIVATIONS,
                         ids=["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu-tanh", "silu"])
def test_an_activation_module_applies_to_every_element_on_its_own(make: Callable[[], nn.Module],
                                                                  scalar: Callable[[float], float]) -> None:
    x = rand(2, 3, 10) * 2
    layer = make()
    y = layer(sz.tensor(x)).data
    assert y.shape == (2, 3, 10)
    np.testing.assert_allclose(y, np.vectorize(scalar)(x), rtol=1e-12, atol=1e-12)
    changed = x.copy()
    changed[1, 2, 7] += 1.0  # nudging one element changes exactly that output
    moved = layer(sz.tensor(changed)).data != y
    assert moved[1, 2, 7] and moved.sum() == 1


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_the_ffn_block_keeps_the_shape_and_widens_to_4d_inside(activation: str) -> None:
    batch, tokens, d_model = 2, 5, 8
    block = FFN(d_model, 4 * d_model, activation)
    assert block.up.weight.shape == (4 * d_model, d_model) and block.down.weight.shape == (d_model, 4 * d_model)
    x = sz.tensor(rand(batch, tokens, d_model).astype(np.float32))
    hidden = block.act(block.up(x))
    assert hidden.shape == (batch, tokens, 4 * d_model)
    y = block(x)
    assert y.shape == (batch, tokens, d_model) and y.dtype == np.float32
    assert (x + y).shape == x.shape  # so it sits inside the residual x + FFN(x)


def test_the_ffn_block_acts_on_each_position_separately() -> None:
    block = FFN(4, 16)
    x = rand(1, 6, 4).astype(np.float32)
    whole = block(sz.tensor(x)).data
    for t in range(6):
        np.testing.assert_allclose(block(sz.tensor(x[:, t])).data, whole[:, t], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_the_expectation_in_training(p: float) -> None:
    sz.manual_seed(0)
    x = rand(8) + 2.0
    samples = 40_000  # each row is an independent draw of the mask
    y = nn.Dropout(p)(sz.tensor(np.broadcast_to(x, (samples, 8)).copy())).data
    # E[y] = (1 - p) * x / (1 - p) = x; the sample mean's std is |x| sqrt(p / (1 - p)) / sqrt(samples)
    standard_error = np.abs(x) * math.sqrt(p / (1 - p)) / math.sqrt(samples)
    assert np.all(np.abs(y.mean(axis=0) - x) < 5 * standard_error)
    assert abs((y == 0).mean() - p) < 0.01


def test_dropout_is_the_identity_in_eval() -> None:
    layer = nn.Dropout(0.5).eval()
    x = sz.tensor(rand(4, 6), requires_grad=True)
    y = layer(x)
    np.testing.assert_array_equal(y.data, x.data)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((4, 6)))


def test_layernorm_normalises_each_token_on_its_own() -> None:
    norm = nn.LayerNorm(16).double()
    x = rand(2, 5, 16) * 3 + 1
    y = norm(sz.tensor(x)).data
    np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=-1), 1.0, atol=1e-5)  # var / (var + eps), eps = 1e-5
    changed = x.copy()
    changed[0, 2] = rand(16) * 10  # change token 2 of sample 0
    y_changed = norm(sz.tensor(changed)).data
    np.testing.assert_array_equal(y_changed[0, 1], y[0, 1])  # token 1's output does not move
    np.testing.assert_array_equal(np.delete(y_changed, 2, axis=1), np.delete(y, 2, axis=1))
    assert not np.allclose(y_changed[0, 2], y[0, 2])
    alone = norm(sz.tensor(x[1:2, 3:4])).data  # nor does the batch size or sequence length matter
    np.testing.assert_allclose(alone[0, 0], y[1, 3], rtol=1e-12, atol=1e-12)


def test_layernorm_then_affine_sets_each_token_s_mean_and_scale() -> None:
    norm = nn.LayerNorm(8).double()
    norm.weight.data[...] = 3.0
    norm.bias.data[...] = -1.0
    y = norm(sz.tensor(rand(4, 8) * 5)).data
    np.testing.assert_allclose(y.mean(axis=-1), -1.0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=-1), 3.0, rtol=1e-4)
