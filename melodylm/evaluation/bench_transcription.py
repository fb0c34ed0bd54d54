"""Melody transcription with the LM prior, on real audio: ``melodylm bench transcription`` (``make bench-transcription``).

Nottingham tunes from the validation and test splits of the melody LM's data
(``datasets/prepared/nottingham-melody-t5/manifest.jsonl``, which ``make melody-lm`` writes), first ``--seconds``
of each, rendered with fluidsynth (FluidR3_GM) as a flute melody (program 73)
with the piano chord accompaniment (``MIDI/chords``, same file names), and as
the flute alone. basic-pitch (ONNX) gives note/onset posteriors; the melody
is scored against the melody MIDI with ``mir_eval.transcription`` (onset F1
at 50 ms; onset+offset F1 with mir_eval's default offset tolerance), mean
over tunes.

Rows: basic-pitch's notes keeping the highest pitch per onset; the
segments' best acoustic path (λ = 0); the LM prior; an oracle
that puts the true pitch (or no note) on the same acoustic segments. The
decoder is given the tunes' tempo (120 quarter notes per minute, as all of
these files) and time signature, the way a beat tracker would; the audio is
transcribed blind. One more row takes no oracle grid: librosa's beats give
the pulse, and the tempo level, meter and first downbeat are searched, the
grid kept being the one whose decoding scores best by acoustic + λ·LM
(:mod:`melodylm.prior.meter`), with the settings tuned for the oracle grid.

Tuning, on the validation tunes only: the onset shift (basic-pitch's onsets
come late on the flute's soft attack) by the oracle's F1; then λ, the
skip settings, the candidate margin and whether repeated notes are held
(:func:`~melodylm.prior.notes.hold_repeats`) by the mixture's onset F1 among
the settings that keep the clean flute's onset F1 within 0.005 of the best
acoustic-only result (the prior must not make clean audio worse), with beam
``--tune-beam``; then the smallest beam among the best. Reported: the test
tunes.

Needs the transcribe extra and fluidsynth (``make transcribe-extra audio``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from symusic import Score

from melodylm.audio import render_wav, synthesizer
from melodylm.checkpoint import load
from melodylm.errors import UserError
from melodylm.evaluation.report import machine, table
from melodylm.prior import acoustic
from melodylm.prior.decode import acoustic_only, decode, distinct_onsets
from melodylm.prior.meter import beat_line, candidate_grids, search, track_beats
from melodylm.prior.notes import Grid, Note, hold_repeats, score_to_notes
from melodylm.prior.posteriors import SegmentOptions, refine_offsets, segments
from melodylm.progress import progress_bar

FLUTE, PIANO = 73, 0


def pick_tunes(manifest: Path, split: str, n: int, chords: Path) -> list[Path]:
    """``n`` tunes of ``split`` that have a chord file, in a fixed pseudo-random order (by content hash)."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == split and (chords / Path(r["path"]).name).is_file()]
    rows.sort(key=lambda r: hashlib.sha256(r["sha256"].encode()).hexdigest())
    return [chords.parent / "melody" / Path(r["path"]).name for r in rows[:n]]


def _clip(score: Score, seconds: float, program: int) -> Score:
    score = score.to("second").clip(0, seconds, clip_end=False)
    for track in score.tracks:
        track.program = program
    return score


def render(tune: Path, chords: Path, seconds: float, out: Path) -> dict[str, Path]:
    """Flute-only and flute+piano WAVs of the tune's first ``seconds`` (cached)."""
    paths = {"flute": out / f"{tune.stem}.flute.wav", "mix": out / f"{tune.stem}.mix.wav"}
    if all(p.is_file() for p in paths.values()):
        return paths
    melody = _clip(Score(str(tune)), seconds, FLUTE)
    accomp = _clip(Score(str(chords / tune.name)), seconds, PIANO)
    render_wav(melody, paths["flute"], synth="fluidsynth")
    mix = melody.copy()
    for track in accomp.tracks:
        mix.tracks.append(track)
    render_wav(mix, paths["mix"], synth="fluidsynth")
    return paths


def bp_output(wav: Path) -> dict[str, np.ndarray]:
    cache = wav.with_suffix(".bp.npz")
    if cache.is_file():
        return dict(np.load(cache))
    out = acoustic.basic_pitch_output(wav)
    np.savez_compressed(cache, **{k: out[k] for k in ("note", "onset", "contour")})
    return out


def reference(tune: Path, seconds: float) -> tuple[list[Note], Grid]:
    score = Score(str(tune))
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    qpm = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
    grid = Grid(qpm, (ts.numerator, ts.denominator) if ts else (4, 4), 0.0)
    return [n for n in score_to_notes(score) if n.onset < seconds - 0.05], grid


