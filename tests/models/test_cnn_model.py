"""models.cnn.CNN against the same network written in torch.nn, and a tiny cnn-digits run.

The torch twin mirrors ours module for module: `features` is a Sequential of conv blocks (each a
Sequential Conv-BatchNorm-ReLU-MaxPool) followed by the adaptive pool, `classifier` is
Flatten-Linear-ReLU-Dropout-Linear. So the state_dict keys are the same (`features.0.0.weight`,
`features.0.1.running_mean`, `classifier.1.weight`, ...) and torch's state dict loads into ours as it is
(`assert_matches_torch` does exactly that before comparing).
"""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from helpers import assert_close, assert_matches_torch, rand, record_losses

import scratchzoo as sz
from scratchzoo import losses, optim
from scratchzoo.models.cnn import CNN, CNNConfig
from scratchzoo.recipes import RECIPES

TORCH_LAYERS = {1: (torch.nn.Conv1d, torch.nn.BatchNorm1d, torch.nn.MaxPool1d, torch.nn.AdaptiveAvgPool1d),
                2: (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.MaxPool2d, torch.nn.AdaptiveAvgPool2d)}


class TorchCNN(torch.nn.Module):
    """The torch.nn network that CNN(config) builds, with the same module names."""

    def __init__(self, config: CNNConfig):
        super().__init__()
        conv, batch_norm, max_pool, adaptive_pool = TORCH_LAYERS[config.dims]
        widths = [config.in_channels, *config.channels]
        blocks = [torch.nn.Sequential(conv(w_in, w_out, config.kernel_size, padding=config.kernel_size // 2),
                                      batch_norm(w_out), torch.nn.ReLU(), max_pool(2))
                  for w_in, w_out in zip(widths[:-1], widths[1:])]
        self.features = torch.nn.Sequential(*blocks, adaptive_pool(config.pooled_size))
        flat = widths[-1] * config.pooled_size ** config.dims
        self.classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(flat, config.hidden), torch.nn.ReLU(),
                                              torch.nn.Dropout(config.dropout),
                                              torch.nn.Linear(config.hidden, config.num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


# small versions of the two recipe networks; spatial sizes odd on purpose (pooling floors them)
CONFIGS = {
    "2d": (CNNConfig(in_channels=2, num_classes=5, channels=(4, 6), kernel_size=3, pooled_size=2, hidden=8,
                     dropout=0.0, dims=2), (3, 2, 11, 9)),
    "1d": (CNNConfig(in_channels=1, num_classes=4, channels=(3, 5, 6), kernel_size=5, pooled_size=2, hidden=7,
                     dropout=0.0, dims=1), (3, 1, 41)),
}


def _pair(name: str, dropout: float = 0.0) -> tuple[CNN, TorchCNN, tuple[int, ...]]:
    config, shape = CONFIGS[name]
    config = CNNConfig(**{**config.__dict__, "dropout": dropout})
    sz.manual_seed(0)
    torch.manual_seed(0)
    return CNN(config), TorchCNN(config), shape


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_keys_and_shapes_equal_torchs(name):
    ours, theirs, _ = _pair(name)
    ours_state, their_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(their_state)
    for key, value in their_state.items():
        assert np.shape(ours_state[key]) == tuple(value.shape), key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_eval_mode_matches_torch(name, dtype):
    """Eval: BatchNorm uses running statistics (made non-trivial first), dropout is the identity."""
    ours, theirs, shape = _pair(name, dropout=0.5)
    for module in theirs.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    ours.eval()
    theirs.eval()
    assert_matches_torch(ours, theirs, [rand(*shape)], dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_train_mode_matches_torch_and_updates_the_same_running_statistics(name, dtype):
    """Train (dropout 0 so both draw nothing random): BatchNorm uses batch statistics, gradients agree,
    and the running statistics move the same way."""
    ours, theirs, shape = _pair(name)
    ours.train()
    theirs.train()
    assert_matches_torch(ours, theirs, [rand(*shape)], dtype=dtype)
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    their_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        assert_close(key, np.asarray(value), their_state[key].numpy(), rtol=rtol, atol=rtol / 10)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_our_state_dict_loads_into_torch_and_gives_the_same_logits(name):
    """The other direction of the interchange: train ours one step, then hand its state to torch."""
    ours, theirs, shape = _pair(name)
    x = rand(*shape).astype(np.float32)
    ours.train()
    loss = losses.cross_entropy(ours(sz.Tensor(x)), sz.Tensor(np.arange(shape[0]) % 3))
    loss.backward()
    optim.SGD(ours.parameters(), lr=0.1).step()
    theirs.load_state_dict({key: torch.from_numpy(np.asarray(value)) for key, value in ours.state_dict().items()})
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        assert_close("logits", ours(sz.Tensor(x)).data, theirs(torch.from_numpy(x)).numpy(), 1e-4, 1e-5)


def test_shapes_along_the_pipeline():
    sz.manual_seed(0)
    model = CNN(CNNConfig(channels=(32, 64)))  # the benchmark's network
    x = sz.Tensor(rand(2, 1, 28, 28).astype(np.float32))
    h = x
    sizes = []
    for layer in model.features:
        h = layer(h)
        sizes.append(h.shape)
    assert sizes == [(2, 32, 14, 14), (2, 64, 7, 7), (2, 64, 1, 1)]
    assert model(x).shape == (2, 10)
    assert model(sz.Tensor(rand(3, 1, 13, 21).astype(np.float32))).shape == (3, 10)  # any image size
    one_d = CNN(CNNConfig(channels=(8, 16, 32), kernel_size=5, pooled_size=5, dims=1))
    assert one_d(sz.Tensor(rand(4, 1, 40).astype(np.float32))).shape == (4, 10)
    assert one_d.classifier[1].weight.shape == (128, 32 * 5)
    with pytest.raises(ValueError, match="dims"):
        CNN(CNNConfig(dims=3))


@pytest.mark.parametrize("name,steps,accuracy", [("cnn-digits", 30, 0.3), ("cnn-mnist1d", 60, 0.25)])
def test_tiny_cnn_run_learns_and_writes_metrics(name, steps, accuracy, tmp_path, monkeypatch):
    """A few dozen steps of a small network: the loss falls and held-out accuracy is well above chance (0.1);
    metrics.json and the figures (2-D filters and maps for the digits, 1-D for MNIST-1D) are written."""
    monkeypatch.setenv("SCRATCHZOO_DATA", str(tmp_path / "data"))  # MNIST-1D is generated into it
    seen = record_losses(monkeypatch, losses, "cross_entropy", training_only=True)
    recipe = RECIPES[name]
    run_dir = tmp_path / "run"
    metrics = recipe.train(recipe.config_class(channels=(8, 16), hidden=32, dropout=0.1, steps=steps, batch_size=32,
                                               lr=1e-2, out=str(run_dir)))
    assert len(seen) == steps
    assert np.mean(seen[-5:]) < 0.8 * np.mean(seen[:5]), seen
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written == metrics
    assert written["test_accuracy"] > accuracy
    for figure in ("filters.png", "feature_maps.png", "curves.png"):
        if importlib.util.find_spec("matplotlib") is not None:
            assert (run_dir / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
        else:
            assert not (run_dir / figure).exists()
