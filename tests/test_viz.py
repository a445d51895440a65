"""viz: figures leave the caller's matplotlib alone (backend, rcParams, pyplot's figures), also when a plot
fails; every plot function returns False without matplotlib; viz.cnn.block_outputs on tiny CNNs."""
from __future__ import annotations

import numpy as np
import pytest

from scratchzoo import rng, viz
from scratchzoo.autograd import Tensor
from scratchzoo.models.cnn import CNN, CNNConfig
from scratchzoo.viz import cnn as viz_cnn
from scratchzoo.viz import moe as viz_moe
from scratchzoo.viz import transformer as viz_transformer


def tiny_cnn(dims: int) -> CNN:
    rng.manual_seed(0)
    return CNN(CNNConfig(in_channels=2, num_classes=3, channels=(4, 6), hidden=8, dropout=0.5, dims=dims))


def sample(dims: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 12, 12) if dims == 2 else (2, 16)).astype(np.float32)


def written(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def every_plot(directory) -> list[bool]:
    """Each plot function of viz once, on tiny inputs, writing into `directory`."""
    x = np.linspace(0.0, 1.0, 20)
    weights = viz_moe.gate_matrix(np.zeros((20, 1), dtype=np.int64), np.ones((20, 1)), 2)
    model = tiny_cnn(2)
    return [viz.plot_curves(directory / "curves.png", [3.0, 2.0, 1.5, 1.0], {"accuracy": [(2, 0.5), (4, 0.8)]}),
            viz_cnn.plot_filters(model.features[0][0].weight, directory / "filters.png"),
            viz_cnn.plot_feature_maps(model, sample(2), directory / "maps.png"),
            viz_moe.plot_expert_regions(directory / "experts.png", x, x ** 2, {"moe": x}, weights, boundaries=[0.5]),
            viz_moe.plot_expert_load(directory / "load.png", {"run": np.array([[0.4, 0.6]])}),
            viz_transformer.plot_attention_grid(np.full((1, 2, 3, 3), 1 / 3), list("abc"), ["银", "行", "x"],
                                                directory / "attention.png"),
            viz_transformer.plot_positional_encoding(directory / "pe.png", 16, 12)]


def test_plots_leave_backend_fonts_and_pyplot_figures_alone(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    previous_backend = matplotlib.get_backend()
    matplotlib.use("svg")  # stands in for a notebook's inline backend: not the Agg that figures are written with
    try:
        fonts = list(matplotlib.rcParams["font.sans-serif"])
        open_before = plt.get_fignums()
        assert all(every_plot(tmp_path))
        assert all(written(path) for path in tmp_path.iterdir()) and len(list(tmp_path.iterdir())) == 7
        with pytest.raises(OSError):  # a failing plot: the directory does not exist
            viz.plot_curves(tmp_path / "missing" / "curves.png", [1.0, 0.5], {})
        with pytest.raises(OSError):
            viz_transformer.plot_attention_grid(np.ones((1, 1, 2, 2)), "ab", "ab", tmp_path / "missing" / "a.png")
        assert matplotlib.get_backend() == "svg"
        assert matplotlib.rcParams["font.sans-serif"] == fonts
        assert plt.get_fignums() == open_before
    finally:
        matplotlib.use(previous_backend)


def test_a_failure_while_drawing_restores_the_fonts_and_writes_nothing(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    fonts = list(matplotlib.rcParams["font.sans-serif"])
    monkeypatch.setattr(viz, "installed_fonts", lambda: {"SimHei"})
    with pytest.raises(RuntimeError, match="while drawing"):
        with viz.new_figure(tmp_path / "figure.png") as figure:
            figure.subplots().plot([0, 1])
            assert matplotlib.rcParams["font.sans-serif"] == [*fonts, "SimHei"]
            raise RuntimeError("while drawing")
    assert matplotlib.rcParams["font.sans-serif"] == fonts
    assert not list(tmp_path.iterdir())


def test_without_matplotlib_nothing_is_drawn(tmp_path, monkeypatch):
    monkeypatch.setattr(viz, "_matplotlib", lambda: None)
    assert every_plot(tmp_path) == [False] * 7
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("dims", [1, 2])
def test_block_outputs_are_the_input_and_each_conv_block(dims):
    model = tiny_cnn(dims)
    x = sample(dims)
    maps = viz_cnn.block_outputs(model, x)  # one sample without its batch axis
    assert [name for name, _ in maps] == ["input", "block 1", "block 2"]
    size = (12, 6, 3) if dims == 2 else (16, 8, 4)
    for (_, stage), channels, length in zip(maps, (2, 4, 6), size):
        assert stage.shape == (channels, *(length,) * dims) and stage.dtype == np.float64
    np.testing.assert_array_equal(maps[0][1], x)
    model.eval()  # in eval mode, the maps are what the network's own blocks compute
    expected = model.features[1](model.features[0](Tensor(x[None]))).data[0]
    model.train()
    np.testing.assert_allclose(maps[2][1], expected, rtol=1e-6)
    assert model.training  # the mode it had is restored
    batched = viz_cnn.block_outputs(model, np.stack([x, x + 1]))  # a batch: its first sample
    np.testing.assert_allclose(batched[2][1], maps[2][1], rtol=1e-6)


@pytest.mark.parametrize("dims", [1, 2])
def test_cnn_figures_of_both_kinds(tmp_path, dims):
    pytest.importorskip("matplotlib")
    model = tiny_cnn(dims)
    assert viz_cnn.plot_filters(model.features[0][0].weight, tmp_path / "filters.png")
    assert viz_cnn.plot_feature_maps(model, sample(dims), tmp_path / "maps.png", max_channels=3)
    assert written(tmp_path / "filters.png") and written(tmp_path / "maps.png")
    with pytest.raises(ValueError, match="3 or 4 dims"):
        viz_cnn.plot_filters(np.zeros((2, 2)), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
