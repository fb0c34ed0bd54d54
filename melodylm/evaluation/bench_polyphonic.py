"""Polyphonic transcription with a piano-roll LM prior: ``melodylm bench transcription --polyphonic``.

Pieces of a Boulanger-Lewandowski ``.mat`` file (the first ``--val``
validation and ``--test`` test pieces, the first ``--seconds`` of each) are
written on the checkpoint's frame grid at ``--bpm`` quarter notes per minute
and rendered with fluidsynth as an acoustic grand piano (FluidR3_GM,
velocity 80; a held key is one note, as the roll writes it). basic-pitch
(ONNX) transcribes the audio blind; its note posteriors are pooled onto the
grid (:func:`~melodylm.prior.frames.pool`; the decoders are given the tempo
and the first downbeat, the piece's length in frames too).

Rows: basic-pitch's own notes (its default thresholds), acoustic-only frames
(posterior above θ), the per-key two-state HMM (transitions counted on the
training rolls) and the LM prior (:func:`~melodylm.prior.frames.decode`).
Scores, mean over pieces: frame F1 on the grid from ``mir_eval.multipitch``
(the frames' start times, every key sounding in a frame) and note onset F1
from ``mir_eval.transcription`` (50 ms, no offset criterion; a run of frames
of one key is one note). θ is tuned for acoustic-only frames, then λ (with θ
again) for the HMM and for the prior, by frame F1 on the validation pieces
only; beam and candidates afterwards. Reported: the test pieces.

Needs the transcribe extra and fluidsynth (``make transcribe-extra audio``).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from melodylm.audio import render_wav, synthesizer
from melodylm.checkpoint import load
from melodylm.data import pianoroll as PR
from melodylm.errors import UserError
from melodylm.evaluation.bench_transcription import bp_output
from melodylm.evaluation.report import machine, table
from melodylm.prior import acoustic
from melodylm.prior import frames as FR
from melodylm.progress import progress_bar


def hz(midi) -> np.ndarray:
    """MIDI note numbers -> frequencies (Hz), as mir_eval scores them."""
    return 440.0 * 2 ** ((np.asarray(midi, dtype=float) - 69) / 12)


def scores(ref: np.ndarray, est: np.ndarray, grid: FR.FrameGrid, est_notes=None) -> dict[str, float]:
    """Frame F1 (mir_eval.multipitch) and note onset F1 (mir_eval.transcription) of ``est`` against ``ref``.

    ``est_notes`` (intervals, Hz), when given, are scored for notes in place of ``est``'s runs (basic-pitch's
    own notes keep their own timing).
    """
    import mir_eval  # imported when a bench runs, not by every command

    times = grid.starts(len(ref))

    def freqs(roll):
        return [hz(np.flatnonzero(f) + PR.LOWEST) for f in roll]

    p, r = mir_eval.multipitch.metrics(times, freqs(ref), times, freqs(est))[:2]
    out = {"frame_f1": 0.0 if p + r == 0 else 2 * p * r / (p + r), "frame_precision": p, "frame_recall": r}
    (ri, rp), (ei, ep) = notes(ref, grid), (est_notes if est_notes is not None else notes(est, grid))
    out["note_f1"] = float(mir_eval.transcription.precision_recall_f1_overlap(
        ri, rp, ei, ep, onset_tolerance=0.05, offset_ratio=None)[2]) if len(ri) and len(ei) else 0.0
    return out


def notes(roll: np.ndarray, grid: FR.FrameGrid) -> tuple[np.ndarray, np.ndarray]:
    """Note intervals ``(n, 2)`` (s) and pitches (Hz) of a roll: each run of frames of one key is one note."""
    keys, starts, ends = FR.note_runs(roll)
    spf = grid.seconds_per_frame
    intervals = np.stack([grid.origin + starts * spf, grid.origin + ends * spf], axis=1).reshape(-1, 2)
    return intervals, hz(keys + PR.LOWEST)


def note_frames(bp: list, frames: int, grid: FR.FrameGrid) -> np.ndarray:
    """basic-pitch's notes on the grid: a key sounds in a frame when one of its notes covers the frame's middle."""
    roll = np.zeros((frames, PR.KEYS), bool)
    middles = grid.starts(frames) + grid.seconds_per_frame / 2
    for n in bp:
        if PR.LOWEST <= n.pitch < PR.LOWEST + PR.KEYS:
            roll[(middles >= n.onset) & (middles < n.offset), n.pitch - PR.LOWEST] = True
    return roll


class Piece:
    """One rendered piece: its reference roll on the grid, pooled posteriors and basic-pitch's notes."""

    def __init__(self, name: str, roll: np.ndarray, wav: Path, grid: FR.FrameGrid):
        self.name, self.ref, self.grid = name, roll, grid
        out = bp_output(wav)
        self.probs = FR.pool(acoustic.posteriorgram(out), grid, frames=len(roll))
        self.bp = acoustic.basic_pitch_notes(out)


