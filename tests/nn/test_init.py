"""Initialisation: every layer's default and every init function equal torch's in distribution (bounds,
mean, std on big tensors, compared with torch's own freshly drawn values), and manual_seed reproduces."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo import nn
from scratchzoo.models.mlp import MLP, MLPConfig
from scratchzoo.nn import init


def assert_same_distribution(ours: np.ndarray, theirs: np.ndarray, std_rtol: float = 0.05) -> None:
    """Means agree to within a few standard errors and stds to within std_rtol; bounds too."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    scale = theirs.std()
    standard_error = scale / math.sqrt(min(ours.size, theirs.size))
    assert abs(ours.mean() - theirs.mean()) < 6 * standard_error, (ours.mean(), theirs.mean())
    assert ours.std() == pytest.approx(theirs.std(), rel=std_rtol)
    assert np.abs(ours).max() == pytest.approx(np.abs(theirs).max(), rel=0.25)


def torch_values(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy()


# ============================================================================ layer defaults


def test_linear_default_init_equals_torch_in_distribution() -> None:
    sz.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = nn.Linear(256, 128), torch.nn.Linear(256, 128)
    bound = 1 / math.sqrt(256)  # kaiming_uniform(a=sqrt(5)) works out to U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    weight = ours.weight.data
    assert weight.dtype == np.float32 and weight.shape == (128, 256)
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.999 * bound
    assert weight.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # std of U(-b, b) is b / sqrt(3)
    assert_same_distribution(weight, torch_values(theirs.weight))
    # the bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) too; 128 values per layer, so pool 40 layers for the std
    biases = np.concatenate([nn.Linear(256, 128).bias.data for _ in range(40)])
    their_biases = np.concatenate([torch_values(torch.nn.Linear(256, 128).bias) for _ in range(40)])
    assert np.abs(biases).max() <= bound and np.abs(biases).max() > 0.99 * bound
    assert_same_distribution(biases, their_biases)


def test_linear_bias_bound_follows_fan_in_not_fan_out() -> None:
    layer = nn.Linear(4, 2000)
    assert np.abs(layer.bias.data).max() <= 0.5 and np.abs(layer.bias.data).max() > 0.49


def test_embedding_default_init_is_standard_normal_as_torch() -> None:
    sz.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = nn.Embedding(1000, 64).weight.data, torch.nn.Embedding(1000, 64).weight
    assert ours.dtype == np.float32
    assert abs(ours.mean()) < 0.02 and ours.std() == pytest.approx(1.0, rel=0.02)
    assert_same_distribution(ours, torch_values(theirs))


def test_layernorm_default_init_is_ones_and_zeros_as_torch() -> None:
    ours, theirs = nn.LayerNorm((3, 4)), torch.nn.LayerNorm((3, 4))
    for name, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, torch_values(theirs.state_dict()[name]))
        assert value.dtype == np.float32


# ============================================================================ init functions

SHAPE = (512, 64, 3)  # fan_in 192, fan_out 1536: the two modes differ


@pytest.mark.parametrize("name, kwargs", [
    ("uniform_", {"a": -0.3, "b": 0.7}),
    ("normal_", {"mean": 0.5, "std": 2.0}),
    ("trunc_normal_", {"mean": 0.1, "std": 1.0, "a": -1.0, "b": 1.5}),
    ("xavier_uniform_", {}),
    ("xavier_uniform_", {"gain": 5 / 3}),
    ("xavier_normal_", {"gain": 2.0}),
    ("kaiming_uniform_", {}),
    ("kaiming_uniform_", {"a": math.sqrt(5)}),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_normal_", {}),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_normal_", {"a": 0.2, "nonlinearity": "leaky_relu"}),
    ("kaiming_normal_", {"nonlinearity": "tanh"}),
], ids=lambda value: value if isinstance(value, str) else "-".join(f"{k}={v}" for k, v in value.items()) or "default")
def test_init_function_equals_torch_in_distribution(name: str, kwargs: dict[str, Any]) -> None:
    sz.manual_seed(1)
    torch.manual_seed(1)
    tensor = sz.zeros(*SHAPE)
    assert getattr(init, name)(tensor, **kwargs) is tensor  # in place, returns its argument as torch
    theirs = getattr(torch.nn.init, name)(torch.zeros(SHAPE), **kwargs)
    assert tensor.dtype == np.float32
    assert_same_distribution(tensor.data, torch_values(theirs), std_rtol=0.02)


