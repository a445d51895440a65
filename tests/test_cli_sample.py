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
    assert main(["sample", "lstm-charlm", "--ckpt", checkpoint]) == 2
    assert "does not generate; recipes that do: gpt-char" in capsys.readouterr().err
    assert sample(monkeypatch, "--ckpt", checkpoint + "-missing")[0] == 1