def run_system(pieces: list[Piece], system: str, lm=None, transitions=None, theta=0.5, lam=1.0, beam=8,
               candidates=8) -> dict:
    """Mean scores over ``pieces`` of one system, with its decoding time."""
    rows, seconds = [], 0.0
    for p in pieces:
        start = time.perf_counter()
        est_notes = None
        if system == "basic-pitch":
            est = note_frames(p.bp, len(p.ref), p.grid)
            est_notes = (np.array([[n.onset, n.offset] for n in p.bp]).reshape(-1, 2),
                         hz(np.array([n.pitch for n in p.bp], dtype=float)))
        elif system == "acoustic":
            est = FR.threshold(p.probs, theta)
        elif system == "hmm":
            est = FR.hmm(p.probs, transitions, lam=lam, theta=theta)
        else:
            est = FR.decode(lm, p.probs, lam=lam, beam_size=beam, candidates=candidates, theta=theta).roll
        seconds += time.perf_counter() - start
        rows.append(scores(p.ref, est, p.grid, est_notes))
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["seconds"] = seconds
    return out


def add_arguments(p) -> None:
    """The --polyphonic options of ``melodylm bench transcription`` (the others are the melody bench's)."""
    g = p.add_argument_group("--polyphonic (a piano-roll checkpoint and its .mat file)")
    g.add_argument("--polyphonic", action="store_true",
                   help="polyphonic transcription: --data is a piano-roll .mat file, --ckpt a piano-roll checkpoint")
    g.add_argument("--bpm", type=float, default=120.0, help="tempo the pieces are rendered at (default 120)")
    g.add_argument("--thetas", default="0.15,0.2,0.25,0.3,0.35,0.4", help="acoustic thresholds tried on the validation pieces")
    g.add_argument("--candidates", type=int, default=64, help="acoustic frames proposed per grid frame (default 64)")


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def run(args) -> dict:
    """Render, transcribe, tune on validation, report on test; writes ``OUT/results.json`` and returns it."""
    torch.set_num_threads(1)
    if synthesizer() != "fluidsynth":
        raise UserError("the transcription bench needs fluidsynth and a General MIDI soundfont: run `make audio`")
    acoustic._import_basic_pitch()
    if args.data.suffix != ".mat":
        raise UserError(f"--polyphonic takes a piano-roll .mat file as --data, got {args.data}")
    splits = PR.load_mat(args.data)
    lm = load(args.ckpt, kinds=("pianoroll_language_model",))
    grid = FR.FrameGrid(args.bpm, lm.frames_per_beat)
    frames = int(args.seconds / grid.seconds_per_frame)
    audio_dir = args.out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    pieces: dict[str, list[Piece]] = {}
    with progress_bar() as bar:
        for split, n in (("val", args.val), ("test", args.test)):
            chosen = splits[split][:n]
            task = bar.add_task(f"render + basic-pitch ({split})", total=len(chosen))
            for i, roll in enumerate(chosen):
                roll = roll[:frames]
                name = f"{args.data.stem}-{split}-{i:03d}-{args.bpm:g}bpm-{frames}f"
                wav = audio_dir / f"{name}.wav"
                if not wav.is_file():
                    render_wav(FR.roll_to_midi(roll, grid), wav, synth="fluidsynth")
                pieces.setdefault(split, []).append(Piece(name, roll, wav, grid))
                bar.advance(task)
    transitions = FR.key_transitions(splits["train"])
    val = pieces["val"]
    thetas = _floats(args.thetas, "--thetas")
    lams = _floats(args.lams or "0.05,0.1,0.25,0.5,1", "--lams")
    beams = [int(v) for v in _floats(args.beams or "1,4,8", "--beams")]
    tuning = []

    def tried(system, **kw):
        r = run_system(val, system, lm=lm, transitions=transitions, candidates=args.candidates, **kw)
        tuning.append({"system": system, **kw, **r})
        print(f"val {system:<8} " + " ".join(f"{k}={v}" for k, v in kw.items())
              + f"  frame F1 {r['frame_f1']:.3f}  note F1 {r['note_f1']:.3f}  ({r['seconds']:.1f} s)", flush=True)
        return r["frame_f1"]

    theta = max(thetas, key=lambda t: tried("acoustic", theta=t))
    hmm_theta, hmm_lam = max(itertools.product(thetas, lams), key=lambda c: tried("hmm", theta=c[0], lam=c[1]))
    tune_beam = max(beams)
    lm_theta, lm_lam = max(itertools.product(thetas, lams),
                           key=lambda c: tried("prior", theta=c[0], lam=c[1], beam=tune_beam))
    f1_beam = {b: tried("prior", theta=lm_theta, lam=lm_lam, beam=b) for b in beams}
    beam = max(f1_beam, key=lambda b: (round(f1_beam[b], 3), -b))  # the smallest beam among the best
    chosen = {"acoustic": {"theta": theta}, "hmm": {"theta": hmm_theta, "lam": hmm_lam},
              "prior": {"theta": lm_theta, "lam": lm_lam, "beam": beam, "candidates": args.candidates}}
    print(f"chosen on validation: {json.dumps(chosen)}", flush=True)

    systems = [("basic-pitch notes (its thresholds)", "basic-pitch", {}),
               (f"acoustic only (θ = {theta})", "acoustic", chosen["acoustic"]),
               (f"two-state HMM per key (θ = {hmm_theta}, λ = {hmm_lam})", "hmm", chosen["hmm"]),
               (f"piano-roll LM prior (θ = {lm_theta}, λ = {lm_lam}, beam {beam})", "prior",
                {k: v for k, v in chosen["prior"].items() if k != "candidates"})]
    results = {"machine": machine(), "ckpt": str(args.ckpt), "data": str(args.data), "bpm": args.bpm,
               "seconds": args.seconds, "frames_per_beat": grid.frames_per_beat,
               "pieces": {k: [p.name for p in v] for k, v in pieces.items()}, "chosen": chosen, "tuning": tuning,
               "rows": {}}
    rows = []
    for label, system, kw in systems:
        r = {split: run_system(pieces[split], system, lm=lm, transitions=transitions, candidates=args.candidates,
                               **kw) for split in ("val", "test")}
        results["rows"][system] = r
        rows.append([label, f"{r['test']['frame_f1']:.3f}", f"{r['test']['note_f1']:.3f}",
                     f"{r['val']['frame_f1']:.3f}"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(table(["system", f"test frame F1 ({len(pieces['test'])} pieces)", "test note onset F1",
                 f"val frame F1 ({len(val)} pieces)"], rows))
    print(f"\n{machine()}; results in {args.out / 'results.json'}")
    return results
