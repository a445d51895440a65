"""How far a PyTorch model gets on transformer-pinyin's exact split, with as much compute as you give it.

    python benchmarks/pinyin_reference.py --d-model 512 --layers 6 --dropout 0.1 --epochs 30 --device cuda

This is the reference for that recipe's target (syllable accuracy >= 97%, phrase exact match >= 90%), not a
speed benchmark. The data is the recipe's own (recipes/transformer.py, pinyin_data with PinyinConfig's
defaults: the same held-out 10% of phrases, the character lexicon on the training side), scored by the
recipe's pinyin_scores. The model is the strongest simple form of the task: since every character has
exactly one syllable, an encoder tagger (token + learned position embeddings, a pre-LN
nn.TransformerEncoder with GELU, a final LayerNorm, one linear layer to the syllable vocabulary) reads the
whole phrase in both directions and classifies each position. Training: AdamW (betas 0.9, 0.98; weight
decay on matrices only), linear warmup then cosine decay, label smoothing 0.1, gradient clipping at 1.0,
shuffled batches. It prints the held-out figures five times during training and once at the end (the
final figure is the result; nothing picks a checkpoint on the held-out split).
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from scratchzoo.data import seq2seq
from scratchzoo.recipes.transformer import PinyinConfig, pinyin_data, pinyin_scores


class Tagger(torch.nn.Module):
    """syllable logits[n, t] = Linear(LayerNorm(Encoder(sqrt(d) * E[char] + P[t])))."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int, layers: int, heads: int, dropout: float,
                 max_len: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.embed = torch.nn.Embedding(src_vocab, d_model, padding_idx=seq2seq.PAD)
        self.position = torch.nn.Embedding(max_len, d_model)
        self.dropout = torch.nn.Dropout(dropout)
        layer = torch.nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout, activation="gelu",
                                                 batch_first=True, norm_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(d_model)
        self.head = torch.nn.Linear(d_model, tgt_vocab)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(src.shape[1], device=src.device)
        x = self.dropout(self.embed(src) * math.sqrt(self.d_model) + self.position(positions))
        return self.head(self.norm(self.encoder(x, src_key_padding_mask=src == seq2seq.PAD)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    data = pinyin_data(PinyinConfig())
    train = data.train
    width = train.src.shape[1]
    # targets are [BOS, syllables..., EOS, PAD...]: one syllable per source character, so drop BOS and keep
    # the positions that hold a character (PAD elsewhere, which the loss ignores)
    targets = np.where(np.arange(width)[None, :] < train.src_lengths[:, None], train.tgt[:, 1:1 + width],
                       seq2seq.PAD)
    src, tgt = torch.from_numpy(train.src).to(device), torch.from_numpy(targets).to(device)
    test_src = torch.from_numpy(seq2seq.pad([data.src_vocab.encode(s) for s in data.test_sources])).to(device)
    max_len = max(width, test_src.shape[1])

    model = Tagger(len(data.src_vocab), len(data.tgt_vocab), args.d_model, args.layers, args.heads, args.dropout,
                   max_len).to(device)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim >= 2], "weight_decay": args.weight_decay},
         {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    per_epoch = len(src) // args.batch_size
    total = per_epoch * args.epochs
    warmup = max(1, min(1000, total // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))))

    @torch.no_grad()
    def held_out() -> dict[str, float]:
        model.eval()
        predicted = model(test_src).argmax(-1).cpu().numpy()
        model.train()
        # one token per character, specials included (they never match), so positions stay aligned
        hypotheses = [tuple(data.tgt_vocab.tokens[i] for i in row[:len(source)])
                      for row, source in zip(predicted, data.test_sources)]
        return pinyin_scores(hypotheses, data.test_references)

    print(f"{sum(p.numel() for p in params):,} parameters, {len(src):,} training pairs, "
          f"{len(data.test_sources):,} held-out phrases, {args}", flush=True)
    began = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(src), device=device)
        for i in range(per_epoch):
            rows = order[i * args.batch_size:(i + 1) * args.batch_size]
            logits = model(src[rows])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[rows].reshape(-1),
                                                     ignore_index=seq2seq.PAD, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
        if epoch % max(1, args.epochs // 5) == 0 or epoch == args.epochs:
            scores = held_out()
            print(f"epoch {epoch}: syllables {scores['syllable_accuracy']:.4f}, phrases "
                  f"{scores['phrase_accuracy']:.4f}, {time.perf_counter() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
