"""``melodylm bench melody``: NLL per note and bits per pitch of a melody LM, next to n-gram baselines.

Two modes. With ``--ckpt``: score one split of a prepared folder (the
Nottingham benchmark). With ``--folds K --config PRESET``: K-fold
cross-validation over every piece of the folder (the Bach chorale benchmark of
Pearce 2005): each fold is scored by an LSTM trained on the other folds and by
n-grams fitted on the same folds (:mod:`melodylm.evaluation.melody_folds`); with
``--seeds N`` by N LSTMs per fold and their ensemble too.

Units. Every piece is ``[BOS] piece [EOS]``. *NLL per note* is the summed NLL
of all its tokens (bar, time signature, position, pitch, duration, EOS) over
its notes: it pays for rhythm as well as pitch. *Bits per pitch* is the NLL of
the ``Pitch_*`` tokens alone over the notes, in bits: for a REMI model each
pitch is predicted given every earlier token, which includes the earlier
notes' pitches and durations and the current note's bar line and position
(its onset and metre) but not its own duration. That is the unit of IDyOM's
figures (BENCHMARKS.md section 2), but not the same context: the pitch-only
n-grams below see the previous pitches and nothing else.

Baselines, fitted on the training pieces, chosen on the validation pieces:
over tokens, an add-``a`` unigram and a bigram interpolated with it
(Jelinek-Mercer); over pitch sequences, interpolated Kneser-Ney of order
1..6 (:mod:`melodylm.evaluation.ngram`), fitted with and without the
transposed training copies; with ``--adapt`` and ``--folds``, also Kneser-Ney
long-term + short-term (IDyOM's counterpart of dynamic evaluation).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from melodylm.checkpoint import load
from melodylm.data.store import Pieces
from melodylm.data.tokenizer import SpecialIds, fingerprint, load_tokenizer, note_counts
from melodylm.errors import UserError
from melodylm.evaluation.ngram import KneserNey, short_term_probs
from melodylm.progress import progress_bar

log = logging.getLogger("melodylm")

ALPHAS = (0.01, 0.1, 0.5, 1.0)
WEIGHTS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)  # bigram share of the interpolation
ORDERS = (1, 2, 3, 4, 5, 6)  # Kneser-Ney orders tried on the validation pieces
ADAPT_LRS = (0.0, 0.03, 0.1, 0.2, 0.3)  # dynamic evaluation's SGD step sizes tried on the validation pieces
ADAPT_CHUNK = 16  # tokens per step (Bach fold 0, inner validation: 8 and 32 were worse at every lr)
STM_WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.5)  # the short-term n-gram's share, tried on the validation pieces
STM_ORDERS = (2, 3, 4, 6)  # the short-term n-gram's orders tried there


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


# --- pitch tokens -----------------------------------------------------------------


class PitchTokens:
    """Where the ``Pitch_*`` tokens of a (non-BPE) tokenizer sit: ``ids[j]`` is the id of the ``j``-th pitch
    (``lowest + j``, MIDI note number); :meth:`sequence` maps a piece to its pitch symbols ``0 .. len - 1``."""

    def __init__(self, tokenizer):
        if tokenizer.is_trained:
            raise UserError("bits per pitch needs a tokenizer without BPE (a merged token hides its pitches)")
        pitches = sorted((int(t.split("_")[1]), i) for t, i in tokenizer.vocab.items() if t.startswith("Pitch_"))
        if not pitches:
            raise UserError("the tokenizer has no Pitch_* tokens")
        self.lowest = pitches[0][0]
        if [p for p, _ in pitches] != list(range(self.lowest, self.lowest + len(pitches))):
            raise UserError("the tokenizer's pitches are not one contiguous range")
        self.ids = np.array([i for _, i in pitches], dtype=np.int64)
        self.symbol = np.full(len(tokenizer), -1, dtype=np.int64)  # token id -> pitch symbol, -1 for the rest
        self.symbol[self.ids] = np.arange(len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, ids: np.ndarray) -> np.ndarray:
        return self.symbol[np.asarray(ids, dtype=np.int64)] >= 0

    def sequence(self, ids: np.ndarray) -> np.ndarray:
        s = self.symbol[np.asarray(ids, dtype=np.int64)]
        return s[s >= 0]

    def transpose(self, ids: np.ndarray, shift: int) -> np.ndarray | None:
        """``ids`` with every pitch moved ``shift`` semitones; None when a pitch would leave the range."""
        ids = np.array(ids, dtype=np.int64)
        where = self.mask(ids)
        moved = self.symbol[ids[where]] + shift
        if len(moved) and (moved.min() < 0 or moved.max() >= len(self)):
            return None
        ids[where] = self.ids[moved]
        return ids


def token_logprobs(lm, pieces: list[np.ndarray], batch: int = 16, label: str = "scoring",
                   adapt_lr: float = 0.0) -> list[np.ndarray]:
    """Per piece (no BOS/EOS in ``pieces``): the LM's log-probability (nats, float64) of each of its tokens and
    then of EOS, each given the tokens before it. With ``adapt_lr`` the LM learns each piece as it reads it
    (dynamic evaluation, :meth:`Decoder.adapted_logprobs`)."""
    out = []
    with progress_bar() as bar, torch.no_grad():
        task = bar.add_task(label, total=len(pieces))
        for start in range(0, len(pieces), batch):
            chunk = [np.asarray(p).tolist() for p in pieces[start : start + batch]]
            scored = ([lm.decoder.adapted_logprobs(ids, adapt_lr, ADAPT_CHUNK) for ids in chunk] if adapt_lr
                      else lm.decoder.token_logprobs(chunk))
            out += [lp.double().numpy() for lp in scored]
            bar.advance(task, len(chunk))
    return out


def mixture(members: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The ensemble of several LMs' :func:`token_logprobs` of the same pieces: each token's probability is the
    mean of the members' probabilities of it. Each step is then a mixture of the members' next-token
    distributions, so the ensemble is itself a language model (its probabilities of every next token sum to 1)."""
    return [np.logaddexp.reduce(np.stack(lps), axis=0) - math.log(len(lps)) for lps in zip(*members)]


