"""``melodylm evaluate samples``: music metrics of generated MIDI files against a reference folder.

Every .mid/.midi file under both folders (recursively) is read in an isolated
worker process with a timeout, as in ``prepare``, so a file that crashes or
hangs the parser costs that file only; unreadable files are listed, never
dropped silently. The table shows each feature's mean per set with MGEval's
overlapping area (OA, higher is closer) and KL divergence (nats, lower is
closer); see :mod:`melodylm.evaluation.music`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from pebble import ProcessPool

from melodylm.data.midi import MIDI_SUFFIXES, Rejected, read_score
from melodylm.errors import UserError
from melodylm.evaluation.music import (
    COPY_RUN,
    FEATURE_UNITS,
    NOTE_LENGTH_HIST,
    compare_sets,
    copies,
    interval_runs,
    invalid_token_rate,
    melody_line,
    piece_metrics,
)
from melodylm.progress import progress_bar

log = logging.getLogger(__name__)


def midi_files(folder: Path, role: str, max_files: int | None = None, split: str | None = None) -> list[Path]:
    """The .mid/.midi files under ``folder`` in sorted order; at most ``max_files``, evenly spaced.

    ``folder`` may also be a ``manifest.jsonl`` written by ``melodylm prepare``
    (its files, only those of ``split`` if given). ``role`` ("samples",
    "reference") names the folder in error messages.
    """
    if not folder.exists():
        raise UserError(f"{role} folder {folder} does not exist")
    if folder.is_file() and folder.suffix == ".jsonl":
        rows = [json.loads(line) for line in folder.read_text().splitlines() if line.strip()]
        files = sorted(Path(r["path"]) for r in rows if split is None or r.get("split") == split)
    elif not folder.is_dir():
        raise UserError(f"{role} path {folder} is not a folder or a manifest.jsonl")
    else:
        files = sorted(p for p in folder.rglob("*")
                       if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise UserError(f"no MIDI files ({', '.join(MIDI_SUFFIXES)}) under {role} folder {folder}")
    if max_files is not None and max_files < 1:
        raise UserError(f"--max-files must be at least 1, got {max_files}")
    if max_files is not None and len(files) > max_files:
        picks = np.linspace(0, len(files) - 1, max_files).round().astype(int)  # distinct: max_files < len(files)
        files = [files[i] for i in picks]
    return files


def file_metrics(path: str) -> dict:
    """piece_metrics of one file and its melody line, or {"error": reason}; runs in a worker process."""
    try:
        score = read_score(Path(path).read_bytes())
        return {**piece_metrics(score), "melody": melody_line(score).tolist()}
    except (Rejected, OSError) as err:
        return {"error": str(err)}


def file_melody(path: str) -> dict:
    """The melody line of one file, or {"error": reason}; runs in a worker process."""
    try:
        return {"melody": melody_line(read_score(Path(path).read_bytes())).tolist()}
    except (Rejected, OSError) as err:
        return {"error": str(err)}


def read_set(files: list[Path], role: str, workers: int = 2, timeout: float = 60.0,
             measure=file_metrics) -> tuple[list[dict], list[dict]]:
    """([{"path", **measure(path)}] of every readable file, [{"path", "reason"}] of the skipped ones), in file
    order; ``measure`` (:func:`file_metrics` or :func:`file_melody`) runs in worker processes with a timeout."""
    pieces, skipped = [], []
    with ProcessPool(max_workers=max(1, workers)) as pool, progress_bar() as bar:
        task = bar.add_task(f"{'metrics' if measure is file_metrics else 'melodies'}: {role}", total=len(files))
        futures = [(p, pool.schedule(measure, args=(str(p),), timeout=timeout)) for p in files]
        for path, future in futures:
            try:
                result = future.result()
            except TimeoutError:
                result = {"error": f"timed out after {timeout:g} s"}
            except Exception as err:  # pebble.ProcessExpired (the worker died) or a bug on a strange file
                result = {"error": f"{type(err).__name__}: {err}"}
            if "error" in result:
                skipped.append({"path": str(path), "reason": result["error"]})
            else:
                pieces.append({"path": str(path), **result})
            bar.advance(task)
    for s in skipped:
        log.warning("skipped %s file %s: %s", role, s["path"], s["reason"])
    if not pieces:
        raise UserError(f"none of the {len(files)} {role} MIDI files could be read (reasons above)")
    return pieces, skipped


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_table(features: dict[str, dict]) -> str:
    """Plain-text table of :func:`melodylm.evaluation.music.compare_sets` output: means, OA and KL per feature."""
    lines = [f"{'feature':<20} {'unit':<10} {'generated':>10} {'reference':>10} {'OA':>7} {'KL':>7}"]
    for key, row in features.items():
        unit = FEATURE_UNITS.get(key, "12 bins")
        gen, ref = (("(hist)", "(hist)") if key == NOTE_LENGTH_HIST
                    else (_fmt(row["generated_mean"]), _fmt(row["reference_mean"])))
        lines.append(f"{key:<20} {unit:<10} {gen:>10} {ref:>10} {_fmt(row['oa']):>7} {_fmt(row['kl']):>7}")
    return "\n".join(lines)


def json_safe(value):
    """NaN -> None, recursively, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def copying(sets: dict[str, list[dict]], training: list[dict], run: int = COPY_RUN) -> dict:
    """Per set, the share of pieces holding a run of ``run`` consecutive melody pitches (in any key) that stands
    in a training piece: a model that memorises copies such runs; real held-out tunes share a few. Pieces that are
    themselves training pieces (the same path: a reference manifest read without ``--split``) are left out."""
    runs = set().union(*(interval_runs(np.array(p["melody"]), run) for p in training))
    trained = {str(p["path"]) for p in training}
    out = {"run": run, "training_pieces": len(training)}
    for name, pieces in sets.items():
        unseen = [p for p in pieces if str(p["path"]) not in trained]  # a training piece trivially holds its runs
        flags = [copies(np.array(p["melody"]), runs, run) for p in unseen]
        out[name] = {"share": sum(flags) / len(flags) if flags else float("nan"), "copying": int(sum(flags)),
                     "pieces": len(flags), "training_pieces_left_out": len(pieces) - len(unseen),
                     "files": [p["path"] for p, f in zip(unseen, flags) if f]}
    return out


