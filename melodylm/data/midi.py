"""One MIDI file in, one clean symusic Score out (or a reason it cannot be used).

Everything here runs inside prepare's isolated worker processes and again in
``melodylm score``, so the same cleaning applies to training data and to the
files a trained model is asked to score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from symusic import Note, Score, Track

from melodylm.errors import UserError

MIDI_SUFFIXES = (".mid", ".midi")


class Rejected(Exception):
    """A file that cannot be used; ``code`` groups reasons in summaries."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


@dataclass
class CleanOptions:
    """How a file becomes training material.

    ``pitch_range`` is half-open in MIDI note numbers; notes outside it are
    dropped (and counted). ``tracks`` selects tracks by index or by a
    case-insensitive substring of the track name (empty: every non-drum track).
    ``melody`` reduces the selection to one monophonic line: the highest note
    at each onset, cut where the next onset starts.
    """

    min_notes: int = 16
    max_seconds: float = 600.0
    melody: bool = False
    tracks: list[str] = field(default_factory=list)
    pitch_range: tuple[int, int] = (21, 109)

    def to_dict(self) -> dict:
        return asdict(self)


def read_score(data: bytes) -> Score:
    """Parse MIDI bytes with symusic; raise :class:`Rejected` with the reason."""
    if len(data) == 0:
        raise Rejected("empty", "empty file (0 bytes)")
    if not data.startswith(b"MThd"):
        raise Rejected("not_midi", "not a MIDI file (no MThd header)")
    try:
        return Score.from_midi(data)
    except Exception as err:  # symusic raises RuntimeError/ValueError for broken files
        raise Rejected("unreadable", f"unreadable MIDI: {err}") from err


def select_tracks(score: Score, spec: list[str]) -> list[Track]:
    pitched = [(i, t) for i, t in enumerate(score.tracks) if not t.is_drum and t.note_num() > 0]
    if not spec:
        return [t for _, t in pitched]
    chosen = []
    for i, track in pitched:
        for item in spec:
            if (item.isdigit() and int(item) == i) or (not item.isdigit() and item.lower() in track.name.lower()):
                chosen.append(track)
                break
    return chosen


def skyline(time: np.ndarray, duration: np.ndarray, pitch: np.ndarray, velocity: np.ndarray):
    """Highest note per onset, each cut at the next onset: a monophonic line.

    Arrays are parallel note attributes in ticks; returns the same four arrays.
    """
    order = np.lexsort((-pitch.astype(np.int32), time))
    time, duration, pitch, velocity = time[order], duration[order], pitch[order], velocity[order]
    first = np.ones(len(time), dtype=bool)
    first[1:] = time[1:] != time[:-1]
    time, duration, pitch, velocity = time[first], duration[first], pitch[first], velocity[first]
    if len(time) > 1:
        gap = np.diff(time)
        duration = duration.copy()
        duration[:-1] = np.minimum(duration[:-1], gap)
    return time, duration, pitch, velocity


def clean_score(score: Score, options: CleanOptions) -> tuple[Score, dict]:
    """Apply track selection, melody extraction and pitch range; check length.

    Returns the cleaned one-track-per-source score and its stats (``notes``,
    ``duration`` in seconds, ``dropped_out_of_range``).
    """
    tracks = select_tracks(score, options.tracks)
    if not tracks:
        raise Rejected("no_notes", "no pitched notes in the selected tracks")
    low, high = options.pitch_range
    out = Score(score.ticks_per_quarter)
    out.tempos = score.tempos.copy()
    out.time_signatures = score.time_signatures.copy()
    out.key_signatures = score.key_signatures.copy()
    dropped = 0
    sources = [tracks] if options.melody else [[t] for t in tracks]
    for group in sources:
        arrays = [t.notes.numpy() for t in group]
        cols = {k: np.concatenate([a[k] for a in arrays]) for k in ("time", "duration", "pitch", "velocity")}
        keep = (cols["pitch"] >= low) & (cols["pitch"] < high) & (cols["duration"] > 0)
        dropped += int((~keep).sum())
        cols = {k: v[keep] for k, v in cols.items()}
        if options.melody:
            cols = dict(zip(("time", "duration", "pitch", "velocity"), skyline(**cols)))
        track = Track(name=group[0].name, program=group[0].program)
        track.notes = Note.from_numpy(**cols)
        track.notes.sort()
        out.tracks.append(track)
    notes = out.note_num()
    if notes < options.min_notes:
        raise Rejected("too_few_notes", f"too few notes: {notes} < {options.min_notes}")
    seconds = float(out.to("second").end())
    if seconds > options.max_seconds:
        raise Rejected("too_long", f"too long: {seconds:.0f} s > {options.max_seconds:.0f} s")
    return out, {"notes": notes, "duration": round(seconds, 3), "dropped_out_of_range": dropped}


def transposed(score: Score, shift: int, pitch_range: tuple[int, int]) -> Score | None:
    """``score`` moved by ``shift`` semitones, or None if a note would leave the range."""
    pitches = np.concatenate([t.notes.numpy()["pitch"].astype(np.int32) for t in score.tracks])
    if pitches.min() + shift < pitch_range[0] or pitches.max() + shift >= pitch_range[1]:
        return None
    return score.shift_pitch(shift)


def read_midi(midi) -> Score:
    """A Score, or a MIDI file's path read as one; a missing or unreadable file is a one-line UserError."""
    if isinstance(midi, Score):
        return midi
    path = Path(midi)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        return read_score(path.read_bytes())
    except Rejected as rej:
        raise UserError(f"{path}: {rej}") from rej
