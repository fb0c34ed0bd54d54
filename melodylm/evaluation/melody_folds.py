"""``melodylm bench melody --folds K``: K-fold cross-validation of a melody LM preset against Kneser-Ney.

The Bach chorale benchmark of Pearce 2005 (docs/melody.md): every piece of a
prepared folder is pooled, repeated melodies are dropped (:func:`corpus_pieces`),
and the pieces are dealt into K folds by content (:func:`fold_of`). Fold ``k``
is scored by an LSTM trained on the other folds (the preset, through the
training CLI) and by n-grams fitted on the same folds, in bits per pitch
(:mod:`melodylm.evaluation.bench_melody` defines the unit).
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
import yaml

from melodylm.checkpoint import load
from melodylm.data.store import Pieces, save_split
from melodylm.data.tokenizer import load_tokenizer
from melodylm.errors import UserError
from melodylm.evaluation.bench_melody import (PitchTokens, choose_adapt_lr, fit_kneser_ney, fit_short_term, lm_nll,
                                              original_rows)
from melodylm.evaluation.ngram import KneserNey

log = logging.getLogger("melodylm")


def main(args) -> dict:
    """``bench melody --folds K --config PRESET --out DIR`` (the flags of :func:`bench_melody.add_arguments`)."""
    if args.config is None or args.out is None:
        raise UserError("--folds needs --config (the LM preset) and --out (a folder)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    return cross_validate(args.data, args.config, args.out, folds=args.folds, max_minutes=args.max_minutes,
                          run_folds=args.run_folds, adapt=args.adapt, seeds=args.seeds)


def corpus_pieces(data: Path, pitches: PitchTokens) -> tuple[list[np.ndarray], dict]:
    """Every untransposed piece of every split of ``data`` (train, val, test, each in manifest order), with a
    melody that occurs twice kept once: same tokens, or the same pitch intervals (the same tune in another key
    or rhythm). Returns the pieces and how many each step kept."""
    pieces = []
    for split in ("train", "val", "test"):
        stored = Pieces(data, split)
        rows = original_rows(data, split)
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
                   max_minutes: float | None = None, run_folds: str | int | None = None, adapt: bool = False,
                   seeds: int = 1) -> dict:
    """K-fold bits per pitch of the LSTM preset ``config`` and of Kneser-Ney n-grams; writes ``out/folds.json``.

    Fold ``k`` is the test fold and fold ``k + 1`` the inner validation fold (early stopping, the n-gram's
    order); the LSTM trains on the other ``K - 2`` folds with the transposed copies ``prepare --transpose``
    asked for, the n-grams are fitted on the same pieces (and refitted on ``K - 1`` folds with the chosen
    setting). With ``adapt`` the LSTM is also scored with dynamic evaluation, its step size chosen on the
    inner validation fold. With ``seeds`` N > 1 each fold trains N LSTMs, the preset's ``seed_everything``
    plus 0 .. N-1, and also scores their ensemble (:func:`bench_melody.mixture`); the plain ``lstm_*`` figures
    stay the first member's. ``out/fold-k/`` keeps each fold's data folder, ``result.json`` and a folder per
    member, ``seed-S/`` (checkpoints, CSV log, ``trained.json``: a member trained for the same run is loaded,
    not trained again, so a stopped run resumes); ``folds.json`` sums up every fold result there of the same
    run (so several processes can share ``out``).
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
    run = {"data": str(data), "config": str(config), "folds": folds, "max_minutes": max_minutes, "adapt": adapt}
    if seeds > 1:  # absent for one LSTM per fold, so single-model fold results of earlier runs still add up
        run["seeds"] = seeds
    results = {**run, "corpus": counts, "transpose": [low, high], "threads": torch.get_num_threads(), "summary": {}}
    first, _, last = str(run_folds or folds).partition("-")
    preset = hashlib.sha256(Path(config).read_bytes()).hexdigest()[:16]
    first_seed = _preset_seed(config)
    log.info("%d pieces (%d notes) from %s in %d folds: %d duplicates by tokens, %d by pitch intervals dropped",
             counts["used"], counts["notes"], data, folds, counts["duplicate_tokens"], counts["duplicate_intervals"])
    for k in range(int(first), min(int(last) + 1, folds)) if last else range(min(int(first), folds)):
        part = {name: [p for p, f in zip(pieces, fold) if test(f)] for name, test in (
            ("test", lambda f: f == k), ("val", lambda f: f == (k + 1) % folds),
            ("train", lambda f: f not in (k, (k + 1) % folds)))}
        started = time.monotonic()
        record = {"fold": k, "run": run, "pieces": {n: len(p) for n, p in part.items()}}
        record.update(_ngram_fold(part, pitches, low, high, adapt))
        folder = out / f"fold-{k}"
        fold_data = _fold_data(folder / "data", data, settings, part,
                               transposed_copies(part["train"], pitches, low, high))
        members, record["lstm_training"] = [], []
        trained_on = {**run, "fold": k, "preset": preset, "pieces": _digest(part["train"] + part["val"])}
        for seed in range(first_seed, first_seed + seeds):
            lm, info = _train_member(config, folder / f"seed-{seed}", fold_data, max_minutes, seed, trained_on)
            members.append(lm)
            record["lstm_training"].append(info)
        for split in ("val", "test"):
            record[f"{split}_notes"] = int(sum(pitches.mask(p).sum() for p in part[split]))
        record.update(_lstm_scores(members[0], part, pitches, f"fold {k}", "lstm", adapt, record))
        if seeds > 1:
            record["member_test_bits_pitch"] = [record["lstm_test_bits_pitch"]] + [
                float(lm_nll(m, part["test"], pitches, label=f"fold {k}: scoring test, member {i + 1}")[1].sum())
                / record["test_notes"] / math.log(2) for i, m in enumerate(members[1:], 1)]
            record["members_mean_test_bits_pitch"] = float(np.mean(record["member_test_bits_pitch"]))
            record.update(_lstm_scores(members, part, pitches, f"fold {k}, ensemble", "ensemble", adapt, record))
        record["minutes"] = round((time.monotonic() - started) / 60, 2)
        (folder / "result.json").write_text(json.dumps(record, indent=2) + "\n")
        log.info("fold %d: LSTM %.3f bits/pitch%s, Kneser-Ney %.3f (order %d); %.1f min", k,
                 record["lstm_test_bits_pitch"], f", ensemble of {seeds} {record['ensemble_test_bits_pitch']:.3f}"
                 if seeds > 1 else "", record["kn_test_bits_pitch"], record["kn_order"], record["minutes"])
        done = (json.loads(p.read_text()) for p in out.glob("fold-*/result.json"))
        results["per_fold"] = sorted((r for r in done if r.get("run") == run), key=lambda r: r["fold"])
        results["summary"] = _summary(results["per_fold"])
        (out / "folds.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, s in results["summary"].items():
        log.info("%-34s %.3f ± %.3f over %d folds (pooled %.3f)", name, s["mean"], s["std"], s["folds"], s["pooled"])
    log.info("wrote %s", out / "folds.json")
    return results


def _lstm_scores(lm, part: dict, pitches: PitchTokens, label: str, name: str, adapt: bool, record: dict) -> dict:
    """``{name}_{val,test}_bits_pitch`` and ``{name}_{val,test}_bits_note`` of one LM or an ensemble (a list);
    with ``adapt`` also the dynamic evaluation's step size chosen on the validation fold (``{name}_adapt_lr``,
    ``{name}_adapt_val_bits_pitch``, the grid) and its ``{name}_adapt_test_bits_pitch``."""
    scores = {}
    for split in ("val", "test"):
        total, pitch = lm_nll(lm, part[split], pitches, label=f"{label}: scoring {split}")
        scores[f"{name}_{split}_bits_pitch"] = float(pitch.sum()) / record[f"{split}_notes"] / math.log(2)
        scores[f"{name}_{split}_bits_note"] = float(total.sum()) / record[f"{split}_notes"] / math.log(2)
    if adapt:
        chosen = choose_adapt_lr(lm, part["val"], pitches, label=f"{label}: dynamic evaluation")
        _, pitch = lm_nll(lm, part["test"], pitches, label=f"{label}: scoring test, adapting", adapt_lr=chosen["lr"])
        scores.update({f"{name}_adapt_lr": chosen["lr"], f"{name}_adapt_val_bits_pitch": chosen["val_bits_pitch"],
                       f"{name}_adapt_test_bits_pitch": float(pitch.sum()) / record["test_notes"] / math.log(2)})
    return scores


def _ngram_fold(part: dict, pitches: PitchTokens, low: int, high: int, short_term: bool) -> dict:
    """Kneser-Ney's figures for one fold: the setting chosen on the validation fold, the same refitted on
    K - 1 folds, and with ``short_term`` that setting combined with a short-term model (:func:`fit_short_term`)."""
    seq = lambda ps: [pitches.sequence(p) for p in ps]  # noqa: E731
    best, grid = fit_kneser_ney(seq(part["train"]), seq(part["val"]), len(pitches),
                                seq(transposed_copies(part["train"], pitches, low, high)))
    test = seq(part["test"])
    notes = sum(len(s) for s in test)
    nine = part["train"] + part["val"]
    refit = KneserNey(seq(transposed_copies(nine, pitches, low, high) if best["transposed"] else nine),
                      len(pitches), best["order"])
    record = {"kn_order": best["order"], "kn_transposed": best["transposed"], "kn_val_bits_pitch": grid,
              "kn_test_bits_pitch": best["model"].nll(test, best["order"]) / notes / math.log(2),
              "kn_refit_test_bits_pitch": refit.nll(test, best["order"]) / notes / math.log(2)}
    if short_term:
        both = fit_short_term(best["model"], best["order"], seq(part["val"]), test, len(pitches))
        record.update({f"kn_stm_{name}": value for name, value in both.items()})
    return record


def _fold_data(fold_data: Path, data: Path, settings: dict, part: dict, train: list[np.ndarray]) -> Path:
    """Write the fold's prepared data folder: its training pieces (with their transposed copies), the inner
    validation and the test fold, and the corpus's tokenizer."""
    for split, ps in (("train", train), ("val", part["val"]), ("test", part["test"])):
        save_split(fold_data, split, [np.asarray(p, dtype=np.int32) for p in ps])
    (fold_data / "tokenizer.json").write_text((data / "tokenizer.json").read_text())
    (fold_data / "prepare.json").write_text(json.dumps({"source": str(data), "settings": settings,
                                                        "pieces": {"train": len(train), **{
                                                            s: len(part[s]) for s in ("val", "test")}}}))
    return fold_data


def _digest(pieces: list[np.ndarray]) -> str:
    """A short SHA-256 of ``pieces``' tokens, in order: what a fold's members were trained on."""
    h = hashlib.sha256()
    for p in pieces:
        h.update(np.asarray(p, dtype=np.int32).tobytes() + b"|")
    return h.hexdigest()[:16]


def _preset_seed(config) -> int:
    """The preset's ``seed_everything`` when it names one (else 0): the first member's seed."""
    seed = (yaml.safe_load(Path(config).read_text()) or {}).get("seed_everything")
    return seed if type(seed) is int else 0


def _train_member(config, folder: Path, fold_data: Path, max_minutes: float | None, seed: int, run: dict):
    """Train the preset on the fold's data with ``seed`` (or find it in ``folder``, trained for the same ``run``:
    the same benchmark settings, fold, preset text and pieces) and load its best checkpoint (by val/nll_token)."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from melodylm.commands.train import cli

    done = folder / "trained.json"
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("run") == run and Path(info["checkpoint"]).is_file():
            log.info("%s: trained already (%s)", folder, info["checkpoint"])
            return load(info["checkpoint"], kinds=("language_model",)), info
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(folder)}}
    overrides = ["--config", str(config), "--data.init_args.data_dir", str(fold_data), "--seed_everything", str(seed),
                 "--trainer.default_root_dir", str(folder), "--trainer.enable_progress_bar", "false",
                 "--trainer.logger", json.dumps(logger)]
    if max_minutes is not None:
        s = max(int(max_minutes * 60), 1)
        overrides += ["--trainer.max_time", f"00:{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"]
    started = time.monotonic()
    trained = cli(overrides, run=False)
    best = next((c for c in trained.trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)
                 and c.monitor == "val/nll_token"), None)
    if best is None:
        raise UserError(f"{config} has no ModelCheckpoint monitoring val/nll_token: each fold tests its best epoch")
    best.dirpath = str(folder / "checkpoints")
    trained.trainer.fit(trained.model, trained.datamodule)
    if not best.best_model_path:
        raise UserError(f"training stopped before the first validation: raise --max-minutes (was {max_minutes})")
    info = {"seed": seed, "epochs": trained.trainer.current_epoch, "steps": trained.trainer.global_step,
            "best_val_nll_token": float(best.best_model_score), "checkpoint": best.best_model_path,
            "minutes": round((time.monotonic() - started) / 60, 2), "run": run}
    done.write_text(json.dumps(info, indent=2) + "\n")
    return load(best.best_model_path, kinds=("language_model",)), info


def _summary(per_fold: list[dict]) -> dict:
    """Mean, sample standard deviation over folds and the pooled figure (all folds' NLL over all notes)."""
    out = {}
    for name, key in (("LSTM", "lstm_test_bits_pitch"), ("Kneser-Ney (same training folds)", "kn_test_bits_pitch"),
                      ("Kneser-Ney (refitted on K-1 folds)", "kn_refit_test_bits_pitch"),
                      ("Kneser-Ney, long-term + short-term", "kn_stm_test_bits_pitch"),
                      ("LSTM, all tokens (bits/note)", "lstm_test_bits_note"),  # bits per pitch but this one
                      ("LSTM, dynamic evaluation", "lstm_adapt_test_bits_pitch"),
                      ("LSTM, each member alone (mean over members)", "members_mean_test_bits_pitch"),
                      ("LSTM ensemble (mean of the members' probabilities)", "ensemble_test_bits_pitch"),
                      ("LSTM ensemble, dynamic evaluation", "ensemble_adapt_test_bits_pitch")):
        if not all(key in f for f in per_fold):
            continue
        values = np.array([f[key] for f in per_fold])
        notes = np.array([f["test_notes"] for f in per_fold])
        out[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                     "pooled": float((values * notes).sum() / notes.sum()), "folds": len(values)}
    return out