def evaluate(samples: Path, reference: Path, max_files: int | None = None, workers: int = 2,
             timeout: float = 60.0, split: str | None = None, training: Path | None = None) -> dict:
    """Everything ``melodylm evaluate samples`` reports, as one JSON-ready dict (NaN where undefined).

    ``training`` (a folder or manifest; default: the train split of ``reference`` when that is a manifest)
    adds :func:`copying` for both sets.
    """
    gen_files = midi_files(samples, "samples", max_files)
    ref_files = midi_files(reference, "reference", max_files, split=split)
    gen, gen_skipped = read_set(gen_files, "samples", workers, timeout)
    ref, ref_skipped = read_set(ref_files, "reference", workers, timeout)
    rate, rate_files = invalid_token_rate(gen_files)
    if training is None and reference.suffix == ".jsonl" and split != "train":
        training = reference
    copied = None
    if training is not None:
        train_files = midi_files(training, "training", split="train" if training.suffix == ".jsonl" else None)
        train, _ = read_set(train_files, "training", workers, timeout, measure=file_melody)
        copied = copying({"samples": gen, "reference": ref}, train)
    for piece in gen + ref:
        piece.pop("melody")
    return {
        "samples": {"dir": str(samples), "files": len(gen_files), "pieces": len(gen), "skipped": gen_skipped},
        "reference": {"dir": str(reference), "files": len(ref_files), "pieces": len(ref), "skipped": ref_skipped},
        "units": {**FEATURE_UNITS, NOTE_LENGTH_HIST: "share of notes per length class", "kl": "nats"},
        "features": compare_sets(gen, ref),
        "copying": copied,
        "invalid_token_rate": {"mean": rate, "sidecars": rate_files},
        "per_file": {"samples": gen, "reference": ref},
    }
