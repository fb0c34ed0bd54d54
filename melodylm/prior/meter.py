"""Tempo, meter and first downbeat without an oracle: a beat tracker, then a search scored by acoustic + λ·LM.

librosa's beat tracker gives beat times, but which metrical level its beat
is (the quarter note, the half, the eighth, a jig's dotted quarter), the
meter and where the bars start it cannot say. :func:`beat_line` fits one
period and phase to the tracked beats (a rendered or played tune keeps a
steady tempo; the fit is far finer than librosa's tempo bins, whose 2-3 %
error would drift a grid by a beat within 30 s). :func:`candidate_grids`
then spans every reading of that pulse: the tracked beat taken as each
of ``FACTORS`` quarter notes, each meter of ``METERS``, and a first
downbeat on each quarter note of a bar before the first onset.
:func:`search` decodes the melody on every grid and keeps the one with the
best ``acoustic + λ·LM`` per onset: the interpretation under which the
melody is most probable music (grids too coarse to keep the heard onsets
apart are not interpretations of them). Any of the three a user knows is
given and not searched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melodylm.errors import UserError
from melodylm.prior.decode import Transcription, decode, distinct_onsets
from melodylm.prior.notes import Grid
from melodylm.prior.posteriors import Segment

# quarter notes per tracked beat: the tracker may follow eighths, quarters, a jig's dotted quarters, halves,
# a 6/8 or 3/4 bar, a 4/4 bar (on Nottingham mixtures it found 80 beats a minute in 6/8 tunes at 120 quarters)
FACTORS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
METERS = ((4, 4), (3, 4), (6, 8), (2, 4))
MERGE_TOLERANCE = 0.98  # a grid may merge 2 % of the onsets the finest grid keeps apart (jittered double onsets)
SEARCH_SECONDS = 20.0  # the grid is chosen on the onsets of the first 20 s, then the whole audio is decoded on it


def track_beats(audio: str | Path) -> np.ndarray:
    """Beat times (s) from librosa's beat tracker."""
    import librosa

    y, sr = librosa.load(str(audio), sr=22050, mono=True)
    _, frames = librosa.beat.beat_track(y=y, sr=sr)
    return librosa.frames_to_time(frames, sr=sr)


def beat_line(beats: np.ndarray) -> tuple[float, float]:
    """``(period, phase)`` in seconds of the steady pulse ``phase + k * period`` closest to the tracked beats.

    The median beat interval numbers the beats (a skipped or doubled beat keeps its place), then least
    squares fits the line; beats more than a third of a period off it are left out of a second fit.
    """
    beats = np.sort(np.asarray(beats, dtype=np.float64))
    if len(beats) < 4:
        raise UserError(f"the beat tracker found {len(beats)} beats: too few to estimate the tempo (give --bpm)")
    period = float(np.median(np.diff(beats)))
    k = np.round((beats - beats[0]) / period)
    for _ in range(2):
        period, phase = np.polyfit(k, beats, 1)
        keep = np.abs(beats - (phase + k * period)) < period / 3
        k, beats = k[keep], beats[keep]
    return float(period), float(phase)


def candidate_grids(period: float, phase: float, first_onset: float, qpm: float | None = None,
                    time_signature: tuple[int, int] | None = None, origin: float | None = None,
                    factors: tuple[float, ...] = FACTORS, meters=METERS) -> list[Grid]:
    """Every grid the pulse allows; ``qpm``, ``time_signature`` or ``origin`` fix what is known."""
    tempos = [qpm] if qpm else [60.0 / period * f for f in factors]
    grids = []
    for q in tempos:
        quarter = 60.0 / q
        # the pulse line's quarter note nearest the first onset (a given tempo keeps the tracked phase)
        anchor = phase + round((first_onset - phase) / quarter) * quarter
        for ts in [time_signature] if time_signature else meters:
            bar_quarters = ts[0] * 4 / ts[1]
            downbeats = range(int(np.ceil(bar_quarters)))
            starts = [origin] if origin is not None else [anchor - j * quarter for j in downbeats]
            grids += [Grid(q, ts, o) for o in starts]
    return grids


@dataclass
class GridChoice:
    """The grid with the best decoding, its transcription, and every grid tried with its score per onset."""

    grid: Grid
    transcription: Transcription
    tried: list[tuple[Grid, float]]


def search(lm, segs: list[Segment], grids: list[Grid], lam: float = 1.0, beam_size: int = 1,
           note_bonus: float = 0.0, keep: float = MERGE_TOLERANCE, seconds: float | None = SEARCH_SECONDS) -> GridChoice:
    """Decode ``segs`` on the grids of ``grids`` and keep the best by ``acoustic + lam * LM`` per onset.

    A grid too coarse for the heard onsets puts two of them on one position, and the decoder then
    explains one onset fewer, with one acoustic term and a note fewer to pay for: the total always favours
    it. So a grid is tried only if it keeps at least ``keep`` of the most onsets any grid keeps apart
    (:func:`~melodylm.prior.decode.distinct_onsets`), and the totals are compared per onset kept. The
    grids are compared on the segments of the first ``seconds`` after the first onset (None: all); the
    transcription returned is the whole of ``segs`` decoded on the best.
    """
    if not grids:
        raise UserError("no grid to search")
    whole = segs
    if seconds is not None and segs:
        segs = [s for s in segs if s.onset < segs[0].onset + seconds]
    kept = [len(distinct_onsets(segs, g)) for g in grids]
    most = max(kept)
    best, tried = None, []
    for g, n in zip(grids, kept):
        if n < keep * most:
            continue
        result = decode(lm, segs, g, lam=lam, beam_size=beam_size, note_bonus=note_bonus)
        score = result.total / max(n, 1)
        tried.append((g, score))
        if best is None or score > best[2]:
            best = (g, result, score)
    result = best[1] if whole is segs else decode(lm, whole, best[0], lam=lam, beam_size=beam_size,
                                                  note_bonus=note_bonus)
    return GridChoice(best[0], result, tried)
