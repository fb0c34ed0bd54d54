"""``melodylm bench melody``: NLL per note and bits per pitch of a melody LM, next to n-gram baselines.

Two modes. With ``--ckpt``: score one split of a prepared folder (the
Nottingham benchmark). With ``--folds K --config PRESET``: K-fold
cross-validation over every piece of the folder (the Bach chorale benchmark of
Pearce 2005): each fold is scored by an LSTM trained on the other folds and by
n-grams fitted on the same folds (:func:`cross_validate`).

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
transposed training copies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from melodylm.checkpoint import load
from melodylm.data.store import Pieces, save_split
from melodylm.data.tokenizer import SpecialIds, fingerprint, load_tokenizer, note_counts
from melodylm.errors import UserError
from melodylm.evaluation.ngram import KneserNey
from melodylm.progress import progress_bar

log = logging.getLogger("melodylm")

ALPHAS = (0.01, 0.1, 0.5, 1.0)
WEIGHTS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)  # bigram share of the interpolation
ORDERS = (1, 2, 3, 4, 5, 6)  # Kneser-Ney orders tried on the validation pieces


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


def lm_nll(lm, pieces: list[np.ndarray], pitches: PitchTokens | None, batch: int = 16,
           label: str = "scoring") -> tuple[np.ndarray, np.ndarray | None]:
    """Per piece (no BOS/EOS in ``pieces``): the LM's summed NLL (nats) of all its tokens, EOS included, and
    of its ``Pitch_*`` tokens alone (None without ``pitches``); arrays of ``len(pieces)``."""
    total, pitch = np.zeros(len(pieces)), np.zeros(len(pieces))
    with progress_bar() as bar, torch.no_grad():
        task = bar.add_task(label, total=len(pieces))
        for start in range(0, len(pieces), batch):
            chunk = [np.asarray(p).tolist() for p in pieces[start : start + batch]]
            for j, (ids, lp) in enumerate(zip(chunk, lm.decoder.token_logprobs(chunk))):
                lp = lp.double().numpy()
                total[start + j] = -lp.sum()
                if pitches is not None:
                    pitch[start + j] = -lp[:-1][pitches.mask(ids)].sum()  # the last value is EOS
            bar.advance(task, len(chunk))
    return total, pitch if pitches is not None else None


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
    m.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")


def main(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.folds is not None:
        if args.config is None or args.out is None:
            raise UserError("--folds needs --config (the LM preset) and --out (a folder)")
        return cross_validate(args.data, args.config, args.out, folds=args.folds, max_minutes=args.max_minutes,
                              run_folds=args.run_folds)
    if args.ckpt is None:
        raise UserError("give --ckpt (score one split) or --folds K --config PRESET (cross-validate)")
    return run(args.ckpt, args.data, args.out, split=args.split)


def _row(name: str, nll: float, tokens: int, notes: int, pitch_nll: float | None = None, **extra) -> dict:
    row = {"model": name, "nll_token": nll / tokens, "nll_note": nll / notes, "bits_note": nll / notes / math.log(2)}
    if pitch_nll is not None:
        row["bits_pitch"] = pitch_nll / notes / math.log(2)
    return {**row, **extra}


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
    originals = _original_rows(data, "train")
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


def _original_rows(data: Path, split: str) -> list[int] | None:
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


# --- K-fold cross-validation (--folds) ------------------------------------------------


def corpus_pieces(data: Path, pitches: PitchTokens) -> tuple[list[np.ndarray], dict]:
    """Every untransposed piece of every split of ``data`` (train, val, test, each in manifest order), with a
    melody that occurs twice kept once: same tokens, or the same pitch intervals (the same tune in another key
    or rhythm). Returns the pieces and how many each step kept."""
    pieces = []
    for split in ("train", "val", "test"):
        stored = Pieces(data, split)
        rows = _original_rows(data, split)
        pieces += [stored[i] for i in (rows if rows is not None else range(len(stored)))]
    seen_tokens, seen_intervals, kept = set(), set(), []
    same_tokens = same_intervals = 0
    for p in pieces:
        key = p.astype(np.int32).tobytes()
        intervals = np.diff(pitches.sequence(p)).astype(np.int32).tobytes()
        if key in seen_tokens:
            same_tokens += 1
        elif intervals in seen_intervals:
            same_intervals += 1
        else:
            kept.append(p)
        seen_tokens.add(key)
        seen_intervals.add(intervals)
    return kept, {"pieces": len(pieces), "duplicate_tokens": same_tokens, "duplicate_intervals": same_intervals,
                  "used": len(kept), "notes": int(sum(pitches.mask(p).sum() for p in kept))}


def fold_of(pieces: list[np.ndarray], folds: int) -> np.ndarray:
    """The fold of every piece: pieces sorted by the SHA-256 of their tokens, dealt out in turn, so fold
    sizes differ by at most one and a piece's fold depends on the corpus, never on the input order."""
    keys = [hashlib.sha256(np.asarray(p, dtype=np.int32).tobytes()).hexdigest() for p in pieces]
    order = sorted(range(len(pieces)), key=keys.__getitem__)
    fold = np.empty(len(pieces), dtype=np.int64)
    fold[order] = np.arange(len(pieces)) % folds
    return fold


