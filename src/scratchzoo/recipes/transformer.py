"""Transformer sequence-to-sequence recipes (models/transformer.py, Seq2SeqTransformer).

transformer-pinyin: Chinese phrase -> tone-marked pinyin, one syllable per character, from pypinyin's phrase
dictionary (47,111 phrases; the first listed reading of each character). A deterministic 10% of the phrases
is held out (data/seq2seq.py, split_keys with SPLIT_SEED). With `character_lexicon` (default) pypinyin's
single-character dictionary joins the training side as 20,924 one-character pairs (no phrase, so the split
does not move). With `subphrases` (off by default) every shorter stretch of a training phrase is one more
pair (subphrase_pairs). With `aligned_memory` (default) decoder position t also reads the encoding of character
t. Decoding emits exactly one syllable per character (`output_lengths`). metrics.json, all on
the held-out split: syllable_accuracy and phrase_accuracy of the model; of the per-character baseline (every
character its most frequent reading in the training phrases; it cannot tell 行 in 行走 xíng from 银行 háng,
nor apply the sandhi of 一 and 不), alone and with the lexicon for characters the phrases lack; of a context
lookup (each character read as in the longest stretch of characters that training phrases share with the
input); the fraction of held-out syllables whose character no training phrase has; the model's accuracy on
the syllables the per-character baseline gets wrong; probes (银行, 行走, 一个, 不是, ..., 我爱吃火锅).
examples.json lists held-out cases where context decides.
Target: syllable accuracy >= 97%, phrase exact match >= 90%. Measured 2026-11-27 (the defaults, 9.9M
parameters, 9000 steps, 50 min on the shared 2-core machine, 1 BLAS thread; seeds 0 and 1 alike): 96.2%
syllables / 89.2% phrases, against 94.3% / 84.4% per character (95.1% / 86.1% with the lexicon) and
96.4% / 89.6% for the context lookup. NOT met. Without aligned memory: 95.7% / 88.4%, 42 of its errors
another character's reading (the decoder lost its place); with it, none. The model learns its training
phrases (99.4% / 98.4% without aligned memory) but generalises no better than a lookup: the dictionary is
inconsistent where context would have to decide (2.8% of the occurrences of a character pair found in
several phrases are read unlike that pair's majority: 一个 yí gè 4 times and yī gè 6; 不见 bú/bù jiàn 7/13),
and 367 of the 544 held-out errors are the right syllable with the wrong tone. `--subphrases` (the
lookup's statistics as training pairs) did not help: 95.6% / 87.9% without aligned memory, 96.2% / 89.1%
with it; nor did dropout 0.1 / 0.2 (96.2% / 89.1%, 96.3% / 89.4%) or an ensemble of two or four models
(96.4% / 89.7-89.8%). Nor does size: PyTorch encoder taggers on this split (benchmarks/pinyin_reference.py),
8.9M to 74M parameters trained 30-60 epochs on an H100, all ended at 96.1-96.3% / 89.0-89.4%. The split is
typical: over split seeds 0-7 the per-character baseline scores 94.2-94.6% / 83.8-84.8% (the issue's 94.6% /
84.7% at the top) and the context lookup 96.1-96.6% / 89.1-90.1%.

transformer-g2p: English spelling -> ARPAbet phonemes from cmudict (~126k words; a deterministic 10% of the
words held out). Stress digits are stripped by default (`stress=False`, AH0/AH1/AH2 -> AH, 39 phonemes): the
classic CMUdict G2P benchmarks (joint-sequence models, LSTM and Transformer seq2seq) report error rates on
the stress-free phoneme set, so only that setting compares with their 20-25% WER / 5-6% PER; stress is a
separate, harder prediction (it depends on the whole word and on morphology). Every listed pronunciation of a
training word is a training pair; on the test side any listed pronunciation counts as correct:
    WER = words whose output equals none of their pronunciations / words,
    PER = sum over words of edit distance to the closest pronunciation / sum of that pronunciation's length.
Target: WER <= 30%, PER <= 8% with at most 60 minutes of training (`max_minutes`). Measured 2026-11-27 (the
defaults: 18,000 steps of 64 words, 9.5 epochs, 1.13M parameters, 40.3 min of training on the shared
2-core machine, 1 BLAS thread): WER 29.7%, PER 7.3% with beam 4; 15,000 steps gave 30.4% / 7.5%
(greedy: 31.1% / 7.7%; beam 8 = beam 4). Both targets met; published CMUdict systems, each on its own split and trained far longer, report
roughly 20-25% WER and 5-6% PER.

Training (both): AdamW (betas 0.9, 0.98; weight decay on matrices only), linear warmup then cosine decay
(optim/lr_scheduler.py, warmup_cosine), label smoothing, global gradient-norm clipping. Batches are
length-bucketed (data/seq2seq.py, length_buckets): sequences of equal length share a batch, so almost no
compute goes into padding. Every `evaluate_every` steps ~`monitor_size` evenly spread held-out items are
decoded for the curves (never used to choose a checkpoint). Checkpoints every `checkpoint_every` steps hold model,
optimizer, schedule, RNG state and the training seconds so far, so `--resume DIR` continues exactly as if
never stopped (the batches of epoch e are a function of (seed, e)). `max_minutes` stops training once that
much wall-clock time has been spent on steps (resumed time included), checkpoints and evaluates.

Figures (matplotlib optional, viz/transformer.py): encoder self-attention, decoder self-attention (the causal
triangle) and cross-attention of every layer and head for one example, and the sinusoidal position table.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from scratchzoo import io, rng
from scratchzoo.autograd import no_grad
from scratchzoo.data import seq2seq
from scratchzoo.data.seq2seq import EncodedPairs, Tokens, Vocab
from scratchzoo.metrics import token_sequence_accuracy, word_phoneme_error_rates
from scratchzoo.models.transformer import Seq2SeqConfig, Seq2SeqTransformer
from scratchzoo.optim import AdamW
from scratchzoo.optim.lr_scheduler import LambdaLR, warmup_cosine
from scratchzoo.recipes import common

SPLIT_SEED = 0  # the held-out split does not move with the training seed


# ============================================================================ configuration


@dataclass
class Seq2SeqRecipeConfig:
    """Fields shared by both recipes; the defaults of each recipe's subclass are the measured configuration."""
    d_model: int = 256
    nhead: int = 4
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dim_feedforward: int = 1024
    dropout: float = 0.1
    max_len: int = 64  # positions in the model's table; longer than any phrase or word here
    aligned_memory: bool = False  # decoder input t also gets the encoding of source token t (1:1 tasks only)
    batch_size: int = 128  # sequences per step (length-bucketed)
    steps: int = 4000
    lr: float = 1e-3  # peak, after warmup; cosine decay to 0 at `steps`
    warmup_steps: int = 400
    weight_decay: float = 0.01  # AdamW, on weight matrices only (not biases, LayerNorm)
    label_smoothing: float = 0.1
    clip: float = 1.0  # max global gradient norm
    test_fraction: float = 0.1
    seed: int = 0
    beam_width: int = 1  # 1: greedy decoding for the held-out figures
    evaluate_every: int = 500  # decode ~`monitor_size` spread held-out items for the curves; 0: never
    monitor_size: int = 500
    eval_batch_size: int = 500
    checkpoint_every: int = 500  # 0: only at the end
    max_minutes: float | None = None  # wall-clock budget for the training steps; None: no limit
    out: str | None = None
    resume: str | None = None  # a checkpoint directory to continue from


