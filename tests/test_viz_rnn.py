"""viz/rnn.py: LSTM gate and hidden-state heatmaps for the recurrent models (tiny, untrained ones)."""
from __future__ import annotations

import numpy as np
import pytest

from scratchzoo import nn, rng, viz
from scratchzoo.autograd import Tensor
from scratchzoo.models.rnn import CharLM, CharLMConfig, SequenceClassifier, SequenceClassifierConfig
from scratchzoo.viz import rnn as viz_rnn

pytest.importorskip("matplotlib")


def char_lm(cell: str = "lstm", layers: int = 1) -> CharLM:
    rng.manual_seed(0)
    return CharLM(CharLMConfig(vocab_size=20, embedding_dim=8, hidden_size=12, num_layers=layers, cell=cell))


def classifier(cell: str) -> SequenceClassifier:
    rng.manual_seed(0)
    return SequenceClassifier(SequenceClassifierConfig(input_size=1, num_classes=10, hidden_size=12, cell=cell))


def written(path) -> bool:
    return path.exists() and path.stat().st_size > 0 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_language_model_figures(tmp_path, layers):
    model = char_lm("lstm", layers)
    ids = np.arange(30) % 20
    labels = list("def f(x):\n    return x * 2\n\t  ")
    assert len(labels) == 30
    assert viz_rnn.plot_gates(model, ids, tmp_path / "gates.png", labels=labels)
    assert viz_rnn.plot_hidden_states(model, ids, tmp_path / "hidden.png", labels=labels)
    assert written(tmp_path / "gates.png") and written(tmp_path / "hidden.png")
    assert model.training  # the mode it had is restored


def test_gates_are_in_the_unit_interval_and_match_the_forward_pass():
    model = classifier("lstm")
    signal = np.random.default_rng(0).standard_normal(40)
    gates = viz_rnn.gate_activations(model, signal)
    assert set(gates) == {"input", "forget", "output"}
    for values in gates.values():
        assert values.shape == (40, 12) and np.all((values > 0) & (values < 1))
    states = viz_rnn.hidden_states(model, signal)
    _, (h_n, _) = model.rnn(Tensor(signal[None, :, None].astype(np.float32)))
    np.testing.assert_allclose(states[-1], h_n.data[-1, 0], rtol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_classifier_hidden_state_figure(tmp_path, cell):
    model = classifier(cell)
    signal = np.random.default_rng(1).standard_normal((40, 1))
    assert viz_rnn.plot_hidden_states(model, signal, tmp_path / "hidden.png")
    assert written(tmp_path / "hidden.png")
    assert viz_rnn.hidden_states(model, signal[:, 0]).shape == (40, 12)


def test_gates_of_a_bare_lstm_and_refusal_for_a_gru(tmp_path):
    rng.manual_seed(0)
    lstm = nn.LSTM(3, 5)  # sequence first
    assert viz_rnn.plot_gates(lstm, np.random.default_rng(2).standard_normal((20, 3)), tmp_path / "gates.png")
    assert written(tmp_path / "gates.png")
    with pytest.raises(TypeError, match="plot_hidden_states"):
        viz_rnn.plot_gates(classifier("gru"), np.zeros(40), tmp_path / "nope.png")
    assert not (tmp_path / "nope.png").exists()


def test_no_matplotlib_means_no_figure(tmp_path, monkeypatch):
    monkeypatch.setattr(viz, "_matplotlib", lambda: None)  # as if it were not installed
    assert viz_rnn.plot_gates(char_lm(), np.arange(10), tmp_path / "gates.png") is False
    assert viz_rnn.plot_hidden_states(classifier("gru"), np.zeros(40), tmp_path / "hidden.png") is False
    assert not list(tmp_path.iterdir())