def transposed_copies(pieces: list[np.ndarray], pitches: PitchTokens, low: int, high: int) -> list[np.ndarray]:
    """Every piece moved by every shift in ``low .. high`` semitones (0 included) that keeps it in range."""
    moved = (pitches.transpose(p, shift) for p in pieces for shift in range(low, high + 1))
    return [m for m in moved if m is not None]


def cross_validate(data: str | Path, config: str | Path, out: str | Path, folds: int = 10,
                   max_minutes: float | None = None, run_folds: str | int | None = None) -> dict:
    """K-fold bits per pitch of the LSTM preset ``config`` and of Kneser-Ney n-grams; writes ``out/folds.json``.

    Fold ``k`` is the test fold and fold ``k + 1`` the inner validation fold (early stopping, the n-gram's
    order); the LSTM trains on the other ``K - 2`` folds with the transposed copies ``prepare --transpose``
    asked for, the n-grams are fitted on the same pieces (and refitted on ``K - 1`` folds with the chosen
    setting). ``out/fold-k/`` keeps each fold's data folder, checkpoints, CSV log and ``result.json``;
    ``folds.json`` sums up every fold result there of the same run (so several processes can share ``out``).
    """
    data, out = Path(data), Path(out)
    if not (data / "prepare.json").is_file():
        raise UserError(f"{data} is not a prepared data folder; run `melodylm prepare` first")
    if not Path(config).is_file():
        raise UserError(f"config {config} does not exist")
    tokenizer = load_tokenizer(data / "tokenizer.json")
    pitches = PitchTokens(tokenizer)
    pieces, counts = corpus_pieces(data, pitches)
    if not 3 <= folds <= len(pieces):
        raise UserError(f"--folds must be between 3 and the number of pieces ({len(pieces)}), got {folds}")
    settings = json.loads((data / "prepare.json").read_text())["settings"]
    low, high = settings.get("transpose", (0, 0))
    fold = fold_of(pieces, folds)
    run = {"data": str(data), "config": str(config), "folds": folds, "max_minutes": max_minutes}
    results = {**run, "corpus": counts, "transpose": [low, high], "threads": torch.get_num_threads(), "summary": {}}
    first, _, last = str(run_folds or folds).partition("-")
    log.info("%d pieces (%d notes) from %s in %d folds: %d duplicates by tokens, %d by pitch intervals dropped",
             counts["used"], counts["notes"], data, folds, counts["duplicate_tokens"], counts["duplicate_intervals"])
    for k in range(int(first), min(int(last) + 1, folds)) if last else range(min(int(first), folds)):
        part = {name: [p for p, f in zip(pieces, fold) if test(f)] for name, test in (
            ("test", lambda f: f == k), ("val", lambda f: f == (k + 1) % folds),
            ("train", lambda f: f not in (k, (k + 1) % folds)))}
        started = time.monotonic()
        record = {"fold": k, "run": run, "pieces": {n: len(p) for n, p in part.items()}}
        record.update(_ngram_fold(part, pitches, low, high))
        lm, record["lstm_training"] = _train_fold(config, out / f"fold-{k}", data, settings, part,
                                                  transposed_copies(part["train"], pitches, low, high), max_minutes)
        for split in ("val", "test"):
            total, pitch = lm_nll(lm, part[split], pitches, label=f"fold {k}: scoring {split}")
            notes = int(sum(pitches.mask(p).sum() for p in part[split]))
            record[f"{split}_notes"] = notes
            record[f"lstm_{split}_bits_pitch"] = float(pitch.sum()) / notes / math.log(2)
            record[f"lstm_{split}_bits_note"] = float(total.sum()) / notes / math.log(2)
        record["minutes"] = round((time.monotonic() - started) / 60, 2)
        (out / f"fold-{k}" / "result.json").write_text(json.dumps(record, indent=2) + "\n")
        log.info("fold %d: LSTM %.3f bits/pitch, Kneser-Ney %.3f (order %d); %.1f min", k,
                 record["lstm_test_bits_pitch"], record["kn_test_bits_pitch"], record["kn_order"], record["minutes"])
        done = (json.loads(p.read_text()) for p in out.glob("fold-*/result.json"))
        results["per_fold"] = sorted((r for r in done if r.get("run") == run), key=lambda r: r["fold"])
        results["summary"] = _summary(results["per_fold"])
        (out / "folds.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, s in results["summary"].items():
        log.info("%-34s %.3f ± %.3f over %d folds (pooled %.3f)", name, s["mean"], s["std"], s["folds"], s["pooled"])
    log.info("wrote %s", out / "folds.json")
    return results


def _ngram_fold(part: dict, pitches: PitchTokens, low: int, high: int) -> dict:
    seq = lambda ps: [pitches.sequence(p) for p in ps]  # noqa: E731
    best, grid = fit_kneser_ney(seq(part["train"]), seq(part["val"]), len(pitches),
                                seq(transposed_copies(part["train"], pitches, low, high)))
    test = seq(part["test"])
    notes = sum(len(s) for s in test)
    nine = part["train"] + part["val"]
    refit = KneserNey(seq(transposed_copies(nine, pitches, low, high) if best["transposed"] else nine),
                      len(pitches), best["order"])
    return {"kn_order": best["order"], "kn_transposed": best["transposed"], "kn_val_bits_pitch": grid,
            "kn_test_bits_pitch": best["model"].nll(test, best["order"]) / notes / math.log(2),
            "kn_refit_test_bits_pitch": refit.nll(test, best["order"]) / notes / math.log(2)}


def _train_fold(config, folder: Path, data: Path, settings: dict, part: dict, train: list[np.ndarray],
                max_minutes: float | None):
    """Write the fold's data folder, train the preset on it, load its best checkpoint (by val/nll_token)."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from melodylm.commands.train import cli

    fold_data = folder / "data"
    for split, ps in (("train", train), ("val", part["val"]), ("test", part["test"])):
        save_split(fold_data, split, [np.asarray(p, dtype=np.int32) for p in ps])
    (fold_data / "tokenizer.json").write_text((data / "tokenizer.json").read_text())
    (fold_data / "prepare.json").write_text(json.dumps({"source": str(data), "settings": settings,
                                                        "pieces": {"train": len(train), **{
                                                            s: len(part[s]) for s in ("val", "test")}}}))
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(folder)}}
    overrides = ["--config", str(config), "--data.init_args.data_dir", str(fold_data),
                 "--trainer.default_root_dir", str(folder), "--trainer.enable_progress_bar", "false",
                 "--trainer.logger", json.dumps(logger)]
    if max_minutes is not None:
        s = max(int(max_minutes * 60), 1)
        overrides += ["--trainer.max_time", f"00:{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"]
    started = time.monotonic()
    run = cli(overrides, run=False)
    best = next((c for c in run.trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)
                 and c.monitor == "val/nll_token"), None)
    if best is None:
        raise UserError(f"{config} has no ModelCheckpoint monitoring val/nll_token: each fold tests its best epoch")
    best.dirpath = str(folder / "checkpoints")
    run.trainer.fit(run.model, run.datamodule)
    if not best.best_model_path:
        raise UserError(f"training stopped before the first validation: raise --max-minutes (was {max_minutes})")
    info = {"epochs": run.trainer.current_epoch, "steps": run.trainer.global_step,
            "best_val_nll_token": float(best.best_model_score), "checkpoint": best.best_model_path,
            "minutes": round((time.monotonic() - started) / 60, 2)}
    return load(best.best_model_path, kinds=("language_model",)), info


def _summary(per_fold: list[dict]) -> dict:
    """Mean, sample standard deviation over folds and the pooled figure (all folds' NLL over all notes)."""
    out = {}
    for name, key in (("LSTM", "lstm_test_bits_pitch"), ("Kneser-Ney (same training folds)", "kn_test_bits_pitch"),
                      ("Kneser-Ney (refitted on K-1 folds)", "kn_refit_test_bits_pitch"),
                      ("LSTM, all tokens (bits/note)", "lstm_test_bits_note")):  # bits per pitch but the last
        values = np.array([f[key] for f in per_fold])
        notes = np.array([f["test_notes"] for f in per_fold])
        out[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                     "pooled": float((values * notes).sum() / notes.sum()), "folds": len(values)}
    return out
