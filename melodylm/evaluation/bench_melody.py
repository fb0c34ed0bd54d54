"""``melodylm bench melody``: NLL per note of a trained LM on a prepared split, next to n-gram baselines.

The LM and the baselines see the same tokens: every piece of the split as
``[BOS] piece [EOS]``, all tokens predicted (bar, position, pitch, duration,
EOS). NLL per note is the summed NLL of a piece's tokens over its notes, so
it pays for rhythm and structure as well as pitch (the IDyOM figures in
BENCHMARKS.md section 2 predict pitch only and are not the same unit).

Baselines, fitted on the training split of the same prepared folder:
unigram with add-``a`` smoothing, and a bigram interpolated with it
(Jelinek-Mercer); ``a`` and the interpolation weight are chosen on the
validation split.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from melodylm.checkpoint import load
from melodylm.data.store import Pieces
from melodylm.data.tokenizer import SpecialIds, fingerprint, load_tokenizer, note_counts
from melodylm.errors import UserError
from melodylm.progress import progress_bar

log = logging.getLogger("melodylm")

ALPHAS = (0.01, 0.1, 0.5, 1.0)
WEIGHTS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)  # bigram share of the interpolation


def framed(pieces: Pieces, special: SpecialIds) -> list[np.ndarray]:
    return [np.concatenate([[special.bos], pieces[i], [special.eos]]).astype(np.int64) for i in range(len(pieces))]


class NGram:
    """Unigram (add-alpha) and bigram interpolated with it, over token ids ``0 .. vocab - 1``."""

    def __init__(self, train: list[np.ndarray], vocab: int):
        self.vocab = vocab
        targets = np.concatenate([s[1:] for s in train])
        self.uni_counts = np.bincount(targets, minlength=vocab).astype(np.float64)
        prev = np.concatenate([s[:-1] for s in train])
        self.bi_counts = np.zeros((vocab, vocab))
        np.add.at(self.bi_counts, (prev, targets), 1.0)

    def unigram(self, alpha: float) -> np.ndarray:
        counts = self.uni_counts + alpha
        return counts / counts.sum()

    def logprobs(self, seq: np.ndarray, alpha: float, weight: float = 0.0) -> np.ndarray:
        """log p of every token after the first (BOS), under the interpolated model (weight 0: unigram)."""
        uni = self.unigram(alpha)
        prev, nxt = seq[:-1], seq[1:]
        p = (1 - weight) * uni[nxt]
        if weight:
            rows = self.bi_counts[prev]
            totals = rows.sum(1)
            bi = np.divide(rows[np.arange(len(nxt)), nxt], totals, out=np.zeros(len(nxt)), where=totals > 0)
            p = p + weight * np.where(totals > 0, bi, uni[nxt])
        return np.log(p)

    def total_nll(self, seqs: list[np.ndarray], alpha: float, weight: float = 0.0) -> float:
        return -float(sum(self.logprobs(s, alpha, weight).sum() for s in seqs))


def add_arguments(m) -> None:
    """The flags of ``melodylm bench melody``."""
    m.add_argument("--ckpt", required=True, help="checkpoint file or run folder")
    m.add_argument("--data", required=True, type=Path, help="the folder written by `melodylm prepare`")
    m.add_argument("--split", default="test", choices=["val", "test"], help="split to report (default test)")
    m.add_argument("--out", type=Path, default=None, help="write the results as JSON here")


def main(args) -> dict:
    return run(args.ckpt, args.data, args.out, split=args.split)


def _row(name: str, nll: float, tokens: int, notes: int, **extra) -> dict:
    return {"model": name, "nll_token": nll / tokens, "nll_note": nll / notes,
            "bits_note": nll / notes / math.log(2), **extra}


def run(ckpt: str | Path, data: str | Path, out: str | Path | None = None, split: str = "test") -> dict:
    """Score ``split`` of the prepared folder ``data`` with the LM and the baselines; write ``out`` (JSON)."""
    data = Path(data)
    if not (data / "tokenizer.json").is_file():
        raise UserError(f"{data} is not a prepared data folder (no tokenizer.json); run `melodylm prepare` first")
    tokenizer = load_tokenizer(data / "tokenizer.json")
    lm = load(ckpt, kinds=("language_model",))
    if fingerprint(lm.tokenizer) != fingerprint(tokenizer):
        raise UserError(f"{ckpt} was trained on another vocabulary than {data}; score it on data prepared alike")
    special = SpecialIds(tokenizer)
    seqs = {s: framed(Pieces(data, s), special) for s in ("train", "val", split)}
    if not seqs[split]:
        raise UserError(f"{data} has no {split} pieces")
    per_id = note_counts(tokenizer)
    test = seqs[split]
    tokens = sum(len(s) - 1 for s in test)
    notes = int(sum(per_id[s].sum() for s in test))

    lm_nll = 0.0
    with progress_bar() as bar:
        task = bar.add_task(f"scoring {split}", total=len(test))
        for start in range(0, len(test), 16):
            chunk = [s[1:-1].tolist() for s in test[start : start + 16]]
            lm_nll -= float(sum(lp.sum() for lp in lm.decoder.token_logprobs(chunk)))
            bar.advance(task, len(chunk))

    ngram = NGram(seqs["train"], len(tokenizer))
    alpha = min(ALPHAS, key=lambda a: ngram.total_nll(seqs["val"], a))
    weight = min(WEIGHTS, key=lambda w: ngram.total_nll(seqs["val"], alpha, w))
    rows = [
        _row("unigram", ngram.total_nll(test, alpha), tokens, notes, alpha=alpha),
        _row("bigram (interpolated)", ngram.total_nll(test, alpha, weight), tokens, notes, alpha=alpha, weight=weight),
        _row(f"LSTM LM ({Path(ckpt).name})", lm_nll, tokens, notes),
    ]
    results = {"data": str(data), "split": split, "pieces": len(test), "tokens": tokens, "notes": notes,
               "checkpoint": str(ckpt), "rows": rows}
    for r in rows:
        log.info("%-28s %.3f nats/token  %.3f nats/note  %.3f bits/note", r["model"], r["nll_token"],
                 r["nll_note"], r["bits_note"])
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        log.info("wrote %s", out)
    return results
