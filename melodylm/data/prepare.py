"""``melodylm prepare``: MIDI files -> manifest + quarantine -> cached token arrays.

Every input file is inspected in an isolated worker process (pebble) with a
timeout, so a parser crash or hang costs one file, not the job. Each file ends
in exactly one of ``manifest.jsonl`` (used, with split and stats) or
``quarantine.jsonl`` (with the reason). Splits come from the content hash, so
adding files never moves existing ones. Per-file results are cached under
``DIR/.cache`` keyed by content hash and settings: a re-run only parses what is
new. Transposed copies are added to the training split only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import miditok
import numpy as np
from miditok import TokSequence
from pebble import ProcessPool

from melodylm.data import corpus
from melodylm.data.midi import MIDI_SUFFIXES, CleanOptions, Rejected, clean_score, read_score, transposed
from melodylm.data.store import SPLITS, save_split
from melodylm.data.tokenizer import build_tokenizer, fingerprint, score_to_ids, tokenizer_from_json, tokenizer_to_json
from melodylm.errors import UserError
from melodylm.progress import progress_bar

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


@dataclass
class PrepareSettings:
    """Everything that decides the token arrays (and so the cache key)."""

    tokenizer: str = "REMI"
    velocities: int = 0
    bpe_vocab: int = 0
    clean: CleanOptions = field(default_factory=CleanOptions)
    transpose: tuple[int, int] = (0, 0)
    val_frac: float = 0.1
    test_frac: float = 0.1

    def check(self) -> None:
        low, high = self.clean.pitch_range
        if not 0 <= low < high <= 128:
            raise UserError(f"pitch range {low}:{high} is not within 0:128")
        if not (0 <= self.val_frac < 1 and 0 <= self.test_frac < 1 and self.val_frac + self.test_frac < 1):
            raise UserError("--val-frac and --test-frac must be in [0, 1) and sum below 1")
        if self.transpose[0] > 0 or self.transpose[1] < 0:
            raise UserError("--transpose LOW:HIGH must include 0, e.g. -5:6")

    def cache_key(self) -> str:
        blob = asdict(self)
        blob.pop("bpe_vocab")  # BPE is learned after the per-file pass
        # The vocabulary itself, not just our options: a change in build_tokenizer or miditok changes the ids.
        blob.update(miditok=version("miditok"), format=CACHE_FORMAT, vocabulary=fingerprint(self.base_tokenizer()))
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def base_tokenizer(self) -> miditok.MusicTokenizer:
        return build_tokenizer(self.tokenizer, self.clean.pitch_range, self.velocities)


def split_of(sha256: str, val_frac: float, test_frac: float) -> str:
    """Deterministic split from the content hash: the same file always lands in the same split."""
    u = int(sha256[:12], 16) / 16**12
    return "test" if u < test_frac else "val" if u < test_frac + val_frac else "train"


# --- worker side -----------------------------------------------------------------

_worker_tokenizer: miditok.MusicTokenizer | None = None


def _init_worker(settings: PrepareSettings) -> None:
    global _worker_tokenizer
    _worker_tokenizer = settings.base_tokenizer()


def inspect_file(path: str, split: str, settings: PrepareSettings) -> dict:
    """Read, clean and tokenize one file; runs in a worker process."""
    try:
        score, stats = clean_score(read_score(Path(path).read_bytes()), settings.clean)
        ids = score_to_ids(_worker_tokenizer, score)
        if len(ids) == 0:
            raise Rejected("no_tokens", "tokenizer produced no tokens")
        augmented = []
        if split == "train":
            for shift in range(settings.transpose[0], settings.transpose[1] + 1):
                moved = transposed(score, shift, settings.clean.pitch_range) if shift else None
                if moved is not None:
                    augmented.append(score_to_ids(_worker_tokenizer, moved))
        return {"status": "ok", **stats, "tokens": len(ids), "ids": ids, "augmented": augmented}
    except Rejected as rej:
        return {"status": "rejected", "code": rej.code, "reason": str(rej)}


# --- parent side -----------------------------------------------------------------


def expand_inputs(inputs: list[str], export_root: Path, corpus_files: int | None, workers: int) -> list[Path]:
    """Folders (recursive), single files and ``music21:NAME`` corpora -> file list."""
    files: list[Path] = []
    for item in inputs:
        if item.startswith(corpus.PREFIX):
            files += corpus.export_corpus(item[len(corpus.PREFIX):], export_root, corpus_files, workers)
            continue
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"input {item!r} is neither a file, a folder nor music21:NAME")
    if not files:
        raise UserError(f"no files found in {' '.join(inputs)}")
    return files


def _load_cache(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    records = {}
    with path.open() as f:
        for line in f:
            rec = json.loads(line)
            records[rec["sha256"]] = rec
    return records


def _run_workers(jobs: list[tuple[Path, str, str]], settings: PrepareSettings, workers: int, timeout: float):
    """Yield (sha256, record) for each job, isolating crashes and hangs."""
    with ProcessPool(max_workers=workers, initializer=_init_worker, initargs=(settings,)) as pool, \
            progress_bar() as bar:
        task = bar.add_task("inspect + tokenize", total=len(jobs))
        futures = [(sha, pool.schedule(inspect_file, args=(str(p), split, settings), timeout=timeout))
                   for p, sha, split in jobs]
        for sha, future in futures:
            try:
                record = future.result()
            except TimeoutError:
                record = {"status": "rejected", "code": "timeout", "reason": f"parser timed out after {timeout:g} s"}
            except Exception as err:  # pebble.ProcessExpired: the worker died (segfault, OOM)
                record = {"status": "rejected", "code": "crash", "reason": f"parser crashed: {err}"}
            bar.advance(task)
            yield sha, record


def prepare(
    inputs: list[str],
    out: Path,
    settings: PrepareSettings,
    workers: int = 2,
    timeout: float = 60.0,
    export_root: Path = Path("datasets"),
    corpus_files: int | None = None,
) -> dict:
    """Run the whole preparation; returns the summary that is also saved as ``prepare.json``."""
    settings.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = expand_inputs(inputs, export_root, corpus_files, workers)

    manifest, quarantine, jobs, seen = [], [], [], {}
    for path in files:
        if path.suffix.lower() not in MIDI_SUFFIXES:
            quarantine.append({"path": str(path), "code": "not_midi",
                               "reason": f"not a MIDI file (extension {path.suffix or 'none'!r})"})
            continue
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        if sha in seen:
            quarantine.append({"path": str(path), "code": "duplicate", "reason": f"duplicate of {seen[sha]}"})
            continue
        seen[sha] = str(path)
        jobs.append((path, sha, split_of(sha, settings.val_frac, settings.test_frac)))

    cache_path = out / ".cache" / f"records-{settings.cache_key()}.jsonl"
    cache_path.parent.mkdir(exist_ok=True)
    cached = _load_cache(cache_path)
    todo = [job for job in jobs if job[1] not in cached]
    if todo:
        with cache_path.open("a") as f:
            for sha, record in _run_workers(todo, settings, workers, timeout):
                cached[sha] = {"sha256": sha, **record}
                f.write(json.dumps(cached[sha]) + "\n")

    pieces: dict[str, list[list[int]]] = {s: [] for s in SPLITS}
    for path, sha, split in jobs:
        rec = cached[sha]
        if rec["status"] != "ok":
            quarantine.append({"path": str(path), "sha256": sha, "code": rec["code"], "reason": rec["reason"]})
            continue
        manifest.append({"path": str(path), "sha256": sha, "split": split, "notes": rec["notes"],
                         "duration": rec["duration"], "tokens": rec["tokens"],
                         "transposed_copies": len(rec["augmented"])})
        pieces[split] += [rec["ids"], *rec["augmented"]]

    if not manifest:
        _write_lists(out, manifest, quarantine)
        raise UserError(f"none of the {len(files)} input files is usable; see {out / 'quarantine.jsonl'}")
    tokenizer = _final_tokenizer(settings, pieces, out)
    for split in SPLITS:
        save_split(out, split, [np.asarray(p, dtype=np.int32) for p in pieces[split]])
    _write_lists(out, manifest, quarantine)
    (out / "tokenizer.json").write_text(tokenizer_to_json(tokenizer))
    summary = {
        "inputs": inputs,
        "files": len(files),
        "used": len(manifest),
        "quarantined": len(quarantine),
        "quarantined_by_reason": dict(Counter(q["code"] for q in quarantine)),
        "pieces": {s: len(pieces[s]) for s in SPLITS},
        "tokens": {s: int(sum(len(p) for p in pieces[s])) for s in SPLITS},
        "vocab_size": tokenizer.vocab_size,
        "tokenizer_fingerprint": fingerprint(tokenizer),
        "settings": asdict(settings),
    }
    (out / "prepare.json").write_text(json.dumps(summary, indent=1))
    return summary


def _write_lists(out: Path, manifest: list[dict], quarantine: list[dict]) -> None:
    for name, rows in (("manifest.jsonl", manifest), ("quarantine.jsonl", quarantine)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _final_tokenizer(settings: PrepareSettings, pieces: dict[str, list[list[int]]], out: Path):
    """The base tokenizer, or one with BPE learned on the training split (cached).

    With BPE, every piece in ``pieces`` is re-encoded in place.
    """
    tokenizer = settings.base_tokenizer()
    if settings.bpe_vocab <= 0:
        return tokenizer
    if settings.bpe_vocab <= tokenizer.vocab_size:
        raise UserError(f"--bpe-vocab {settings.bpe_vocab} must exceed the base vocabulary ({tokenizer.vocab_size})")
    key = hashlib.sha256(json.dumps([settings.cache_key(), settings.bpe_vocab, pieces["train"]]).encode()).hexdigest()
    cached = out / ".cache" / f"bpe-{key[:16]}.json"
    if cached.exists():
        tokenizer = tokenizer_from_json(cached.read_text())
    else:
        def bar_strings(ids: list[int]) -> list[str]:
            seq = TokSequence(ids=list(ids))
            tokenizer.complete_sequence(seq)
            bars = [bar.ids for bar in seq.split_per_bars() if len(bar) > 0]
            return tokenizer._ids_to_bytes(bars, as_one_str=True)  # what miditok's TokTrainingIterator feeds

        tokenizer.train(vocab_size=settings.bpe_vocab, model="BPE", iterator=[bar_strings(p) for p in pieces["train"]])
        cached.write_text(tokenizer_to_json(tokenizer))
    for split in SPLITS:
        seqs = [TokSequence(ids=list(ids)) for ids in pieces[split]]
        if seqs:
            tokenizer.encode_token_ids(seqs)
        pieces[split] = [s.ids for s in seqs]
    return tokenizer


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
