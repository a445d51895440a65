"""`scratchzoo sample RECIPE --ckpt DIR --prompt ...`: streams a continuation of the prompt to the terminal."""
from __future__ import annotations

import io as stdio
import sys

import pytest

from scratchzoo.cli import main
from scratchzoo.data import datasets

TEXT = "".join(f"def f{i % 7}(x):\n    return x * {i % 5} + {i % 3}\n" for i in range(300))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A gpt-char checkpoint of a tiny model trained for a few steps on a small corpus."""
    out = tmp_path_factory.mktemp("gpt-char")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets, "text_corpus", lambda name: TEXT)
        assert main(["train", "gpt-char", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
                     "--batch-size", "4", "--max-iters", "3", "--lr-decay-iters", "3", "--warmup-iters", "1",
                     "--eval-interval", "0", "--sample-chars", "5", "--out", str(out)]) == 0
    return str(out)


class Terminal(stdio.StringIO):
    """Stands in for sys.stdout and counts the flushes (one per piece when the output streams)."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def sample(monkeypatch, *flags: str) -> tuple[int, Terminal]:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    return main(["sample", "gpt-char", *flags]), terminal


def test_sample_streams_the_prompt_and_its_continuation(checkpoint, monkeypatch):
    code, out = sample(monkeypatch, "--ckpt", checkpoint, "--prompt", "def ", "--max-new-tokens", "40",
                       "--seed", "3", "--temperature", "0.9", "--top-k", "10", "--top-p", "0.95")
    assert code == 0
    text = out.getvalue()
    assert text.startswith("def ") and text.endswith("\n") and len(text) == 4 + 40 + 1
    assert out.flushes >= 40  # printed character by character, not all at the end
    assert set(text) <= set(TEXT)


def test_the_seed_fixes_the_sample_and_temperature_zero_ignores_it(checkpoint, monkeypatch):
    runs = [sample(monkeypatch, "--ckpt", checkpoint, "--prompt", "x", "--max-new-tokens", "30", "--seed", seed)[1]
            .getvalue() for seed in ("1", "1", "2")]
    assert runs[0] == runs[1] != runs[2]
    greedy = [sample(monkeypatch, "--ckpt", checkpoint, "--prompt", "x", "--max-new-tokens", "30", "--temperature",
                     "0", "--seed", seed)[1].getvalue() for seed in ("1", "2")]
    assert greedy[0] == greedy[1]


def test_sample_errors_are_one_line(checkpoint, monkeypatch, capsys):
    code, out = sample(monkeypatch, "--ckpt", checkpoint, "--prompt", "日本")
    assert code == 1 and out.getvalue() == ""  # nothing printed before the error
    assert "characters not in the model's vocabulary: '日本'" in capsys.readouterr().err
    assert sample(monkeypatch, "--ckpt", checkpoint, "--top-p", "1.5")[0] == 2
    assert "--top-p must lie in (0, 1]" in capsys.readouterr().err
    assert sample(monkeypatch, "--ckpt", checkpoint, "--temperature", "-1")[0] == 2
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert main(["sample", "mlp-digits", "--ckpt", checkpoint]) == 2
    refused = capsys.readouterr().err
    assert "does not generate; recipes that do: " in refused and "gpt-char" in refused and "lstm-charlm" in refused
    assert sample(monkeypatch, "--ckpt", checkpoint + "-missing")[0] == 1


@pytest.fixture(scope="module")
def charlm_checkpoint(tmp_path_factory):
    """An lstm-charlm checkpoint of a tiny model trained for a few steps on the same small corpus."""
    out = tmp_path_factory.mktemp("lstm-charlm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets, "text_corpus", lambda name: TEXT)
        assert main(["train", "lstm-charlm", "--embedding-dim", "8", "--hidden-size", "16", "--seq-len", "8",
                     "--batch-size", "4", "--steps", "5", "--sample-chars", "5", "--out", str(out)]) == 0
    return str(out)


def sample_charlm(monkeypatch, checkpoint, *flags: str) -> tuple[int, Terminal]:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    return main(["sample", "lstm-charlm", "--ckpt", checkpoint, *flags]), terminal


def test_charlm_sample_streams_with_temperature_top_k_top_p_and_seed(charlm_checkpoint, monkeypatch):
    """The vocabulary travels in the checkpoint: sampling needs no corpus."""
    monkeypatch.setattr(datasets, "text_corpus", lambda name: pytest.fail("sampling read the corpus"))
    code, out = sample_charlm(monkeypatch, charlm_checkpoint, "--prompt", "def ", "--max-new-tokens", "40",
                              "--seed", "3", "--temperature", "0.9", "--top-k", "10", "--top-p", "0.95")
    assert code == 0
    text = out.getvalue()
    assert text.startswith("def ") and text.endswith("\n") and len(text) == 4 + 40 + 1
    assert out.flushes >= 40 and set(text) <= set(TEXT)
    runs = [sample_charlm(monkeypatch, charlm_checkpoint, "--prompt", "x", "--max-new-tokens", "30", "--seed", seed)[1]
            .getvalue() for seed in ("1", "1", "2")]
    assert runs[0] == runs[1] != runs[2]
    greedy = [sample_charlm(monkeypatch, charlm_checkpoint, "--prompt", "x", "--max-new-tokens", "30",
                            "--temperature", "0", "--seed", seed)[1].getvalue() for seed in ("1", "2")]
    assert greedy[0] == greedy[1]


def test_charlm_greedy_sample_continues_as_the_training_sample_does(charlm_checkpoint, monkeypatch):
    """Temperature 0 reads the prompt once and then feeds each new character with the carried state, as
    models/rnn.py's generate does: the same characters."""
    from scratchzoo.models.rnn import generate
    from scratchzoo.recipes import rnn
    model, _, chars = rnn.load_charlm(charlm_checkpoint, "lstm-charlm")
    prompt = [chars.index(ch) for ch in "def "]
    expected = "".join(chars[i] for i in generate(model, prompt, 25, temperature=0.0))
    code, out = sample_charlm(monkeypatch, charlm_checkpoint, "--prompt", "def ", "--max-new-tokens", "25",
                              "--temperature", "0")
    assert code == 0 and out.getvalue() == expected + "\n"


def test_charlm_sample_errors_are_one_line(charlm_checkpoint, monkeypatch, capsys):
    code, out = sample_charlm(monkeypatch, charlm_checkpoint, "--prompt", "日本")
    assert code == 1 and out.getvalue() == ""
    assert "characters not in the model's vocabulary: '日本'" in capsys.readouterr().err
    assert sample_charlm(monkeypatch, charlm_checkpoint, "--prompt", "")[0] == 1
    assert "the prompt needs at least one character" in capsys.readouterr().err
