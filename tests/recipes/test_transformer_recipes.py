"""transformer-pinyin and transformer-g2p on tiny configurations and small stand-in dictionaries: the loss
falls, metrics.json holds the issue's keys, `evaluate` reproduces them, the wall-clock budget stops training,
and a run killed after its step-N checkpoint and resumed ends bit for bit where the straight run ends.
The targets themselves are measured by the full runs (see the module docstring of recipes/transformer.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import record_losses
from scratchzoo import io
from scratchzoo.data import seq2seq
from scratchzoo.models.transformer import Seq2SeqTransformer
from scratchzoo.recipes import RECIPES
from scratchzoo.recipes import transformer as recipe

TINY = dict(d_model=32, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=64, dropout=0.1,
            batch_size=32, lr=3e-3, warmup_steps=5, evaluate_every=0, checkpoint_every=0, eval_batch_size=64)


class SimulatedCrash(Exception):
    """Stands in for a killed process."""


@pytest.fixture
def small_dictionaries(monkeypatch):
    """300 real phrases (characters repeat across them, so readings can be learned) and a toy spelling
    system of 300 words where a few letters have two spellings-out, standing in for cmudict."""
    readings = seq2seq.pinyin_readings()
    phrases = sorted(readings)[:300]
    monkeypatch.setattr(seq2seq, "pinyin_readings", lambda: {p: readings[p] for p in phrases})
    lexicon = seq2seq.pinyin_character_readings()
    small_lexicon = {c: lexicon[c] for c in "我爱吃火锅"}  # a few characters the 300 phrases lack
    monkeypatch.setattr(seq2seq, "pinyin_character_readings", lambda: small_lexicon)
    gen = np.random.default_rng(0)
    sounds = {ch: ph for ch, ph in zip("abcdefgh", ("AE", "B", "K", "D", "EH", "F", "G", "HH"))}
    words = {"".join(gen.choice(list(sounds), size=gen.integers(2, 7))) for _ in range(300)}
    prons = {w: [tuple(sounds[ch] for ch in w)] + ([tuple("S" if ch == "c" else sounds[ch] for ch in w)]
                                                   if "c" in w else []) for w in words}
    monkeypatch.setattr(seq2seq, "cmudict_pronunciations", lambda stress=False: prons)


@pytest.fixture
def recorded_losses(monkeypatch):
    return record_losses(monkeypatch, Seq2SeqTransformer, "loss")


def test_transformer_recipes_are_registered():
    assert RECIPES["transformer-pinyin"].config_class is recipe.PinyinConfig
    assert RECIPES["transformer-g2p"].config_class is recipe.G2PConfig
    assert recipe.G2PConfig().stress is False and recipe.G2PConfig().max_minutes == 60.0


def test_character_lexicon_joins_the_training_side_only():
    """The single-character dictionary: one one-character pair per CJK character, the common reading first;
    it adds training rows but leaves the held-out phrases exactly where they were."""
    lexicon = seq2seq.pinyin_character_readings()
    assert len(lexicon) > 20000 and lexicon["行"] == ("xíng",) and lexicon["一"] == ("yī",)
    assert all(len(char) == 1 and len(reading) == 1 for char, reading in lexicon.items())
    readings = seq2seq.pinyin_readings()
    phrases = {p: [readings[p]] for p in sorted(readings)[:2000]}
    small = {c: lexicon[c] for c in "行银走一不"}
    plain, extended = recipe.build_data(phrases, 0.1), recipe.build_data(phrases, 0.1, lambda train_keys: small)
    assert extended.test_sources == plain.test_sources and extended.test_references == plain.test_references
    assert len(extended.train) == len(plain.train) + len(small) and extended.extra_pairs == small
    assert (extended.train.src_lengths[-len(small):] == 1).all()  # the lexicon rows come last


def test_subphrases_are_the_shorter_stretches_of_training_phrases_only():
    """Every stretch of 2+ characters shorter than its phrase, read as there (majority where phrases
    disagree), never a dictionary phrase itself, and built from the training keys alone."""
    readings = {"银行家": ("yín", "háng", "jiā"), "银行业": ("yín", "háng", "yè"), "一个人": ("yí", "gè", "rén"),
                "一个个": ("yī", "gè", "gè"), "一个劲": ("yí", "gè", "jìn"), "个人": ("gè", "rén"),
                "不见了": ("bú", "jiàn", "le")}
    spans = recipe.subphrase_pairs(readings, ["银行家", "银行业", "一个人", "一个个", "一个劲"])
    assert spans["银行"] == ("yín", "háng") and spans["行家"] == ("háng", "jiā")
    assert spans["一个"] == ("yí", "gè")  # two phrases read it yí gè, one yī gè
    assert "个人" not in spans  # a dictionary phrase of its own
    assert not any(key in readings for key in spans) and "不见" not in spans  # 不见了 is not a training phrase
    assert all(len(key) == 2 for key in spans)  # 3-character phrases: only their 2-character stretches

    data = recipe.build_data({p: [r] for p, r in readings.items()}, 0.5,
                             lambda train_keys: recipe.subphrase_pairs(readings, train_keys))
    held_out = {"".join(source) for source in data.test_sources}
    assert data.extra_pairs and not any(key in held_out for key in data.extra_pairs)
    trained = {"".join(source) for source, _ in recipe.training_phrases(data)}
    assert all(any(key in phrase for phrase in trained) for key in data.extra_pairs)


def test_the_two_lookup_baselines():
    """Per character: the majority reading in training. In context: the reading inside the longest stretch of
    characters that training phrases share with the input, so 银行家 reads 行 as in 银行, not as most often."""
    phrases = [(("银", "行"), ("yín", "háng")), (("行", "走"), ("xíng", "zǒu")), (("行", "人"), ("xíng", "rén")),
               (("人", "家"), ("rén", "jiā"))]
    majority = recipe.most_frequent_readings(phrases)
    assert majority == {"银": "yín", "行": "xíng", "走": "zǒu", "人": "rén", "家": "jiā"}
    sources = [("银", "行", "家"), ("行", "家"), ("走", "马")]
    assert recipe.baseline_readings(sources, majority) == [("yín", "xíng", "jiā"), ("xíng", "jiā"), ("zǒu", "?")]
    assert recipe.context_readings(phrases, sources, {**majority, "马": "mǎ"}) == [
        ("yín", "háng", "jiā"), ("xíng", "jiā"), ("zǒu", "mǎ")]


def test_pinyin_recipe_learns_and_reports(small_dictionaries, recorded_losses, tmp_path):
    config = recipe.PinyinConfig(**TINY, steps=40, out=str(tmp_path))
    metrics = RECIPES["transformer-pinyin"].train(config)
    first, last = np.mean(recorded_losses[:5]), np.mean(recorded_losses[-5:])
    assert len(recorded_losses) == 40 and last < 0.7 * first, f"loss went from {first:.4g} to {last:.4g}"
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == metrics
    for key in ("syllable_accuracy", "phrase_accuracy", "baseline_syllable_accuracy", "baseline_phrase_accuracy",
                "lexicon_baseline_syllable_accuracy", "lexicon_baseline_phrase_accuracy",
                "context_baseline_syllable_accuracy", "context_baseline_phrase_accuracy", "unseen_character_fraction",
                "unseen_character_fraction_with_lexicon", "train_seconds"):
        assert 0 <= written[key] and (key == "train_seconds" or written[key] <= 1)
    assert "我爱吃火锅" in written["probes"] and written["character_lexicon"] > 0
    assert all(len(out.split()) == len(probe) for probe, out in written["probes"].items())  # one per character
    examples = json.loads((tmp_path / "examples.json").read_text())
    assert {"probes", "polyphonic", "sandhi_yi_bu", "neutral_tone"} <= examples.keys()
    evaluated = RECIPES["transformer-pinyin"].evaluate(str(tmp_path))
    assert evaluated["syllable_accuracy"] == pytest.approx(metrics["syllable_accuracy"])
    with pytest.raises(io.CheckpointError, match="was trained by recipe transformer-pinyin, not transformer-g2p"):
        RECIPES["transformer-g2p"].evaluate(str(tmp_path))
    pytest.importorskip("matplotlib")  # the figures: attention maps of 我爱吃火锅 and the position table
    for name in ("attention_encoder.png", "attention_decoder.png", "attention_cross.png", "positional_encoding.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_g2p_recipe_learns_and_reports(small_dictionaries, recorded_losses, tmp_path):
    config = recipe.G2PConfig(**TINY, steps=40, beam_width=2, out=str(tmp_path))
    metrics = RECIPES["transformer-g2p"].train(config)
    first, last = np.mean(recorded_losses[:5]), np.mean(recorded_losses[-5:])
    assert last < 0.7 * first, f"loss went from {first:.4g} to {last:.4g}"
    assert 0 <= metrics["wer"] <= 1 and 0 <= metrics["per"] and metrics["train_seconds"] > 0
    assert metrics["stress"] is False and metrics["decoding"] == "beam 2"
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


def test_aligned_memory_is_refused_where_output_and_input_lengths_differ(small_dictionaries):
    config = recipe.G2PConfig(aligned_memory=True)
    with pytest.raises(ValueError, match="aligned_memory needs one output token per source token"):
        recipe.build_model(config, recipe.g2p_data(config))


def test_max_minutes_stops_training_and_still_evaluates(small_dictionaries, recorded_losses, tmp_path, monkeypatch):
    monkeypatch.setattr("scratchzoo.recipes.transformer.draw_figures", lambda *args: None)  # drawn elsewhere
    config = recipe.PinyinConfig(**{**TINY, "max_minutes": 1e-9}, steps=40, out=str(tmp_path))
    metrics = RECIPES["transformer-pinyin"].train(config)
    assert metrics["steps_done"] == 0 and not recorded_losses and "syllable_accuracy" in metrics
    assert io.load_checkpoint(tmp_path).step == 0


def test_resume_is_bit_identical(small_dictionaries, tmp_path, monkeypatch):
    n = 4
    monkeypatch.setattr("scratchzoo.recipes.transformer.draw_figures", lambda *args: None)  # not under test here
    options = {**TINY, "steps": 2 * n, "checkpoint_every": n}
    straight, crashed, resumed = tmp_path / "straight", tmp_path / "crashed", tmp_path / "resumed"
    train = RECIPES["transformer-pinyin"].train
    train(recipe.PinyinConfig(**options, out=str(straight)))

    original, calls = Seq2SeqTransformer.loss, []

    def dying(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == n + 1:
            raise SimulatedCrash(f"killed during step {n + 1}")
        return original(self, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(Seq2SeqTransformer, "loss", dying)
        with pytest.raises(SimulatedCrash):
            train(recipe.PinyinConfig(**options, out=str(crashed)))
    assert io.load_checkpoint(crashed).step == n

    train(recipe.PinyinConfig(**options, resume=str(crashed), out=str(resumed)))
    a, b = io.load_checkpoint(straight), io.load_checkpoint(resumed)
    assert a.step == b.step == 2 * n
    for key in a.model_state:
        assert np.array_equal(a.model_state[key], b.model_state[key]), key
    for index, state in a.optimizer_state["state"].items():
        for name, value in state.items():
            assert np.array_equal(value, b.optimizer_state["state"][index][name]), (index, name)
    assert a.rng_state == b.rng_state and a.extra["scheduler"] == b.extra["scheduler"]
