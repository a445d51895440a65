"""Weights move between scratchzoo and PyTorch through safetensors files: an MLP saved here loads into the
equivalent torch.nn.Sequential (same names, shapes and layouts) and computes the same outputs, the other
way round too, and so does the model.safetensors of a real recipe checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close, rand
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

from scratchzoo import io, rng
from scratchzoo.autograd import Tensor
from scratchzoo.data import datasets
from scratchzoo.models.mlp import MLP, MLPConfig
from scratchzoo.recipes import RECIPES, common, quadratic

TORCH_ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU,
                     "sigmoid": torch.nn.Sigmoid, "silu": torch.nn.SiLU}


def torch_mlp(config: MLPConfig) -> torch.nn.Sequential:
    """The torch.nn.Sequential that MLP(config) mirrors: [Linear, activation, (Dropout)] per hidden width,
    then Linear; its state_dict keys ("0.weight", "3.bias", ...) come from the positions."""
    widths = [config.in_features, *config.hidden]
    layers: list[torch.nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(width_in, width_out), TORCH_ACTIVATIONS[config.activation]()]
        if config.dropout > 0:
            layers.append(torch.nn.Dropout(config.dropout))
    layers.append(torch.nn.Linear(widths[-1], config.out_features))
    return torch.nn.Sequential(*layers)


def ours_forward(model: MLP, x: np.ndarray) -> np.ndarray:
    model.eval()
    return model(Tensor(x)).data


def torch_forward(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


CONFIGS = [MLPConfig(5, (7, 6), 3, "relu"), MLPConfig(5, (8,), 2, "tanh", dropout=0.3),
           MLPConfig(4, (6, 6, 5), 1, "gelu", dropout=0.1)]


@pytest.mark.parametrize("config", CONFIGS, ids=["relu", "tanh-dropout", "gelu-dropout"])
def test_our_mlp_loads_into_torch(tmp_path, config):
    rng.manual_seed(0)
    ours = MLP(config)
    io.save_state_dict(ours.state_dict(), tmp_path / "mlp.safetensors")

    theirs = torch_mlp(config)
    state = torch_load_file(str(tmp_path / "mlp.safetensors"))
    theirs.load_state_dict(state)  # strict: every key and shape must match
    for name, value in theirs.state_dict().items():
        assert value.dtype == torch.float32
        np.testing.assert_array_equal(value.numpy(), ours.state_dict()[name], err_msg=name)
    x = rand(9, config.in_features).astype(np.float32)
    assert_close("outputs", ours_forward(ours, x), torch_forward(theirs, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", CONFIGS, ids=["relu", "tanh-dropout", "gelu-dropout"])
def test_torch_mlp_loads_into_ours(tmp_path, config):
    torch.manual_seed(0)
    theirs = torch_mlp(config)
    torch_save_file(theirs.state_dict(), str(tmp_path / "torch.safetensors"))

    rng.manual_seed(1)  # other initial weights: the file must replace them all
    ours = MLP(config)
    ours.load_state_dict(io.load_state_dict(tmp_path / "torch.safetensors"))
    for name, value in ours.state_dict().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, theirs.state_dict()[name].numpy(), err_msg=name)
    x = rand(9, config.in_features).astype(np.float32)
    assert_close("outputs", ours_forward(ours, x), torch_forward(theirs, x), rtol=1e-5, atol=1e-5)


def test_a_recipe_checkpoint_loads_into_torch(tmp_path):
    """model.safetensors of a trainer-quadratic run is a plain state dict that torch reads as it is, and
    torch's predictions give the test MSE the run reported."""
    recipe = RECIPES["trainer-quadratic"]
    config = recipe.config_class(hidden=(8, 8), steps=15, n_train=128, batch_size=32, out=str(tmp_path))
    metrics = recipe.train(config)

    theirs = torch_mlp(MLPConfig(1, (8, 8), 1, config.activation))
    theirs.load_state_dict(torch_load_file(str(tmp_path / io.MODEL_FILE)))
    ours, _ = common.load_model(str(tmp_path), quadratic.QuadraticConfig, quadratic.build)
    split = datasets.quadratic(n_train=config.n_train, seed=config.seed)
    prediction = torch_forward(theirs, split.x_test)
    assert_close("outputs", common.predict(ours, split.x_test), prediction, rtol=1e-5, atol=1e-5)
    assert float(((prediction - split.y_test) ** 2).mean()) == pytest.approx(metrics["test_mse"], rel=1e-5)