@dataclass
class PinyinConfig(Seq2SeqRecipeConfig):
    """transformer-pinyin. Phrases are short (2-4 characters mostly): with the lexicon an epoch is 495 steps of
    128 pairs. The encoder carries the context (which neighbour makes 行 háng), so it gets the layers; the
    decoder only has to copy one aligned reading per position, and aligned_memory hands it that alignment (it
    learns in 1500 steps what took 5000 without, and never loses its place in a long phrase). Without dropout the model learns its training
    phrases: 99.4% of their syllables (dropout 0.1, 2 decoder layers, 8000 steps: 96.4%, and 95.5% held out)."""
    d_model: int = 256
    num_encoder_layers: int = 4
    num_decoder_layers: int = 1
    dim_feedforward: int = 1024
    dropout: float = 0.0
    steps: int = 9000  # 18 epochs: characters seen once in training need many passes to be remembered
    lr: float = 1e-3
    warmup_steps: int = 300
    max_minutes: float | None = 80.0
    aligned_memory: bool = True  # one syllable per character: decoder position t reads character t's encoding
    character_lexicon: bool = True  # add pypinyin's single-character readings as one-character training pairs
    subphrases: bool = False  # every shorter stretch of a training phrase as a pair too (measured: no gain)


@dataclass
class G2PConfig(Seq2SeqRecipeConfig):
    """transformer-g2p. ~121k training pairs of ~16 tokens (letters + phonemes): 1897 steps an epoch of 64.
    Sized for the 60-minute budget on a shared 2-core machine: a training run sees only a few epochs, so
    a small model (~1.1M parameters) without dropout (it underfits, not overfits, in that time) learns the
    most per second."""
    stress: bool = False  # keep ARPAbet stress digits (AH0/AH1/AH2); see the module docstring
    d_model: int = 128
    num_encoder_layers: int = 3
    num_decoder_layers: int = 2
    dim_feedforward: int = 512
    dropout: float = 0.0
    batch_size: int = 64  # more updates per epoch: with only a few epochs, that learns more than bigger batches
    steps: int = 18000  # 9.5 epochs
    lr: float = 2e-3
    warmup_steps: int = 400
    max_minutes: float | None = 60.0
    beam_width: int = 4  # ~0.5 points of WER over greedy, ~1 minute to decode the 12,605 held-out words


