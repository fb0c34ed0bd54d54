"""``melodylm prepare``: MIDI files -> manifest, quarantine and cached token arrays (:mod:`melodylm.data.prepare`)."""

from __future__ import annotations

import logging
from pathlib import Path

from melodylm.commands.args import existing_input, pitch_range, shifts
from melodylm.data.midi import CleanOptions
from melodylm.data.prepare import PrepareSettings, default_workers, prepare

log = logging.getLogger("melodylm")

DESCRIPTION = ("Check every input file in an isolated worker, tokenize the usable ones with miditok and cache token "
               "arrays per split. Inputs: folders (searched recursively), files, or music21:NAME for a corpus shipped "
               "with music21 (bach, oneills1850, essenFolksong, ryansMammoth, ...), exported once to MIDI under "
               "--export-dir.")


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folder, file or music21:NAME")
    p.add_argument("--out", required=True, type=Path, help="output folder (manifest, quarantine, tokens, tokenizer)")
    p.add_argument("--tokenizer", default="REMI", choices=["REMI", "TSD", "MIDILike"], help="miditok scheme (default REMI)")
    p.add_argument("--velocities", type=int, default=0, help="velocity bins; 0 leaves velocity out (default)")
    p.add_argument("--bpe-vocab", type=int, default=0, help="learn BPE on the training split up to this vocabulary size (0: off)")
    p.add_argument("--melody", action="store_true", help="reduce to one monophonic line: the highest note at each onset")
    p.add_argument("--tracks", default="", help="comma list of track indices or name substrings (default: all non-drum tracks)")
    p.add_argument("--pitch-range", type=pitch_range, default=(21, 109), help="LOW:HIGH MIDI pitches kept, high exclusive (default 21:109)")
    p.add_argument("--min-notes", type=int, default=16, help="quarantine files with fewer notes (default 16)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="quarantine files longer than this (default 600)")
    p.add_argument("--transpose", type=shifts, default=(0, 0), metavar="N|LOW:HIGH",
                   help="add transposed copies of training pieces: N for every shift in -N..N, or --transpose=-5:6 (default 0: none)")
    p.add_argument("--val-frac", type=float, default=0.1, help="share of files in the validation split (default 0.1)")
    p.add_argument("--test-frac", type=float, default=0.1, help="share of files in the test split (default 0.1)")
    p.add_argument("--workers", type=int, default=default_workers(), help="worker processes (default: CPU cores)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one file may take before it is quarantined (default 60)")
    p.add_argument("--export-dir", type=Path, default=Path("datasets"), help="where music21 corpora are exported to MIDI (default datasets/)")
    p.add_argument("--corpus-files", type=int, default=None, help="use only the first N source files of a music21 corpus")
    p.epilog = "example: melodylm prepare music21:oneills1850 --melody --transpose 3 --out datasets/prepared/oneills1850"


def main(args) -> int:
    for item in args.inputs:
        if not item.startswith("music21:"):
            existing_input(item, "input")
    settings = PrepareSettings(
        tokenizer=args.tokenizer, velocities=args.velocities, bpe_vocab=args.bpe_vocab,
        clean=CleanOptions(min_notes=args.min_notes, max_seconds=args.max_seconds, melody=args.melody,
                           tracks=[t.strip() for t in args.tracks.split(",") if t.strip()],
                           pitch_range=args.pitch_range),
        transpose=args.transpose, val_frac=args.val_frac, test_frac=args.test_frac,
    )
    summary = prepare(args.inputs, args.out, settings, workers=args.workers, timeout=args.timeout,
                      export_root=args.export_dir, corpus_files=args.corpus_files)
    log.info("%d files: %d used (pieces train/val/test %s), %d quarantined%s",
             summary["files"], summary["used"], "/".join(str(v) for v in summary["pieces"].values()),
             summary["quarantined"],
             "".join(f"\n  {n} {code}" for code, n in sorted(summary["quarantined_by_reason"].items())))
    log.info("tokens train/val/test %s, vocabulary %d; wrote %s/{manifest,quarantine}.jsonl, tokenizer.json, tokens/",
             "/".join(str(v) for v in summary["tokens"].values()), summary["vocab_size"], args.out)
    return 0