def f1(ref: list[Note], est: list[Note]) -> tuple[float, float]:
    """(onset F1 at 50 ms, onset+offset F1) from mir_eval.transcription."""
    import mir_eval

    def arrays(notes):
        iv = np.array([[n.onset, max(n.offset, n.onset + 1e-3)] for n in notes]).reshape(-1, 2)
        hz = np.array([440.0 * 2 ** ((n.pitch - 69) / 12) for n in notes])
        return iv, hz

    (ri, rp), (ei, ep) = arrays(ref), arrays(est)
    if not len(est):
        return 0.0, 0.0
    on = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=0.05, offset_ratio=None)[2]
    off = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=0.05)[2]
    return on, off


def oracle(segs, ref: list[Note]) -> list[Note]:
    """The true pitch on each acoustic segment (nearest reference onset within 50 ms), else no note."""
    onsets = np.array([n.onset for n in ref])
    out = []
    for s in segs:
        j = int(np.argmin(np.abs(onsets - s.onset))) if len(ref) else -1
        if j < 0 or abs(onsets[j] - s.onset) > 0.05:
            continue
        pitch = ref[j].pitch
        cand = next((c for c in s.candidates if c.pitch == pitch), None)
        out.append(Note(s.onset, cand.offset if cand else s.end, pitch))
    return out


class Tune:
    """One rendered tune in one condition: reference, grid, posteriors, basic-pitch notes."""

    def __init__(self, path: Path, wav: Path, seconds: float):
        self.name, self.wav = path.stem, wav
        self.ref, self.grid = reference(path, seconds)
        out = bp_output(wav)
        self.post = acoustic.posteriorgram(out)
        self.bp_notes = acoustic.basic_pitch_notes(out)
        self._pulse = None

    @property
    def pulse(self) -> tuple[float, float]:
        """The tracked beat's period and phase (s), from the audio alone (cached beside it)."""
        if self._pulse is None:
            cache = self.wav.with_suffix(".beats.npy")
            if not cache.is_file():
                np.save(cache, track_beats(self.wav))
            self._pulse = beat_line(np.load(cache))
        return self._pulse

    def grid_right(self, grid: Grid) -> tuple[bool, bool]:
        """(the tempo within 2 % of the truth's, the same time signature); the downbeat is not checked."""
        return abs(grid.qpm / self.grid.qpm - 1) < 0.02, grid.time_signature == self.grid.time_signature


def run_system(tunes: list[Tune], system: str, lm=None, lam=1.0, beam=8, opts=SegmentOptions(), bonus=0.0,
               repeats: bool = False) -> dict:
    scores, seconds, grids = [], 0.0, {}
    for t in tunes:
        start = time.perf_counter()
        if system == "estimated":  # no oracle grid: the beat tracker's pulse read by the LM (prior/meter.py)
            raw = segments(t.post, opts)
            choice = search(lm, raw, candidate_grids(*t.pulse, raw[0].onset if raw else 0.0), lam=lam,
                            beam_size=beam, note_bonus=bonus)
            g = choice.grid
            grids[t.name] = {"qpm": round(g.qpm, 2), "time_signature": "/".join(map(str, g.time_signature)),
                             "origin": round(g.origin, 3), "right": t.grid_right(g)}
            est = choice.transcription.notes if repeats else hold_repeats(choice.transcription.notes)
        elif system == "keep_highest":
            est = acoustic.keep_highest(t.bp_notes)
        else:
            segs = distinct_onsets(segments(t.post, opts), t.grid)
            if system == "oracle":
                est = oracle(segs, t.ref)
            elif system == "acoustic":
                est = acoustic_only(segs).notes
            else:
                est = decode(lm, segs, t.grid, lam=lam, beam_size=beam, note_bonus=bonus).notes
            if system != "oracle" and not repeats:
                est = hold_repeats(est)
        seconds += time.perf_counter() - start
        if system != "keep_highest":
            est = refine_offsets(est, t.post)
        scores.append(f1(t.ref, acoustic.monophonic(est)))
    arr = np.array(scores)
    out = {"onset_f1": float(arr[:, 0].mean()), "onset_offset_f1": float(arr[:, 1].mean()),
           "seconds": seconds, "per_tune": {t.name: s for t, s in zip(tunes, scores)}}
    if system == "estimated":
        out["tempo_right"] = float(np.mean([g["right"][0] for g in grids.values()]))
        out["meter_right"] = float(np.mean([g["right"][1] for g in grids.values()]))
        out["grids"] = grids
    return out


