"""``melodylm rescore`` and ``melodylm transcribe``: the arguments and what they run."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

from melodylm.checkpoint import load
from melodylm.errors import UserError
from melodylm.prior.rescore import NBEST_FORMAT, read_nbest, rescore

log = logging.getLogger("melodylm")

# Chosen on 10 Nottingham validation tunes with checkpoints/nottingham-melody (melodylm bench transcription):
# onset shift -0.03 s (basic-pitch's onsets come late), λ = 1, no margin (-1: keep all top-k), no skipping,
# repeats held; beam 1 scored as well as 4 and 8 there (0.906 against 0.904 and 0.904).
DEFAULT_LAM, DEFAULT_BEAM, DEFAULT_BONUS, DEFAULT_SKIP, DEFAULT_SHIFT, DEFAULT_MARGIN = 1.0, 1, 0.0, None, -0.03, -1.0
# --polyphonic: chosen on JSB's validation pieces by melodylm bench transcription --polyphonic (0.5 s frames;
# on Nottingham's 0.25 s frames θ 0.35, λ 0.1 scored best: docs/transcription.md)
POLY_THETA, POLY_LAM, POLY_BEAM, POLY_CANDIDATES, POLY_FRAMES_PER_BEAT = 0.2, 0.25, 4, 64, 2


def add_rescore_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = "N-best file format: " + NBEST_FORMAT
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--ckpt", required=True, help="language-model checkpoint file or run folder")
    p.add_argument("--nbest", required=True, type=Path, help="JSONL file, one N-best list per line")
    p.add_argument("--lam", type=float, default=DEFAULT_LAM, help=f"LM weight λ in acoustic + λ·LM (default {DEFAULT_LAM})")
    p.add_argument("--json", action="store_true", help="one JSON object per N-best list")


def add_transcribe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", type=Path, help="audio file (WAV, or anything librosa reads)")
    p.add_argument("--out", required=True, type=Path, help="MIDI file to write (the melody, or every note)")
    p.add_argument("--ckpt", default=None, help="melody LM checkpoint or run folder, or with --polyphonic a piano-roll "
                   "one (required unless --no-prior)")
    p.add_argument("--no-prior", action="store_true", help="acoustic scores only: the best path without the LM")
    p.add_argument("--lam", type=float, default=None,
                   help=f"LM weight λ (default {DEFAULT_LAM}; --polyphonic: {POLY_LAM})")
    p.add_argument("--beam", type=int, default=None, help=f"beam size (default {DEFAULT_BEAM}; --polyphonic: {POLY_BEAM})")
    p.add_argument("--note-bonus", type=float, default=DEFAULT_BONUS, help="nats per note added to the LM score (default 0)")
    p.add_argument("--skip", type=float, default=DEFAULT_SKIP,
                   help="allow segments without a melody onset, with this log-score offset (default: never skip)")
    p.add_argument("--repeats", action="store_true",
                   help="keep repeated notes (default: a note at the previous note's pitch is merged into it, since "
                   "accompaniment onsets under a held note look like repeats)")
    p.add_argument("--top-k", type=int, default=8, help="pitch candidates per segment (default 8)")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help="drop candidates this far (log-odds) below the segment's best (default: a negative value, "
                   "keep all top-k)")
    p.add_argument("--onset-shift", type=float, default=DEFAULT_SHIFT,
                   help=f"seconds added to every onset (default {DEFAULT_SHIFT}: basic-pitch's onsets come late)")
    p.add_argument("--bpm", type=float, default=None,
                   help="tempo in quarter notes per minute (default: from librosa's beats, the LM choosing how many "
                   "quarter notes a tracked beat is, ½ to 4; with --polyphonic the tracked beat is the quarter note)")
    p.add_argument("--time-signature", default=None,
                   help="meter for the LM's bar lines (default: chosen by the LM among 4/4, 3/4, 6/8, 2/4; "
                   "4/4 with --no-prior)")
    p.add_argument("--origin", type=float, default=None,
                   help="time (s) of the first downbeat (default: chosen by the LM among the quarter notes of a bar "
                   "before the first onset; the tracked beat nearest it with --no-prior)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    g = p.add_argument_group("polyphonic transcription (a piano-roll LM as the prior)")
    g.add_argument("--polyphonic", action="store_true",
                   help="every note, not a melody: basic-pitch's frame posteriors pooled onto the piano-roll "
                   "checkpoint's grid and decoded by a beam search over frames (acoustic + λ·LM)")
    g.add_argument("--threshold", type=float, default=POLY_THETA,
                   help=f"a key sounds where its posterior exceeds this, by the acoustics alone (default {POLY_THETA}, "
                   "chosen for quarter-note frames at 120 bpm; for frames of a quarter second 0.35 with --lam 0.1)")
    g.add_argument("--candidates", type=int, default=POLY_CANDIDATES,
                   help=f"acoustically best frames proposed per grid frame (default {POLY_CANDIDATES})")
    g.add_argument("--frames-per-beat", type=int, default=None,
                   help=f"grid frames per quarter note (default: the checkpoint's; {POLY_FRAMES_PER_BEAT} with "
                   "--no-prior and no --ckpt)")


def rescore_main(args) -> int:
    lists = read_nbest(args.nbest)
    lm = load(args.ckpt, kinds=("language_model",))
    for nb in lists:
        ranked = rescore(lm, nb.candidates, nb.grid, lam=args.lam)
        if args.json:
            print(json.dumps({"id": nb.id, "lam": args.lam, "ranking": [
                {"index": r.index, "acoustic": r.acoustic, "lm": r.lm, "total": r.total} for r in ranked]}))
        else:
            print(f"{nb.id}: best candidate {ranked[0].index} of {len(ranked)}" if ranked else f"{nb.id}: no candidates")
            for r in ranked:
                print(f"  #{r.index:<3} acoustic {r.acoustic:10.3f}  lm {r.lm:10.3f}  total {r.total:10.3f}")
    return 0


def _pulse(audio: Path) -> tuple[float, float]:
    """The tracked beat's period and phase (s) (:func:`melodylm.prior.meter.beat_line`)."""
    from melodylm.prior.meter import beat_line, track_beats

    return beat_line(track_beats(audio))


