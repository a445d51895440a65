"""data/seq2seq.py: the two dictionaries, the deterministic split, vocabularies, padding and length buckets."""
from __future__ import annotations

import numpy as np
import pytest

from scratchzoo.data import seq2seq
from scratchzoo.data.seq2seq import BOS, EOS, PAD, UNK, Vocab


def test_vocab_reserves_pad_bos_eos_unk_and_sorts_the_rest():
    vocab = Vocab.from_sequences([("b", "a"), ("c", "a")])
    assert vocab.tokens == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c"]
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3) and len(vocab) == 7
    assert vocab.encode(("c", "z", "a")) == [6, UNK, 4]
    assert vocab.decode([BOS, 5, 4, EOS, PAD]) == ("b", "a")


def test_pad_right_pads_and_wraps_in_bos_eos():
    assert np.array_equal(seq2seq.pad([[5, 6, 7], [8]]), [[5, 6, 7], [8, 0, 0]])
    assert np.array_equal(seq2seq.pad([[5, 6, 7], [8]], bos_eos=True), [[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])
    assert seq2seq.pad([[5]]).dtype == np.int64


def test_split_is_deterministic_disjoint_and_ignores_input_order():
    keys = [f"w{i}" for i in range(1000)]
    train, test = seq2seq.split_keys(keys, 0.1, seed=0)
    assert len(test) == 100 and len(train) == 900 and not set(train) & set(test)
    assert seq2seq.split_keys(reversed(keys), 0.1, seed=0) == (train, test)
    assert seq2seq.split_keys(keys, 0.1, seed=1)[1] != test


def test_length_buckets_cover_every_row_once_with_little_padding():
    lengths = np.random.default_rng(0).integers(2, 20, size=1000)
    batches = seq2seq.length_buckets(lengths, 32, seed=0, epoch=0)
    assert len(batches) == seq2seq.batches_per_epoch(1000, 32) == 32
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    spread = [lengths[b].max() - lengths[b].min() for b in batches]
    assert max(spread) <= 1  # 1000 rows over 18 lengths: a batch of 32 spans at most two
    again = seq2seq.length_buckets(lengths, 32, seed=0, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # a resumed run sees the same batches
    other = seq2seq.length_buckets(lengths, 32, seed=0, epoch=1)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))


def test_encoded_batch_is_cut_to_its_longest_rows():
    src, tgt = Vocab("abc"), Vocab("XY")
    pairs = seq2seq.encode_pairs([(("a", "b", "c"), ("X",)), (("a",), ("X", "Y"))], src, tgt)
    assert pairs.src.shape == (2, 3) and pairs.tgt.shape == (2, 4)
    s, t = pairs.batch(np.array([1]))
    assert np.array_equal(s, [[4]]) and np.array_equal(t, [[BOS, 4, 5, EOS]])


def test_pinyin_readings_have_one_syllable_per_character():
    readings = seq2seq.pinyin_readings()
    assert len(readings) == 47111
    assert readings["银行"] == ("yín", "háng") and readings["行走"] == ("xíng", "zǒu")
    assert readings["一个"] == ("yí", "gè") and readings["不是"] == ("bú", "shì")  # sandhi is in the data
    assert all(len(phrase) == len(syllables) for phrase, syllables in readings.items())


@pytest.fixture(scope="module")
def cmu():
    return seq2seq.cmudict_pronunciations()


def test_cmudict_without_stress_has_39_phonemes_and_all_variants(cmu):
    phonemes = {p for prons in cmu.values() for pron in prons for p in pron}
    assert len(phonemes) == 39 and not any(ch.isdigit() for p in phonemes for ch in p)
    assert ("R", "EH", "D") in cmu["read"] and ("R", "IY", "D") in cmu["read"]
    assert all(len(set(prons)) == len(prons) for prons in cmu.values())  # merged duplicates


def test_strip_stress():
    assert [seq2seq.strip_stress(p) for p in ("AH0", "AH1", "EY2", "K")] == ["AH", "AH", "EY", "K"]