def add_arguments(p) -> None:
    p.add_argument("--ckpt", default="checkpoints/nottingham-melody", help="melody LM checkpoint or run folder "
                   "(default checkpoints/nottingham-melody, from `make melody-lm`)")
    p.add_argument("--data", type=Path, default=Path("datasets/prepared/nottingham-melody-t5"),
                   help="prepared folder whose manifest gives the splits (default: the one `make melody-lm` writes)")
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("MELODYLM_SHARED_DATA", "../shared/data")),
                   help="the shared data folder holding nottingham/MIDI (default $MELODYLM_SHARED_DATA or ../shared/data)")
    p.add_argument("--val", type=int, default=10, help="validation tunes (tuning)")
    p.add_argument("--test", type=int, default=20, help="test tunes (reported)")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of each tune")
    p.add_argument("--lams", default=None, help="LM weights tried on the validation tunes (default 0.5,1; "
                   "--polyphonic: 0.05,0.1,0.25,0.5,1)")
    p.add_argument("--beams", default=None, help="beam sizes tried on the validation tunes, after the rest "
                   "(default 1,4,8)")
    p.add_argument("--repeats", default="hold,keep",
                   help="repeated notes tried: 'hold' merges a note into the one before at the same pitch, 'keep' keeps it")
    p.add_argument("--tune-beam", type=int, default=1, help="beam size while tuning λ and the skip settings")
    p.add_argument("--margins", default="none,3", help="candidate margins tried ('none': all top-k candidates)")
    p.add_argument("--skips", default="-1:8",
                   help="SKIP:NOTE_BONUS pairs tried besides never skipping a segment")
    p.add_argument("--shifts", default="0,-0.02,-0.03,-0.04", help="onset shifts (s) tried (chosen by the oracle)")
    p.add_argument("--out", type=Path, default=Path("runs/transcription"), help="results folder (default runs/transcription)")


