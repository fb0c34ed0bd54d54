"""Strong-beat chord tones: does the melody note sounding on the bar's strong beats belong to the chord then?

:func:`sounding_chord_tone_share`: at the start of chosen beats of every bar
(by default the first beat, and the middle one in 4/4, 6/8, 12/8: beats 1 and
3 of 4/4, beat 1 of 3/4, both dotted quarters of 6/8), the melody note
sounding at that instant is a hit when its pitch class sounds in the chord
part then. Instants with no melody note or no chord sounding are not counted.
Unlike the onset-based share of ``evaluate seq2seq chordtones``, a note held
over the beat counts, and a rest is not rewarded.
"""

from __future__ import annotations

import numpy as np
from symusic import Score

from melodylm.data.chords import sounding_pitch_classes


def bar_beats(num: int, den: int, tpq: int) -> tuple[int, int]:
    """(beats in a bar of ``num/den``, ticks per beat): a beat is the denominator's note, or three of them in
    compound meters (3/8, 6/8, 9/8, 12/8: a dotted quarter)."""
    unit = tpq * 4 // den
    return (num // 3, 3 * unit) if den >= 8 and num % 3 == 0 else (num, unit)


def default_beats(num: int, den: int) -> tuple[int, ...]:
    """Strong beats of a bar (0-based): the first, and the middle one in 4/4, 6/8, 12/8 (4/2, 6/4, ...)."""
    count, _ = bar_beats(num, den, 48)
    return (0, count // 2) if num in (4, 6, 12) else (0,)


def beat_ticks(score: Score, beats: tuple[int, ...] | None = None, end: int | None = None) -> np.ndarray:
    """Start ticks of ``beats`` (0-based, in each bar's own beats) of every bar of ``score``'s time signatures.

    ``beats=None`` takes :func:`default_beats` of each bar's meter; beats past a bar's last are skipped. Bars run
    from tick 0 (4/4 until the first time signature) to ``end`` (default: the score's end).
    """
    tpq = score.ticks_per_quarter
    end = int(score.end()) if end is None else int(end)
    sigs = [(0, 4, 4)] + sorted((int(ts.time), ts.numerator, ts.denominator) for ts in score.time_signatures)
    out = []
    for i, (start, num, den) in enumerate(sigs):
        stop = sigs[i + 1][0] if i + 1 < len(sigs) else max(end, 1)
        count, beat = bar_beats(num, den, tpq)
        wanted = [b for b in (default_beats(num, den) if beats is None else beats) if 0 <= b < count]
        for bar in range(start, stop, max(num * tpq * 4 // den, 1)):
            out += [bar + b * beat for b in wanted if bar + b * beat < stop]
    return np.array(sorted(set(out)), dtype=np.int64)


def sounding_melody_pitches(melody: Score, ticks: np.ndarray) -> list[int | None]:
    """At each tick, the pitch of the melody note sounding then (onset <= t < end; the latest onset, then the
    highest pitch, when several do), or None."""
    notes = [t.notes.numpy() for t in melody.tracks]
    if not notes or sum(len(n["time"]) for n in notes) == 0:
        return [None] * len(ticks)
    time = np.concatenate([n["time"] for n in notes]).astype(np.int64)
    end = time + np.concatenate([n["duration"] for n in notes]).astype(np.int64)
    pitch = np.concatenate([n["pitch"] for n in notes]).astype(np.int64)
    out = []
    for t in ticks:
        on = np.flatnonzero((time <= t) & (end > t))
        out.append(int(pitch[on[np.lexsort((pitch[on], time[on]))[-1]]]) if len(on) else None)
    return out


def sounding_chord_tone_share(melody: Score, chords: Score, beats: tuple[int, ...] | None = None) -> tuple[int, int]:
    """(hits, counted instants): at the start of ``beats`` of every bar, is the sounding melody pitch class a tone of
    the sounding chord?

    ``beats`` are 0-based beats of the bar (quarter notes in x/4, dotted quarters in 6/8, 9/8, 12/8), the same in
    every bar; ``None`` (default) takes each bar's strong beats, (0, 2) in 4/4, (0,) in 3/4, (0, 1) in 6/8. Bars
    come from ``chords``' time signatures (``melody``'s when it has none). Instants where no melody note or no
    chord sounds are not counted. ``melody`` is read at ``chords``' ticks per quarter.
    """
    tpq = chords.ticks_per_quarter
    if melody.ticks_per_quarter != tpq:
        melody = melody.resample(tpq, min_dur=1)
    grid = chords if len(chords.time_signatures) or not len(melody.time_signatures) else melody
    ticks = beat_ticks(grid, beats, end=max(int(chords.end()), int(melody.end())))
    hits = count = 0
    for p, (pcs, _) in zip(sounding_melody_pitches(melody, ticks), sounding_pitch_classes(chords, ticks)):
        if p is not None and pcs:
            hits += p % 12 in pcs
            count += 1
    return hits, count