def transcribe_main(args) -> int:
    if args.polyphonic:
        return transcribe_polyphonic(args)
    import torch

    from melodylm.prior import acoustic
    from melodylm.prior.decode import acoustic_only, distinct_onsets
    from melodylm.prior.meter import candidate_grids, search
    from melodylm.prior.notes import Grid, hold_repeats, notes_to_score
    from melodylm.prior.posteriors import SegmentOptions, refine_offsets, segments

    if not args.no_prior and not args.ckpt:
        raise UserError("--ckpt is required unless --no-prior")
    args.lam = DEFAULT_LAM if args.lam is None else args.lam
    args.beam = DEFAULT_BEAM if args.beam is None else args.beam
    if args.beam < 1:
        raise UserError(f"--beam must be >= 1, got {args.beam}")
    if args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {args.top_k}")
    if not args.audio.is_file():
        raise UserError(f"{args.audio} does not exist")
    acoustic._import_basic_pitch()  # a clear message before any work when the extra is missing
    lm = None
    if not args.no_prior:
        lm = load(args.ckpt, kinds=("language_model",))
    torch.set_num_threads(1)  # batch-of-beam steps: threads cost more than they give
    meter = Grid.parse_time_signature(args.time_signature) if args.time_signature else None
    output = acoustic.basic_pitch_output(args.audio)
    post = acoustic.posteriorgram(output)
    opts = SegmentOptions(top_k=args.top_k, skip_logprob=args.skip, onset_shift=args.onset_shift,
                           margin=args.margin if args.margin >= 0 else None)
    raw = segments(post, opts)
    searched = 1
    if args.bpm is not None and meter is not None and args.origin is not None:
        grids = [Grid(args.bpm, meter, args.origin)]
    else:  # what is not given comes from the beat tracker, read by the LM (prior/meter.py)
        period, phase = _pulse(args.audio)
        first = raw[0].onset if raw else 0.0
        if lm is None:
            grids = candidate_grids(period, phase, first, args.bpm, meter or (4, 4), args.origin, factors=(1.0,))[:1]
        else:
            grids = candidate_grids(period, phase, first, args.bpm, meter, args.origin)
    if lm is None:
        grid = grids[0]
    else:
        choice = search(lm, raw, grids, lam=args.lam, beam_size=args.beam, note_bonus=args.note_bonus)
        grid, result, searched = choice.grid, choice.transcription, len(grids)
    segs = distinct_onsets(raw, grid)
    if lm is None:
        result = acoustic_only(segs)
    qpm = grid.qpm
    notes = result.notes if args.repeats else hold_repeats(result.notes)
    notes = acoustic.monophonic(refine_offsets(notes, post))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # the heard timing, not the LM's grid: time 0 is the audio's start (the tempo and meter are the grid's)
    notes_to_score(notes, replace(grid, snap=(), origin=0.0)).dump_midi(str(args.out))
    summary = {"audio": str(args.audio), "out": str(args.out), "notes": len(notes), "segments": len(segs),
               "prior": lm is not None, "lam": args.lam if lm else 0.0, "beam": args.beam, "qpm": qpm,
               "time_signature": "/".join(map(str, grid.time_signature)), "origin": grid.origin,
               "grids_searched": searched, "acoustic": result.acoustic, "lm": None if lm is None else result.lm}
    if args.json:
        print(json.dumps(summary))
    else:
        log.info("%s: %d notes from %d segments (%s; %.1f bpm, %d/%d, first downbeat %.2f s%s) -> %s", args.audio,
                 len(notes), len(segs), f"LM prior λ={args.lam}, beam {args.beam}" if lm else "acoustic only", qpm,
                 *grid.time_signature, grid.origin, f", best of {searched} grids" if searched > 1 else "", args.out)
    return 0