# ============================================================================ data


@dataclass
class Seq2SeqData:
    """Vocabularies, the encoded training pairs and the held-out sources with all their acceptable outputs."""
    src_vocab: Vocab
    tgt_vocab: Vocab
    train: EncodedPairs
    test_sources: list[Tokens]
    test_references: list[list[Tokens]]
    extra_pairs: dict[str, Tokens] = dataclasses.field(default_factory=dict)  # lexicon etc.: the last rows of train
    one_per_source_token: bool = False  # every output has exactly one token per source token (pinyin)


def build_data(references: dict[str, list[Tokens]], test_fraction: float,
               extra_train: Callable[[list[str]], dict[str, Tokens]] | None = None) -> Seq2SeqData:
    """Split the keys (phrases, words), build the vocabularies from the training side and encode every
    (source, reference) pair; a key's characters are its source tokens. `extra_train(train_keys)` gives
    more pairs (a lexicon, subphrases) that join the training side only; it sees the training keys alone,
    and the split is drawn from `references` alone, so the held-out side neither moves nor leaks."""
    train_keys, test_keys = seq2seq.split_keys(references, test_fraction, SPLIT_SEED)
    extra = extra_train(train_keys) if extra_train else {}
    pairs = [(tuple(key), target) for key in train_keys for target in references[key]]
    pairs += [(tuple(key), target) for key, target in sorted(extra.items())]
    src_vocab = Vocab.from_sequences(source for source, _ in pairs)
    tgt_vocab = Vocab.from_sequences(target for _, target in pairs)
    return Seq2SeqData(src_vocab, tgt_vocab, seq2seq.encode_pairs(pairs, src_vocab, tgt_vocab),
                       [tuple(key) for key in test_keys], [references[key] for key in test_keys], extra)


def subphrase_pairs(readings: dict[str, Tokens], phrases: Sequence[str]) -> dict[str, Tokens]:
    """Every stretch of two or more characters inside one of `phrases` and shorter than it, read as it is
    read there (the majority reading where phrases disagree), unless it is a dictionary phrase of its own
    (`readings`' keys: a training phrase is there already, a held-out one must stay unseen). 银行家 gives
    银行 háng, 一个人 gives 一个 yí gè: the context statistics the lookup baseline counts, as pairs a model
    trains on, weighted once per stretch instead of hidden inside longer phrases."""
    votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for phrase in phrases:
        n = len(phrase)
        for length in range(2, n):  # 2 .. n - 1 characters: never the whole phrase
            for i in range(n - length + 1):
                votes[phrase[i:i + length]][readings[phrase][i:i + length]] += 1
    return {span: majority(v) for span, v in votes.items() if span not in readings}