def run(args) -> dict:
    """Render, transcribe, tune on validation, report on test; writes ``OUT/results.json`` and returns it."""
    torch.set_num_threads(1)
    if synthesizer() != "fluidsynth":
        raise UserError("the transcription bench needs fluidsynth and a General MIDI soundfont: run `make audio`")
    acoustic._import_basic_pitch()
    chords = args.shared / "nottingham" / "MIDI" / "chords"
    if not chords.is_dir():
        raise UserError(f"{chords} does not exist: the bench renders Nottingham tunes from ../shared/data "
                        "(give --shared or set MELODYLM_SHARED_DATA)")
    if not (args.data / "manifest.jsonl").is_file():
        raise UserError(f"{args.data / 'manifest.jsonl'} does not exist: run `make melody-lm` first (or give --data)")
    lm = load(args.ckpt, kinds=("language_model",))
    audio_dir = args.out / "audio"
    splits = {"val": pick_tunes(args.data / "manifest.jsonl", "val", args.val, chords),
              "test": pick_tunes(args.data / "manifest.jsonl", "test", args.test, chords)}
    tunes: dict[tuple[str, str], list[Tune]] = {}
    with progress_bar() as bar:
        for split, files in splits.items():
            task = bar.add_task(f"render + basic-pitch ({split})", total=len(files))
            for f in files:
                wavs = render(f, chords, args.seconds, audio_dir)
                for cond, wav in wavs.items():
                    tunes.setdefault((split, cond), []).append(Tune(f, wav, args.seconds))
                bar.advance(task)

    # on the validation mixtures: the onset latency (by the oracle), then λ with the skip settings, then the beam
    shifts = [float(v) for v in args.shifts.split(",")]
    val = tunes[("val", "mix")]
    shift = max(shifts, key=lambda v: run_system(val, "oracle", opts=SegmentOptions(onset_shift=v))["onset_f1"])
    base = SegmentOptions(onset_shift=shift)
    print(f"onset shift {shift} s", flush=True)
    lams = [float(v) for v in (args.lams or "0.5,1").split(",")]
    beams = [int(v) for v in (args.beams or "1,4,8").split(",")]
    skips = [(None, 0.0)] + [(float(a), float(b)) for a, b in (v.split(":") for v in args.skips.split(",") if v)]
    flute_val = tunes[("val", "flute")]
    repeat_modes = {"hold": False, "keep": True}
    try:
        repeat_options = [repeat_modes[v] for v in args.repeats.split(",")]
    except KeyError as err:
        raise UserError(f"--repeats: expected hold and/or keep, got {err}") from None
    # the prior must not make clean audio worse than the best acoustic-only result
    floor = max(run_system(flute_val, "acoustic", opts=base, repeats=r)["onset_f1"] for r in (False, True)) - 0.005
    tuning, candidates = [], []
    margins = [None if v == "none" else float(v) for v in args.margins.split(",")]
    for lam, (skip, bonus), margin, repeats in itertools.product(lams, skips, margins, repeat_options):
        opts = replace(base, skip_logprob=skip, margin=margin)
        kw = dict(lam=lam, beam=args.tune_beam, opts=opts, bonus=bonus, repeats=repeats)
        r, rf = run_system(val, "prior", lm, **kw), run_system(flute_val, "prior", lm, **kw)
        tuning.append({"lam": lam, "skip": skip, "note_bonus": bonus, "margin": margin, "repeats": repeats,
                       "beam": args.tune_beam, "onset_f1": r["onset_f1"], "onset_offset_f1": r["onset_offset_f1"],
                       "flute_onset_f1": rf["onset_f1"], "seconds": r["seconds"]})
        print(f"val  lam={lam:<5} skip={skip!s:<5} bonus={bonus:<5} margin={margin!s:<5} repeats={repeats!s:<5} "
              f"beam={args.tune_beam}  mix onset F1 {r['onset_f1']:.3f}  "
              f"on+off {r['onset_offset_f1']:.3f}  flute onset F1 {rf['onset_f1']:.3f} (floor {floor:.3f})", flush=True)
        candidates.append((rf["onset_f1"] >= floor, r["onset_f1"] if rf["onset_f1"] >= floor else r["onset_f1"] + rf["onset_f1"],
                           lam, skip, bonus, margin, repeats))
    _, _, lam, skip, bonus, margin, repeats = max(candidates, key=lambda c: (c[0], c[1]))
    opts = replace(base, skip_logprob=skip, margin=margin)
    beam_f1 = {}
    for beam in beams:
        r = run_system(val, "prior", lm, lam=lam, beam=beam, opts=opts, bonus=bonus, repeats=repeats)
        beam_f1[beam] = r["onset_f1"]
        tuning.append({"lam": lam, "skip": skip, "note_bonus": bonus, "margin": margin, "repeats": repeats, "beam": beam,
                       "onset_f1": r["onset_f1"],
                       "onset_offset_f1": r["onset_offset_f1"], "seconds": r["seconds"]})
        print(f"val mix  lam={lam} skip={skip} bonus={bonus} beam={beam}  onset F1 {r['onset_f1']:.3f}  "
              f"({r['seconds']:.1f} s)", flush=True)
    beam = max(beam_f1, key=lambda b: (round(beam_f1[b], 3), -b))  # the smallest beam among the best
    print(f"chosen on validation: onset shift {shift}, lam={lam}, skip={skip}, note bonus={bonus}, margin={margin}, "
          f"repeats={'keep' if repeats else 'hold'}, beam={beam}", flush=True)

    results = {"machine": machine(), "ckpt": str(args.ckpt), "seconds": args.seconds,
               "tunes": {k: [f.stem for f in v] for k, v in splits.items()},
               "chosen": {"onset_shift": shift, "lam": lam, "skip": skip, "note_bonus": bonus, "margin": margin,
                          "repeats": "keep" if repeats else "hold", "beam": beam}, "tuning": tuning, "rows": {}}
    systems = [("basic-pitch notes, highest per onset", "keep_highest"),
               ("segments, acoustic only (λ = 0)" + ("" if repeats else ", repeats held"), "acoustic"),
               (f"segments + LM prior (λ = {lam}, beam {beam}" + (f", skip {skip}, bonus {bonus}" if skip is not None else "")
               + (f", margin {margin}" if margin is not None else "") + ("" if repeats else ", repeats held") + ")",
               "prior"),
               ("the same prior, grid estimated from the audio (tempo level, meter and downbeat searched)",
                "estimated"),
               ("oracle: true pitches on the segments", "oracle")]
    rows = []
    for cond in ("mix", "flute"):
        for split in ("val", "test"):
            for label, system in systems:
                r = run_system(tunes[(split, cond)], system, lm, lam=lam, beam=beam, opts=opts, bonus=bonus,
                               repeats=repeats)
                results["rows"][f"{cond}/{split}/{system}"] = r
                if split == "test":
                    right = (f" (tempo right on {r['tempo_right']:.0%}, time signature on {r['meter_right']:.0%})"
                             if "tempo_right" in r else "")
                    rows.append([cond, label + right, f"{r['onset_f1']:.3f}", f"{r['onset_offset_f1']:.3f}",
                                 f"{results['rows'][f'{cond}/val/{system}']['onset_f1']:.3f}"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(table(["audio", "system", f"test onset F1 ({args.test} tunes)", "test onset+offset F1",
                 f"val onset F1 ({args.val} tunes)"], rows))
    print(f"\n{machine()}; results in {args.out / 'results.json'}")
    return results