@pytest.mark.parametrize("name, kwargs, std", [
    ("xavier_uniform_", {}, math.sqrt(2 / (192 + 1536))),
    ("xavier_normal_", {"gain": 2.0}, 2 * math.sqrt(2 / (192 + 1536))),
    ("kaiming_uniform_", {}, math.sqrt(2) / math.sqrt(192)),  # gain of leaky_relu with a=0 is sqrt(2)
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2) / math.sqrt(1536)),
    ("kaiming_normal_", {"nonlinearity": "linear"}, 1 / math.sqrt(192)),
], ids=["xavier_uniform", "xavier_normal-gain2", "kaiming_uniform", "kaiming_normal-fan_out", "kaiming_linear"])
def test_init_std_follows_its_formula(name: str, kwargs: dict[str, Any], std: float) -> None:
    sz.manual_seed(2)
    values = getattr(init, name)(sz.zeros(*SHAPE), **kwargs).data
    assert values.std() == pytest.approx(std, rel=0.01)
    if name.endswith("uniform_"):
        assert np.abs(values).max() <= math.sqrt(3) * std * (1 + 1e-6)


def test_trunc_normal_stays_inside_its_bounds() -> None:
    values = init.trunc_normal_(sz.zeros(100_000), std=1.0, a=-0.5, b=2.0).data
    assert values.min() >= -0.5 and values.max() <= 2.0 and values.min() < -0.49 and values.max() > 1.95


def test_constant_zeros_ones_keep_the_dtype() -> None:
    tensor = sz.zeros(3, 4, dtype=np.float64)
    np.testing.assert_array_equal(init.constant_(tensor, 0.25).data, np.full((3, 4), 0.25))
    np.testing.assert_array_equal(init.ones_(tensor).data, np.ones((3, 4)))
    np.testing.assert_array_equal(init.zeros_(tensor).data, np.zeros((3, 4)))
    assert tensor.dtype == np.float64 and init.normal_(tensor).dtype == np.float64


def test_init_keeps_the_parameter_object() -> None:
    layer = nn.Linear(3, 4)
    weight = layer.weight
    init.xavier_uniform_(layer.weight)
    assert layer.weight is weight and next(layer.parameters()) is weight


@pytest.mark.parametrize("shape", [(5, 3), (8, 4, 3), (16, 8, 3, 3), (4, 2, 3, 3, 3)], ids=str)
def test_fan_in_and_fan_out_equal_torch(shape: tuple[int, ...]) -> None:
    assert init.calculate_fan_in_and_fan_out(sz.zeros(*shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))


def test_fan_needs_two_dims() -> None:
    with pytest.raises(ValueError, match=r"at least 2 dims, got shape \(5,\)"):
        init.xavier_uniform_(sz.zeros(5))


@pytest.mark.parametrize("nonlinearity, param", [
    ("linear", None), ("sigmoid", None), ("conv1d", None), ("conv2d", None), ("conv3d", None),
    ("conv_transpose2d", None), ("tanh", None), ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
    ("leaky_relu", 0), ("leaky_relu", math.sqrt(5)), ("selu", None),
])
def test_calculate_gain_equals_torch(nonlinearity: str, param: float | None) -> None:
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(torch.nn.init.calculate_gain(nonlinearity, param),
                                                                     rel=1e-12)


def test_calculate_gain_rejects_an_unknown_nonlinearity() -> None:
    with pytest.raises(ValueError, match="calculate_gain: unknown nonlinearity 'swish'"):
        init.calculate_gain("swish")


# ============================================================================ reproducibility


def test_manual_seed_reproduces_an_identical_model() -> None:
    def build(seed: int) -> dict[str, np.ndarray]:
        sz.manual_seed(seed)
        model = nn.Sequential(MLP(MLPConfig(in_features=8, hidden=(16, 16), out_features=3)),
                              nn.Embedding(10, 3), nn.LayerNorm(3))
        return model.state_dict()

    first, second, other = build(7), build(7), build(8)
    assert list(first) == list(second)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert not np.array_equal(first["0.0.weight"], other["0.0.weight"])
    assert not np.array_equal(first["1.weight"], other["1.weight"])


@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_"])
def test_kaiming_rejects_an_unknown_mode_as_torch(name: str) -> None:
    with pytest.raises(ValueError):
        getattr(torch.nn.init, name)(torch.empty(3, 4), mode="fan")
    with pytest.raises(ValueError, match=rf"{name}: mode must be 'fan_in' or 'fan_out', got 'fan'"):
        getattr(init, name)(sz.zeros(3, 4), mode="fan")