def pinyin_data(config: PinyinConfig) -> Seq2SeqData:
    """Characters -> syllables; one reference per phrase. With `character_lexicon`, every character of the
    single-character dictionary is one more (one-character) training pair; with `subphrases`, every shorter
    stretch of a training phrase (subphrase_pairs) is one more pair."""
    readings = seq2seq.pinyin_readings()
    lexicon = seq2seq.pinyin_character_readings() if config.character_lexicon else {}

    def extra_train(train_keys: list[str]) -> dict[str, Tokens]:
        return {**lexicon, **(subphrase_pairs(readings, train_keys) if config.subphrases else {})}

    data = build_data({phrase: [syllables] for phrase, syllables in readings.items()}, config.test_fraction,
                      extra_train)
    return dataclasses.replace(data, one_per_source_token=True)


def g2p_data(config: G2PConfig) -> Seq2SeqData:
    """Letters -> phonemes; every listed pronunciation is a reference."""
    return build_data(seq2seq.cmudict_pronunciations(config.stress), config.test_fraction)


# ============================================================================ model, optimizer, schedule


def build_model(config: Seq2SeqRecipeConfig, data: Seq2SeqData) -> Seq2SeqTransformer:
    if config.aligned_memory and not data.one_per_source_token:
        raise ValueError("aligned_memory needs one output token per source token (transformer-pinyin); "
                         "here outputs and inputs differ in length")
    return Seq2SeqTransformer(Seq2SeqConfig(
        src_vocab_size=len(data.src_vocab), tgt_vocab_size=len(data.tgt_vocab), d_model=config.d_model,
        nhead=config.nhead, num_encoder_layers=config.num_encoder_layers,
        num_decoder_layers=config.num_decoder_layers, dim_feedforward=config.dim_feedforward,
        dropout=config.dropout, max_len=config.max_len, aligned_memory=config.aligned_memory, pad_id=seq2seq.PAD,
        bos_id=seq2seq.BOS, eos_id=seq2seq.EOS))


def build_optimizer(model: Seq2SeqTransformer, config: Seq2SeqRecipeConfig) -> tuple[AdamW, LambdaLR]:
    """AdamW with weight decay on matrices only (decaying LayerNorm gains or biases towards 0 only hurts),
    betas (0.9, 0.98) as in the Transformer paper, and warmup + cosine decay."""
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = AdamW(groups, lr=config.lr, betas=(0.9, 0.98))
    return optimizer, warmup_cosine(optimizer, config.warmup_steps, config.steps)


# ============================================================================ decoding and scoring


@no_grad()
def decode(model: Seq2SeqTransformer, sources: Sequence[Tokens], data: Seq2SeqData, beam_width: int = 1,
           batch_size: int = 500) -> list[Tokens]:
    """The model's output tokens for each source, in eval mode. Sources are decoded in batches of similar
    length (sorted), so a batch wastes little on padding, and put back in their original order. Where the
    task fixes the output length (one syllable per character), the decoder emits exactly that many tokens."""
    ids = [data.src_vocab.encode(source) for source in sources]
    order = np.argsort([len(i) for i in ids], kind="stable")
    outputs: list[Tokens] = [()] * len(ids)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        src = seq2seq.pad([ids[r] for r in rows])
        max_len = min(2 * src.shape[1] + 5, model.config.max_len - 2)  # no word here doubles its length
        lengths = np.array([len(ids[r]) for r in rows]) if data.one_per_source_token else None
        if beam_width > 1:
            hyps = model.beam_search(src, beam_width=beam_width, max_len=max_len, output_lengths=lengths)
        else:
            hyps = model.greedy_decode(src, max_len=max_len, output_lengths=lengths)
        for r, hyp in zip(rows, hyps):
            outputs[r] = data.tgt_vocab.decode(hyp)
    return outputs