def transcribe_polyphonic(args) -> int:
    """``melodylm transcribe --polyphonic``: every note of the audio on a piano-roll checkpoint's frame grid."""
    import torch

    from melodylm.prior import acoustic
    from melodylm.prior import frames as FR

    lam = POLY_LAM if args.lam is None else args.lam
    beam = POLY_BEAM if args.beam is None else args.beam
    if not args.no_prior and not args.ckpt:
        raise UserError("--ckpt (a piano-roll checkpoint) is required unless --no-prior")
    if beam < 1 or args.candidates < 1:
        raise UserError(f"--beam and --candidates must be >= 1, got {beam} and {args.candidates}")
    if not 0 < args.threshold < 1:
        raise UserError(f"--threshold must be in (0, 1), got {args.threshold}")
    if not args.audio.is_file():
        raise UserError(f"{args.audio} does not exist")
    acoustic._import_basic_pitch()
    lm = load(args.ckpt, kinds=("pianoroll_language_model",)) if args.ckpt else None
    fpb = args.frames_per_beat or (lm.frames_per_beat if lm else POLY_FRAMES_PER_BEAT)
    if lm and args.frames_per_beat and args.frames_per_beat != lm.frames_per_beat and not args.no_prior:
        raise UserError(f"--frames-per-beat {args.frames_per_beat}: the checkpoint's grid has {lm.frames_per_beat} "
                        "frames per beat (its LM knows no other)")
    torch.set_num_threads(1)
    if args.bpm is not None and args.origin is not None:
        qpm, origin = args.bpm, args.origin
    else:  # the tracked beat is the quarter note; the first downbeat the tracked beat nearest the music's start
        period, phase = _pulse(args.audio)
        qpm = args.bpm or 60.0 / period
        origin = args.origin if args.origin is not None else phase % (60.0 / qpm)
    grid = FR.FrameGrid(qpm, fpb, origin)
    probs = FR.pool(acoustic.posteriorgram(acoustic.basic_pitch_output(args.audio)), grid)
    probs = probs[: FR.extent(probs, args.threshold)]
    if args.no_prior:
        roll, result = FR.threshold(probs, args.threshold), None
    else:
        result = FR.decode(lm, probs, lam=lam, beam_size=beam, candidates=args.candidates, theta=args.threshold)
        roll = result.roll
    args.out.parent.mkdir(parents=True, exist_ok=True)
    FR.roll_to_midi(roll, grid).dump_midi(str(args.out))
    summary = {"audio": str(args.audio), "out": str(args.out), "frames": int(len(roll)),
               "notes": len(FR.note_runs(roll)[0]),
               "prior": result is not None, "lam": lam if result else 0.0, "beam": beam, "qpm": qpm,
               "frames_per_beat": fpb, "threshold": args.threshold,
               "acoustic": result.acoustic if result else None, "lm": result.lm if result else None}
    if args.json:
        print(json.dumps(summary))
    else:
        log.info("%s: %d notes over %d frames (%s, %.1f bpm, %d frames per beat) -> %s", args.audio, summary["notes"],
                 len(roll), f"piano-roll LM prior λ={lam}, beam {beam}" if result else "acoustic only", qpm, fpb,
                 args.out)
    return 0
