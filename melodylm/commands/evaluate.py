"""``melodylm evaluate samples|seq2seq|playlist``: the numbers a generator is judged by, one subcommand each.

- ``samples``: music metrics of generated MIDI against held-out music (MGEval-style OA and KL);
- ``seq2seq nll|harmony|chordtones``: the conditional generators on the fixed test split;
- ``seq2seq progressions``: chords -> melody over built-in chord progressions outside any training data;
- ``playlist``: RecSys Challenge 2018 metrics of a playlist model against two baselines.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from melodylm.evaluation import chordtones, playlist, samples, seq2seq

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    s = sub.add_parser("samples", help="music metrics of generated MIDI vs a reference folder (MGEval-style OA/KL)",
                       description=samples.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example: melodylm evaluate samples samples/quickstart --reference "
                       "datasets/prepared/oneills1850/manifest.jsonl --split test")
    _add_samples_arguments(s)
    q = sub.add_parser("seq2seq", help="seq2seq test-split numbers: nll, harmony (melody -> chords), chordtones",
                       description=seq2seq.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    qsub = q.add_subparsers(dest="metric", metavar="METRIC", required=True)
    for name, what in (("nll", "NLL of the targets given their conditions, beside an unconditional LM"),
                       ("harmony", "chord accuracy per beat of melody -> chords, beside the tagger and a constant"),
                       ("chordtones", "share of strong-beat melody notes on chord tones, chords -> melody")):
        m = qsub.add_parser(name, help=what, description=what)
        m.add_argument("--ckpt", required=True, help="seq2seq checkpoint or run folder"
                       + (" (or a chord tagger's)" if name == "harmony" else ""))
        m.add_argument("--root", default=None, help="pair source folder (default: the checkpoint's)")
        m.add_argument("--cache-dir", default="datasets/seq2seq", help="tokenized-pair cache (default datasets/seq2seq)")
        m.add_argument("--split", default="test", choices=["val", "test"],
                       help="held-out split: tune on val, report test (default test)")
        m.add_argument("--limit", type=int, default=None, help="only the first N pairs of the split (quick checks)")
        m.add_argument("--json", type=Path, default=None, help="also write the result here")
        m.add_argument("--batch", type=int, default=16, help="conditions per decoder call (default 16)")
        if name in ("harmony", "chordtones"):
            m.add_argument("--may-end-early", action="store_true",
                           help="as in generate: let a generated part end before its condition does")
        if name in ("nll", "chordtones"):
            m.add_argument("--lm", default=None, help="unconditional LM checkpoint on the same targets")
        if name == "harmony":
            m.add_argument("--tagger", default=None, help="beat tagger checkpoint, scored beside the seq2seq model")
            m.add_argument("--votes", type=int, default=1,
                           help="sample this many harmonisations per melody and take each beat's most frequent "
                           "chord (default 1: greedy decoding)")
            m.add_argument("--blend", type=float, default=None, metavar="W",
                           help="with --tagger and --votes N: also score the blend, each beat's argmax of the "
                           "tagger's probability + W x the share of the N samples (default 1, chosen on the "
                           "Nottingham validation split)")
        if name in ("harmony", "chordtones"):  # what samples: --votes, chordtones
            m.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
            gen = chordtones.generate_defaults()
            m.add_argument("--top-p", type=float, default=gen.top_p, help=f"as in generate (default {gen.top_p:g})")
    _add_progressions_arguments(qsub)
    p = sub.add_parser("playlist", help="R-precision, NDCG and clicks of a playlist model on held-out playlists",
                       description=playlist.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="playlist checkpoint or run folder")
    p.add_argument("--playlists", required=True, help="the playlists JSONL the model was trained from")
    p.add_argument("--n", type=int, default=500, help="length of each ranked list (default 500, as in the challenge)")
    p.add_argument("--split", default="test", choices=["val", "test"], help="held-out split (default test)")
    p.add_argument("--out", type=Path, default=None, help="also write the report here (JSON)")


def _add_progressions_arguments(qsub) -> None:
    what = "sounding chord tones of chords -> melody samples over unseen progressions, beside shuffled chords"
    m = qsub.add_parser("progressions", help=what, description=chordtones.__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    gen = chordtones.generate_defaults()  # melodylm generate's sampling settings
    m.add_argument("--ckpt", required=True, help="chords -> melody seq2seq checkpoint or run folder")
    m.add_argument("--num", type=int, default=8, help="melodies per progression, one batch, one seed (default 8)")
    m.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every progression (default 0)")
    m.add_argument("--top-p", type=float, default=gen.top_p, help=f"as in generate (default {gen.top_p:g})")
    m.add_argument("--temperature", type=float, default=gen.temperature,
                   help=f"as in generate (default {gen.temperature:g})")
    m.add_argument("--may-end-early", action="store_true", help="as in generate")
    m.add_argument("--lm", default=None, help="unconditional LM checkpoint on the same tokens: a condition-blind "
                   "reference scored against the same chords")
    m.add_argument("--out", type=Path, default=None, help="also write every melody with its chords as MIDI here")
    m.add_argument("--json", type=Path, default=None, help="also write the result here")


def _add_samples_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("samples", type=Path, metavar="SAMPLES_DIR",
                        help="folder of generated MIDI files (searched recursively), e.g. `melodylm sample --out`")
    parser.add_argument("--reference", required=True, type=Path, metavar="DIR|MANIFEST",
                        help="folder of reference MIDI files (searched recursively), or a prepare manifest.jsonl")
    parser.add_argument("--split", default=None, choices=["train", "val", "test"],
                        help="with a manifest: only the files of this split (e.g. the held-out test tunes)")
    parser.add_argument("--training", type=Path, default=None, metavar="DIR|MANIFEST",
                        help="training pieces to check copying against: the share of pieces holding a run of "
                        f"{samples.COPY_RUN} melody pitches (in any key) found in one (default: the train split of "
                        "--reference when it is a manifest)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help="also write every number, per-file metrics included, to this JSON file")
    parser.add_argument("--max-files", type=int, default=None, metavar="N",
                        help="use at most N files per folder, spread evenly over the sorted paths (same N, same files)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes reading MIDI files (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds one file may take before it is skipped (default 60)")




def samples_main(args) -> int:
    report = samples.evaluate(args.samples, args.reference, args.max_files, args.workers, args.timeout, args.split,
                              training=args.training)
    s, r = report["samples"], report["reference"]
    print(f"generated: {s['pieces']} pieces from {s['dir']} ({len(s['skipped'])} skipped); "
          f"reference: {r['pieces']} pieces from {r['dir']} ({len(r['skipped'])} skipped)")
    print(samples.format_table(report["features"]))
    copied = report["copying"]
    if copied is not None:
        print(f"copying: {copied['samples']['copying']} of {copied['samples']['pieces']} samples and "
              f"{copied['reference']['copying']} of {copied['reference']['pieces']} reference pieces hold a run of "
              f"{copied['run']} melody pitches (any key) found in one of {copied['training_pieces']} training pieces")
    rate = report["invalid_token_rate"]
    if rate["mean"] is None:
        print("invalid_token_rate: absent (no sample sidecar JSON carries it)")
    else:
        print(f"invalid_token_rate: {rate['mean']:.4f} (mean of {rate['sidecars']} of {s['files']} sample sidecars)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(samples.json_safe(report), indent=1))
        log.info("wrote %s", args.json)
    return 0


def seq2seq_main(args) -> int:
    torch.set_num_threads(1)
    result = {"nll": seq2seq.run_nll, "harmony": seq2seq.run_harmony, "chordtones": seq2seq.run_chordtones,
              "progressions": chordtones.run_progressions}[args.metric](args)
    _report(result, args.json)
    return 0


def playlist_main(args) -> int:
    torch.set_num_threads(1)
    _report(playlist.evaluate(args.ckpt, args.playlists, args.n, split=args.split), args.out)
    return 0


def main(args) -> int:
    return {"samples": samples_main, "seq2seq": seq2seq_main, "playlist": playlist_main}[args.what](args)


def _report(result: dict, out: Path | None) -> None:
    text = json.dumps(result, indent=1)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