def pinyin_scores(hypotheses: Sequence[Tokens], references: Sequence[list[Tokens]]) -> dict[str, float]:
    scores = token_sequence_accuracy(hypotheses, [refs[0] for refs in references])
    return {"syllable_accuracy": scores["token_accuracy"], "phrase_accuracy": scores["sequence_accuracy"]}


def g2p_scores(hypotheses: Sequence[Tokens], references: Sequence[list[Tokens]]) -> dict[str, float]:
    return word_phoneme_error_rates(hypotheses, references)


# ============================================================================ the pinyin baseline and examples


def training_phrases(data: Seq2SeqData) -> list[tuple[Tokens, Tokens]]:
    """The split's training pairs as tokens, the extra rows (lexicon, subphrases) left out."""
    return [(data.src_vocab.decode(data.train.src[row]), data.tgt_vocab.decode(data.train.tgt[row]))
            for row in range(len(data.train) - len(data.extra_pairs))]


def majority(votes: collections.Counter) -> str:
    """The most frequent reading; ties go to the alphabetically first, so the result never depends on order."""
    return min(votes, key=lambda reading: (-votes[reading], reading))


def most_frequent_readings(phrases: Sequence[tuple[Tokens, Tokens]]) -> dict[str, str]:
    """character -> its most frequent syllable over the phrases."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for source, target in phrases:
        for char, syllable in zip(source, target):
            counts[char][syllable] += 1
    return {char: majority(c) for char, c in counts.items()}


def baseline_readings(sources: Sequence[Tokens], readings: dict[str, str]) -> list[Tokens]:
    """Each character read on its own; a character never seen in training gets no syllable ('?')."""
    return [tuple(readings.get(char, "?") for char in source) for source in sources]


def context_readings(phrases: Sequence[tuple[Tokens, Tokens]], sources: Sequence[Tokens],
                     fallback: dict[str, str], longest: int = 6) -> list[Tokens]:
    """A lookup that uses context without learning: each character is read as it is in the longest stretch
    of 2 to `longest` characters around it that training phrases also contain (the majority reading over
    all such stretches of that length); with none, `fallback`'s reading. 银行家 finds 银行 and reads háng.
    A model that resolves context should beat it, not just the per-character baseline."""
    seen: dict[Tokens, collections.Counter] = collections.defaultdict(collections.Counter)
    for source, target in phrases:
        for i in range(len(source)):
            for j in range(i + 2, min(len(source), i + longest) + 1):
                seen[source[i:j]][target[i:j]] += 1
    outputs = []
    for source in sources:
        readings = []
        for k, char in enumerate(source):
            choice = fallback.get(char, "?")
            for n in range(min(len(source), longest), 1, -1):
                votes: collections.Counter = collections.Counter()
                for i in range(max(0, k - n + 1), min(k, len(source) - n) + 1):  # stretches of n covering k
                    for reading, count in seen.get(source[i:i + n], {}).items():
                        votes[reading[k - i]] += count
                if votes:
                    choice = majority(votes)
                    break
            readings.append(choice)
        outputs.append(tuple(readings))
    return outputs


PINYIN_PROBES = ("银行", "行走", "行业", "一个", "一起", "一天", "一样", "不是", "不要", "不对", "不好",
                 "东西", "朋友", "我爱吃火锅")
G2P_PROBES = ("through", "though", "tough", "cough", "bough", "colonel", "transformer", "pinyin", "scratchzoo")


def context_examples(data: Seq2SeqData, hypotheses: Sequence[Tokens], baseline: Sequence[Tokens],
                     per_kind: int = 12) -> dict[str, list[dict[str, Any]]]:
    """Held-out phrases where reading each character on its own is not enough, grouped by why:

    'polyphonic': a character whose reading here differs from its most frequent one (银行's 行);
    'sandhi_yi_bu': phrases with 一 or 不 (their tone changes with the next syllable's);
    'neutral_tone': a reference syllable without a tone mark (东西's xi).
    Each entry: phrase, reference, model and baseline readings, and whether the model got it right.
    """
    kinds: dict[str, list[dict[str, Any]]] = {"polyphonic": [], "sandhi_yi_bu": [], "neutral_tone": []}
    for source, refs, hyp, base in zip(data.test_sources, data.test_references, hypotheses, baseline):
        ref = refs[0]
        entry = {"phrase": "".join(source), "reference": " ".join(ref), "model": " ".join(hyp),
                 "baseline": " ".join(base), "model_correct": tuple(hyp) == tuple(ref)}
        if any(b != r and b != "?" and c not in "一不" for c, b, r in zip(source, base, ref)):
            kinds["polyphonic"].append(entry)
        if any(c in "一不" for c in source) and tuple(base) != tuple(ref):
            kinds["sandhi_yi_bu"].append(entry)
        if any(all(ch.isascii() or ch == "ü" for ch in r) for r in ref):  # no tone mark: neutral tone
            kinds["neutral_tone"].append(entry)
    return {kind: entries[:per_kind] for kind, entries in kinds.items()}


def probe_lines(model: Seq2SeqTransformer, data: Seq2SeqData, probes: Sequence[str], separator: str = " "
                ) -> dict[str, str]:
    """word -> the model's output for a few fixed inputs (in or out of the training split)."""
    outputs = decode(model, [tuple(p) for p in probes], data)
    return {probe: separator.join(out) for probe, out in zip(probes, outputs)}


# ============================================================================ training


@dataclass
class Task:
    """What differs between the two recipes: name, data, scoring and the report."""
    name: str
    config_class: type
    load: Callable[[Any], Seq2SeqData]
    score: Callable[[Sequence[Tokens], Sequence[list[Tokens]]], dict[str, float]]
    report: Callable[[Seq2SeqTransformer, Seq2SeqData, list[Tokens], Path, Any], dict[str, Any]]
    figure_source: str  # the example whose attention maps are drawn


def train_seq2seq(config: Seq2SeqRecipeConfig, task: Task) -> dict[str, Any]:
    rng.manual_seed(config.seed)
    data = task.load(config)
    model = build_model(config, data)
    optimizer, scheduler = build_optimizer(model, config)
    run_dir = common.run_directory(task.name, config.out)
    start, spent, last_saved = 0, 0.0, None

    def save(step: int, train_seconds: float) -> None:  # the seconds so far: max_minutes counts them across resumes
        common.save(run_dir, model, optimizer, step, config, scheduler, recipe=task.name,
                    extra={"train_seconds": train_seconds})

    if config.resume:
        checkpoint = common.resume_from(config.resume, task.name, model, optimizer, scheduler)
        start, spent = checkpoint.step, float(checkpoint.extra.get("train_seconds", 0.0))
        last_saved = (start, config.resume)
    lengths = data.train.src_lengths + data.train.tgt_lengths  # bucket by total work per row
    per_epoch = seq2seq.batches_per_epoch(len(data.train), config.batch_size)
    budget = math.inf if config.max_minutes is None else 60.0 * config.max_minutes
    losses: list[float] = []
    evaluations: dict[str, list[tuple[int, float]]] = {}
    batches, batches_epoch, step = None, -1, start
    began = time.perf_counter() - spent  # the clock runs on from where the resumed run stopped
    model.train()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc=run_dir.name, dynamic_ncols=True,
               mininterval=10)
    for step in bar:
        if time.perf_counter() - began >= budget:
            break
        epoch, position = divmod(step, per_epoch)
        if epoch != batches_epoch:
            batches, batches_epoch = seq2seq.length_buckets(lengths, config.batch_size, config.seed, epoch), epoch
        src, tgt = data.train.batch(batches[position])
        loss = model.loss(src, tgt, label_smoothing=config.label_smoothing)
        value = loss.item()
        common.check_finite(value, step, last_saved)
        common.optimization_step(loss, model, optimizer, scheduler, config.clip)
        losses.append(value)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        done = step + 1
        if config.evaluate_every and done % config.evaluate_every == 0:
            # every k-th held-out item: the split is sorted, so its first items would all start with "a"
            monitored = slice(None, None, max(1, len(data.test_sources) // config.monitor_size))
            hyps = decode(model, data.test_sources[monitored], data,
                          batch_size=config.eval_batch_size)
            for name, metric in task.score(hyps, data.test_references[monitored]).items():
                evaluations.setdefault(name, []).append((done, metric))
            bar.write(f"step {done}: " + ", ".join(f"{k} {v[-1][1]:.4f}" for k, v in evaluations.items()))
        if config.checkpoint_every and done % config.checkpoint_every == 0:
            save(done, time.perf_counter() - began)
            last_saved = (done, run_dir)
    else:  # no break: every step ran (or none was left to run)
        step = max(config.steps, start)
    bar.close()
    train_seconds = time.perf_counter() - began
    save(step, train_seconds)  # where training stopped
    evaluated = time.perf_counter()
    hypotheses = decode(model, data.test_sources, data, config.beam_width,
                        config.eval_batch_size)
    metrics: dict[str, Any] = {**task.score(hypotheses, data.test_references), "train_seconds": train_seconds,
                               "steps_done": step, "eval_seconds": time.perf_counter() - evaluated,
                               "decoding": "greedy" if config.beam_width <= 1 else f"beam {config.beam_width}",
                               "train_pairs": len(data.train), "test_items": len(data.test_sources),
                               "parameters": sum(p.data.size for p in model.parameters())}
    metrics.update(task.report(model, data, hypotheses, run_dir, config))
    draw_figures(model, data, task.figure_source, run_dir)
    return common.finish(run_dir, metrics, losses, evaluations)


def evaluate_seq2seq(ckpt: str, task: Task) -> dict[str, float]:
    """The held-out figures of a checkpoint directory (its config travels with it)."""
    checkpoint = common.read_checkpoint(ckpt, task.name)
    config = common.config_from_dict(task.config_class, checkpoint.extra.get("config", {}))
    data = task.load(config)
    with common.restoring(ckpt, task.name):
        model = build_model(config, data)
        model.load_state_dict(checkpoint.model_state)
    hypotheses = decode(model, data.test_sources, data, config.beam_width,
                        config.eval_batch_size)
    return task.score(hypotheses, data.test_references)


# ============================================================================ reports and figures


def pinyin_report(model: Seq2SeqTransformer, data: Seq2SeqData, hypotheses: list[Tokens], run_dir: Path,
                  config: PinyinConfig) -> dict[str, Any]:
    """Baseline figures, unseen characters, the model where the baseline fails, probes and examples.json."""
    references = data.test_references
    phrases = training_phrases(data)
    by_phrases = most_frequent_readings(phrases)
    baseline = baseline_readings(data.test_sources, by_phrases)  # the training phrases alone
    lexicon = {key: reading[0] for key, reading in data.extra_pairs.items() if len(key) == 1}
    lexicon_fallback = {**lexicon, **by_phrases}
    with_lexicon = pinyin_scores(baseline_readings(data.test_sources, lexicon_fallback), references)
    in_context = pinyin_scores(context_readings(phrases, data.test_sources, lexicon_fallback), references)
    base = pinyin_scores(baseline, references)
    chars = [c for source in data.test_sources for c in source]
    refs = [s for r in references for s in r[0]]
    model_flat = [hyp[i] if i < len(hyp) else None for hyp, src in zip(hypotheses, data.test_sources)
                  for i in range(len(src))]
    base_flat = [s for b in baseline for s in b]
    hard = [i for i, (b, r, c) in enumerate(zip(base_flat, refs, chars)) if b != r and c in by_phrases]
    probes = probe_lines(model, data, PINYIN_PROBES)
    examples = context_examples(data, hypotheses, baseline)
    io.write_json(run_dir / "examples.json", {"probes": probes, **examples})
    for kind, entries in examples.items():
        print(f"-- {kind} (held-out)")
        for e in entries[:6]:
            print(f"   {e['phrase']}: model {e['model']} | baseline {e['baseline']} | reference {e['reference']}")
    print("-- probes: " + "; ".join(f"{k} -> {v}" for k, v in probes.items()))
    return {"baseline_syllable_accuracy": base["syllable_accuracy"],
            "baseline_phrase_accuracy": base["phrase_accuracy"],
            "lexicon_baseline_syllable_accuracy": with_lexicon["syllable_accuracy"],
            "lexicon_baseline_phrase_accuracy": with_lexicon["phrase_accuracy"],
            "context_baseline_syllable_accuracy": in_context["syllable_accuracy"],
            "context_baseline_phrase_accuracy": in_context["phrase_accuracy"],
            "character_lexicon": len(lexicon),
            "subphrase_pairs": len(data.extra_pairs) - len(lexicon),
            "unseen_character_fraction": sum(c not in by_phrases for c in chars) / len(chars),
            "unseen_character_fraction_with_lexicon": sum(c not in data.src_vocab.index for c in chars) / len(chars),
            "syllable_accuracy_where_baseline_wrong": (sum(model_flat[i] == refs[i] for i in hard) / len(hard)
                                                       if hard else float("nan")),
            "probes": probes}


def g2p_report(model: Seq2SeqTransformer, data: Seq2SeqData, hypotheses: list[Tokens], run_dir: Path,
               config: G2PConfig) -> dict[str, Any]:
    """Probes and the first held-out words (right and wrong) in examples.json."""
    probes = probe_lines(model, data, G2P_PROBES)
    words = [{"word": "".join(source), "model": " ".join(hyp), "references": [" ".join(r) for r in refs],
              "correct": tuple(hyp) in {tuple(r) for r in refs}}
             for source, refs, hyp in zip(data.test_sources[:40], data.test_references[:40], hypotheses[:40])]
    io.write_json(run_dir / "examples.json", {"probes": probes, "held_out": words})
    print("-- probes: " + "; ".join(f"{k} -> {v}" for k, v in probes.items()))
    return {"stress": config.stress, "phoneme_set": f"{len(data.tgt_vocab) - len(seq2seq.SPECIALS)} ARPAbet symbols",
            "probes": probes}


@no_grad()
def draw_figures(model: Seq2SeqTransformer, data: Seq2SeqData, source: str, run_dir: Path) -> None:
    """Attention maps of one example (the model's own output fed back as the decoder input) and the
    positional-encoding table, when matplotlib is installed."""
    from scratchzoo.viz.transformer import plot_attention, plot_positional_encoding  # optional, imported late
    output = decode(model, [tuple(source)], data)[0]
    src = np.array([data.src_vocab.encode(tuple(source))])
    tgt_in = np.array([[seq2seq.BOS] + data.tgt_vocab.encode(output)])
    maps = model.attention_maps(src, tgt_in)
    plot_attention(maps, list(source), ["<bos>", *output], run_dir)
    plot_positional_encoding(run_dir / "positional_encoding.png", model.config.max_len, model.config.d_model)


PINYIN = Task("transformer-pinyin", PinyinConfig, pinyin_data, pinyin_scores, pinyin_report, "我爱吃火锅")
G2P = Task("transformer-g2p", G2PConfig, g2p_data, g2p_scores, g2p_report, "transformer")

TRANSFORMER_PINYIN = common.Recipe(
    "transformer-pinyin", "Transformer: Chinese phrase -> tone-marked pinyin (target: syllables >= 97%, "
    "phrases >= 90%, beside the most-frequent-reading baseline)", PinyinConfig,
    lambda config: train_seq2seq(config, PINYIN), lambda ckpt: evaluate_seq2seq(ckpt, PINYIN),
    extra_check=lambda name, config: common.check_multiple(name, config, "d_model", "nhead"))
TRANSFORMER_G2P = common.Recipe(
    "transformer-g2p", "Transformer: English spelling -> ARPAbet phonemes, cmudict (target: WER <= 30%, "
    "PER <= 8% in <= 60 min)", G2PConfig,
    lambda config: train_seq2seq(config, G2P), lambda ckpt: evaluate_seq2seq(ckpt, G2P),
    extra_check=lambda name, config: common.check_multiple(name, config, "d_model", "nhead"))