def lm_nll(lm, pieces: list[np.ndarray], pitches: PitchTokens | None, batch: int = 16,
           label: str = "scoring", adapt_lr: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Per piece (no BOS/EOS in ``pieces``): the LM's summed NLL (nats) of all its tokens, EOS included, and
    of its ``Pitch_*`` tokens alone (None without ``pitches``); arrays of ``len(pieces)``. ``lm`` is one LM or
    a list of LMs, scored as their :func:`mixture` (with ``adapt_lr``, each member learns the piece on its own)."""
    lms = lm if isinstance(lm, (list, tuple)) else [lm]
    members = [token_logprobs(m, pieces, batch, f"{label} ({i + 1}/{len(lms)})" if len(lms) > 1 else label,
                              adapt_lr) for i, m in enumerate(lms)]
    scored = members[0] if len(members) == 1 else mixture(members)
    total = np.array([-lp.sum() for lp in scored])
    if pitches is None:
        return total, None
    return total, np.array([-lp[:-1][pitches.mask(p)].sum() for p, lp in zip(pieces, scored)])  # last: EOS


def choose_adapt_lr(lm, val: list[np.ndarray], pitches: PitchTokens, label: str = "dynamic evaluation") -> dict:
    """Bits per pitch of ``val`` for every learning rate of :data:`ADAPT_LRS` (0: the trained weights as they
    are), for one LM or an ensemble (a list, as :func:`lm_nll` takes); returns
    ``{"lr": best, "val_bits_pitch": {lr: bits}}``."""
    notes = int(sum(pitches.mask(p).sum() for p in val))
    grid = {lr: float(lm_nll(lm, val, pitches, label=f"{label}, lr {lr:g}", adapt_lr=lr)[1].sum()) / notes
            / math.log(2) for lr in ADAPT_LRS}
    return {"lr": min(grid, key=grid.get), "val_bits_pitch": grid}


def fit_kneser_ney(train: list[np.ndarray], val: list[np.ndarray], vocab: int,
                   train_transposed: list[np.ndarray] | None = None) -> tuple[dict, dict]:
    """Kneser-Ney over pitch sequences: for the training pieces as they are (and, when given, with their
    transposed copies), every order of :data:`ORDERS` scored on ``val``. Returns the best setting
    ``{"order", "transposed", "model"}`` and every setting's validation bits per pitch."""
    notes = sum(len(s) for s in val)
    grid, best = {}, None
    for transposed, seqs in ((False, train), (True, train_transposed)):
        if seqs is None:
            continue
        model = KneserNey(seqs, vocab, max(ORDERS))
        for order in ORDERS:
            bits = model.nll(val, order) / notes / math.log(2)
            grid[f"order {order}{', transposed' if transposed else ''}"] = bits
            if best is None or bits < best[0]:
                best = (bits, {"order": order, "transposed": transposed, "model": model})
    return best[1], grid


def fit_short_term(long_term: KneserNey, order: int, val: list[np.ndarray], test: list[np.ndarray],
                   vocab: int) -> dict:
    """IDyOM's long-term + short-term n-gram: each pitch's probability ``(1 - w) P_long + w P_short``, the long-term
    model ``long_term`` at ``order`` and the short-term one fitted on the piece so far
    (:func:`ngram.short_term_probs`); ``w`` in :data:`STM_WEIGHTS` and the short-term order in :data:`STM_ORDERS`
    chosen on ``val``. Returns ``{"weight", "order", "val_bits_pitch", "test_bits_pitch"}``."""
    def probs(seqs):
        return [(np.exp(long_term.logprobs(s, order)), {o: short_term_probs(s, vocab, o) for o in STM_ORDERS})
                for s in seqs]

    def bits(scored, weight, o):
        notes = sum(len(lt) for lt, _ in scored)
        return -float(sum(np.log((1 - weight) * lt + weight * st[o]).sum() for lt, st in scored)) / notes / math.log(2)

    scored_val = probs(val)
    weight, o = min(((w, o) for w in STM_WEIGHTS for o in STM_ORDERS), key=lambda c: bits(scored_val, *c))
    return {"weight": weight, "order": o, "val_bits_pitch": bits(scored_val, weight, o),
            "test_bits_pitch": bits(probs(test), weight, o)}


# --- one split (--ckpt) -----------------------------------------------------------


def add_arguments(m) -> None:
    """The flags of ``melodylm bench melody``."""
    m.add_argument("--ckpt", default=None, help="checkpoint file or run folder (the one-split mode)")
    m.add_argument("--data", required=True, type=Path, help="the folder written by `melodylm prepare`")
    m.add_argument("--split", default="test", choices=["val", "test"], help="split to report (default test)")
    m.add_argument("--out", type=Path, default=None,
                   help="write the results as JSON here (with --folds: a folder, required)")
    m.add_argument("--folds", type=int, default=None,
                   help="K-fold cross-validation over every piece of --data instead of one split (needs --config)")
    m.add_argument("--config", type=Path, default=None, help="with --folds: the LM preset each fold trains, "
                   "e.g. configs/lm/bach-soprano.yaml")
    m.add_argument("--max-minutes", type=float, default=None,
                   help="with --folds: training cap per fold (default: the preset's trainer.max_time)")
    m.add_argument("--run-folds", default=None, help="with --folds: only the first N folds, or folds A-B; runs with "
                   "one --out share it (folds.json sums up every fold of the same data, preset, K and cap)")
    m.add_argument("--seeds", type=int, default=1, help="with --folds: train N LSTMs per fold (the preset's seed, "
                   "+1, ...) and also report their ensemble, each note's probability the mean of the members' (default 1)")
    m.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    m.add_argument("--adapt", action="store_true", help="also score with dynamic evaluation: the LSTM takes an SGD "
                   "step on each 16 tokens of a piece after predicting them, as IDyOM's short-term model learns "
                   "the piece it reads (the step size is chosen on the validation pieces)")


def main(args) -> dict:
    """The one-split mode (``--ckpt``); ``--folds`` is :func:`melodylm.evaluation.melody_folds.main`'s."""
    if args.ckpt is None:
        raise UserError("give --ckpt (score one split) or --folds K --config PRESET (cross-validate)")
    if args.seeds != 1:
        raise UserError("--seeds goes with --folds (the members are trained per fold)")
    if args.threads:
        torch.set_num_threads(args.threads)
    return run(args.ckpt, args.data, args.out, split=args.split, adapt=args.adapt)


def _row(name: str, nll: float, tokens: int, notes: int, pitch_nll: float | None = None, **extra) -> dict:
    row = {"model": name, "nll_token": nll / tokens, "nll_note": nll / notes, "bits_note": nll / notes / math.log(2)}
    if pitch_nll is not None:
        row["bits_pitch"] = pitch_nll / notes / math.log(2)
    return {**row, **extra}


def run(ckpt: str | Path, data: str | Path, out: str | Path | None = None, split: str = "test",
        adapt: bool = False) -> dict:
    """Score ``split`` of the prepared folder ``data`` with the LM and the baselines (with ``adapt``, also with
    dynamic evaluation, its step size chosen on the validation split); write ``out`` (JSON)."""
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
    pitches = PitchTokens(tokenizer) if not tokenizer.is_trained else None

    lm_total, lm_pitch = lm_nll(lm, [s[1:-1] for s in test], pitches, label=f"scoring {split}")
    ngram = NGram(seqs["train"], len(tokenizer))
    alpha = min(ALPHAS, key=lambda a: ngram.total_nll(seqs["val"], a))
    weight = min(WEIGHTS, key=lambda w: ngram.total_nll(seqs["val"], alpha, w))
    pitch_nll = {}
    if pitches:
        for name, a, w in (("unigram", alpha, 0.0), ("bigram", alpha, weight)):
            pitch_nll[name] = -sum(float(ngram.logprobs(s, a, w)[pitches.mask(s[1:])].sum()) for s in test)
    rows = [
        _row("unigram", ngram.total_nll(test, alpha), tokens, notes, pitch_nll.get("unigram"), alpha=alpha),
        _row("bigram (interpolated)", ngram.total_nll(test, alpha, weight), tokens, notes, pitch_nll.get("bigram"),
             alpha=alpha, weight=weight),
        _row(f"LSTM LM ({Path(ckpt).name})", float(lm_total.sum()), tokens, notes,
             None if lm_pitch is None else float(lm_pitch.sum())),
    ]
    if adapt and pitches:
        chosen = choose_adapt_lr(lm, [s[1:-1] for s in seqs["val"]], pitches)
        total, pitch = lm_nll(lm, [s[1:-1] for s in test], pitches, label=f"scoring {split}, adapting",
                              adapt_lr=chosen["lr"])
        rows.append(_row(f"LSTM LM, dynamic evaluation (lr {chosen['lr']:g})", float(total.sum()), tokens, notes,
                         float(pitch.sum()), adapt_lr=chosen["lr"], adapt_val_bits_pitch=chosen["val_bits_pitch"]))
    results = {"data": str(data), "split": split, "pieces": len(test), "tokens": tokens, "notes": notes,
               "checkpoint": str(ckpt), "rows": rows}
    for r in rows:
        log.info("%-28s %.3f nats/token  %.3f nats/note  %.3f bits/note  %s bits/pitch", r["model"], r["nll_token"],
                 r["nll_note"], r["bits_note"], f"{r['bits_pitch']:.3f}" if "bits_pitch" in r else "-")
    if pitches:
        results["pitch_models"] = _pitch_rows(data, seqs, pitches, notes, split)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        log.info("wrote %s", out)
    return results


def _pitch_rows(data: Path, seqs: dict, pitches: PitchTokens, notes: int, split: str) -> list[dict]:
    """Kneser-Ney over pitches, fitted on the training split (with its transposed copies, and on its original
    pieces alone where ``manifest.jsonl`` says which those are), the setting chosen on the validation split."""
    train_all = [pitches.sequence(s) for s in seqs["train"]]
    originals = original_rows(data, "train")
    train = [train_all[i] for i in originals] if originals is not None else None
    val = [pitches.sequence(s) for s in seqs["val"]]
    test = [pitches.sequence(s) for s in seqs[split]]
    best, grid = fit_kneser_ney(train if train is not None else train_all, val, len(pitches),
                                train_all if train is not None else None)
    nll = best["model"].nll(test, best["order"])
    row = {"model": f"Kneser-Ney, order {best['order']}{' (transposed copies)' if best['transposed'] else ''}",
           "bits_pitch": nll / notes / math.log(2), "order": best["order"], "transposed": best["transposed"],
           "val_bits_pitch": grid}
    log.info("%-28s %s bits/pitch", row["model"], f"{row['bits_pitch']:.3f}")
    return [row]


def original_rows(data: Path, split: str) -> list[int] | None:
    """Indices of the untransposed pieces among ``split``'s pieces (from ``manifest.jsonl``), or None."""
    path = Path(data) / "manifest.jsonl"
    if not path.is_file():
        return None
    rows, at = [], 0
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["split"] == split:
            rows.append(at)
            at += 1 + int(rec.get("transposed_copies", 0))
    return rows
