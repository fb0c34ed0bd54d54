"""Chord symbols and chord labels: text -> notes, sounding notes -> one label per beat.

Two jobs, each with its inverse:

- ``parse_chord_symbols("C G Am F")`` -> chords (root pitch class + intervals),
  and :func:`chords_to_score` writes them as a block-chord track, ``beats``
  quarter notes per chord in any meter (``time_signature="3/4"``; the
  condition of a chords -> melody model);
- :func:`chord_label` names a set of sounding pitch classes with the nearest
  label of :data:`LABELS` (``N`` for silence), and ``parse_chord_symbol(label)``
  gives the label's pitch classes back; :func:`beat_labels` labels every beat
  (quarter note) of a score, the grid of the chord-accuracy metric and the
  tagger; :func:`mir_eval_label` spells a label for ``mir_eval.chord``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from symusic import Note, Score, Tempo, TimeSignature, Track

from melodylm.errors import UserError

NOTE_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

# Text suffix -> intervals above the root (semitones). The first spelling of each is the canonical one.
QUALITIES: dict[str, tuple[int, ...]] = {
    "": (0, 4, 7), "maj": (0, 4, 7), "M": (0, 4, 7),
    "m": (0, 3, 7), "min": (0, 3, 7), "-": (0, 3, 7),
    "7": (0, 4, 7, 10), "dom7": (0, 4, 7, 10),
    "m7": (0, 3, 7, 10), "min7": (0, 3, 7, 10),
    "maj7": (0, 4, 7, 11), "M7": (0, 4, 7, 11),
    "dim": (0, 3, 6), "o": (0, 3, 6), "dim7": (0, 3, 6, 9), "o7": (0, 3, 6, 9), "m7b5": (0, 3, 6, 10),
    "aug": (0, 4, 8), "+": (0, 4, 8),
    "sus4": (0, 5, 7), "sus2": (0, 2, 7), "sus": (0, 5, 7),
    "6": (0, 4, 7, 9), "m6": (0, 3, 7, 9), "9": (0, 4, 7, 10, 14),
}
_SYMBOL = re.compile(r"^([A-Ga-g])([#b]?)([^/]*)(?:/([A-Ga-g])([#b]?))?$")

# The label vocabulary of chord accuracy and the tagger: no-chord, then 12 roots x 6 qualities.
LABEL_QUALITIES: dict[str, tuple[int, ...]] = {
    "": (0, 4, 7), "m": (0, 3, 7), "7": (0, 4, 7, 10), "m7": (0, 3, 7, 10), "maj7": (0, 4, 7, 11), "dim": (0, 3, 6),
}
LABELS: list[str] = ["N"] + [f"{NOTE_NAMES[r]}{q}" for r in range(12) for q in LABEL_QUALITIES]
LABEL_INDEX = {label: i for i, label in enumerate(LABELS)}
MIR_EVAL_QUALITIES = {"": "maj", "m": "min", "7": "7", "m7": "min7", "maj7": "maj7", "dim": "dim"}


@dataclass(frozen=True)
class Chord:
    """One chord symbol: its text, root pitch class, intervals above the root and optional bass pitch class."""

    symbol: str
    root: int
    intervals: tuple[int, ...]
    bass: int | None = None

    @property
    def pitch_classes(self) -> frozenset[int]:
        pcs = {(self.root + i) % 12 for i in self.intervals}
        return frozenset(pcs | ({self.bass} if self.bass is not None else set()))

    def pitches(self, low: int = 48) -> list[int]:
        """A close voicing: the bass (or root) in [low, low + 12), the other tones stacked above it."""
        bass = self.bass if self.bass is not None else self.root
        base = low + (bass - low) % 12
        out = [base] if self.bass is not None else []
        root = base if self.bass is None else base + (self.root - bass) % 12
        out += [root + i for i in self.intervals]
        return sorted(set(out))


def _pitch_class(letter: str, accidental: str) -> int:
    return (_LETTER[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]) % 12


def parse_chord_symbol(text: str) -> Chord:
    """``"Am"``, ``"F#m7"``, ``"Bbmaj7"``, ``"C/E"`` -> :class:`Chord`; anything else is a :class:`UserError`."""
    m = _SYMBOL.match(text.strip())
    if not m or m.group(3) not in QUALITIES:
        known = ", ".join(repr(q) for q in QUALITIES if q)
        raise UserError(f"bad chord symbol {text!r}: expected a root A-G with optional # or b, "
                        f"a quality ('' for major, {known}) and an optional /bass, e.g. 'Am7' or 'C/E'")
    root = _pitch_class(m.group(1), m.group(2))
    bass = _pitch_class(m.group(4), m.group(5)) if m.group(4) else None
    return Chord(text.strip(), root, QUALITIES[m.group(3)], bass)


def parse_chord_symbols(text: str) -> list[Chord]:
    """Space- or comma-separated chord symbols (``"C G Am F"``, ``"C,G7 | Am F"``; bar lines ``|`` are ignored)."""
    items = [t for t in re.split(r"[\s,|]+", text.strip()) if t]
    if not items:
        raise UserError("no chord symbols given (expected e.g. \"C G Am F\")")
    return [parse_chord_symbol(t) for t in items]


def parse_time_signature(text: str) -> tuple[int, int]:
    """``"3/4"`` -> ``(3, 4)``: N in 1..32 over a denominator in 1, 2, 4, ..., 32; anything else is a UserError."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 1 <= int(m.group(1)) <= 32 or int(m.group(2)) not in (1, 2, 4, 8, 16, 32):
        raise UserError(f"bad --time-signature {str(text)!r}: expected N/D such as 3/4 or 6/8 "
                        "(N from 1 to 32, D one of 1, 2, 4, 8, 16, 32)")
    return int(m.group(1)), int(m.group(2))


def chords_to_score(chords: list[Chord], beats: float = 4.0, tpq: int = 480, bpm: float = 120.0,
                    velocity: int = 80, time_signature: str = "4/4") -> Score:
    """Block chords, ``beats`` quarter notes each (whatever the meter), under ``time_signature`` (``"3/4"``,
    ``"6/8"``, ...): one track named ``chords``. Chord ``i`` starts at tick ``i * round(beats * tpq)``."""
    if not beats > 0:
        raise UserError(f"--chord-beats must be > 0, got {beats}")
    num, den = parse_time_signature(time_signature)
    score = Score(tpq)
    score.time_signatures.append(TimeSignature(0, num, den))
    score.tempos.append(Tempo(0, bpm))
    track = Track(name="chords", program=0)
    step = int(round(beats * tpq))
    for i, chord in enumerate(chords):
        for p in chord.pitches():
            track.notes.append(Note(i * step, step, p, velocity))
    score.tracks.append(track)
    return score


# --- labelling sounding notes ------------------------------------------------------------------------


def chord_label(pitch_classes, bass: int | None = None) -> str:
    """The label of :data:`LABELS` that best explains a set of pitch classes (``N`` when empty).

    Score of a candidate: tones it shares with the set, minus tones of the set
    it lacks, minus half the tones it adds; ties go to a candidate rooted on
    the bass, then to the simpler (earlier) quality.
    """
    pcs = set(int(p) % 12 for p in pitch_classes)
    if not pcs:
        return "N"
    best, best_key = "N", None
    for root in range(12):
        for q, intervals in LABEL_QUALITIES.items():
            tones = {(root + i) % 12 for i in intervals}
            fit = len(pcs & tones) - len(pcs - tones) - 0.5 * len(tones - pcs)
            key = (fit, root == bass)
            if best_key is None or key > best_key:
                best, best_key = f"{NOTE_NAMES[root]}{q}", key
    return best


def mir_eval_label(label: str) -> str:
    """A label of :data:`LABELS` in mir_eval's chord syntax: ``N``, ``C:maj``, ``Eb:min7``, ``F#:dim``, ..."""
    if label not in LABEL_INDEX:
        raise ValueError(f"{label!r} is not a chord label of LABELS")
    if label == "N":
        return "N"
    root = label[:2] if label[1:2] in ("#", "b") else label[:1]
    return f"{root}:{MIR_EVAL_QUALITIES[label[len(root):]]}"


def beat_grid(score: Score) -> np.ndarray:
    """Start tick of every beat (quarter note) from 0 to the end of the score."""
    tpq = score.ticks_per_quarter
    return np.arange(0, max(int(score.end()), 1), tpq, dtype=np.int64)


def sounding_pitch_classes(score: Score, ticks: np.ndarray) -> list[tuple[frozenset[int], int | None]]:
    """At each tick: the pitch classes of all notes sounding then (over every track), and the lowest one's."""
    notes = [t.notes.numpy() for t in score.tracks]
    if not notes or sum(len(n["time"]) for n in notes) == 0:
        return [(frozenset(), None)] * len(ticks)
    time = np.concatenate([n["time"] for n in notes]).astype(np.int64)
    end = time + np.concatenate([n["duration"] for n in notes]).astype(np.int64)
    pitch = np.concatenate([n["pitch"] for n in notes]).astype(np.int64)
    out = []
    for t in ticks:
        on = (time <= t) & (end > t)
        if not on.any():
            out.append((frozenset(), None))
            continue
        p = pitch[on]
        out.append((frozenset((p % 12).tolist()), int(p.min() % 12)))
    return out


def beat_labels(score: Score, num_beats: int | None = None) -> list[str]:
    """One chord label per beat (quarter note) of ``score``: what sounds at the beat's start.

    ``num_beats`` fixes the length (beats past the end are ``N``).
    """
    tpq = score.ticks_per_quarter
    grid = beat_grid(score) if num_beats is None else np.arange(num_beats, dtype=np.int64) * tpq
    return [chord_label(pcs, bass) for pcs, bass in sounding_pitch_classes(score, grid)]


def vote_labels(harmonisations: list[list[str]]) -> list[str]:
    """Per beat, the label most of ``harmonisations`` (equal-length label lists) give: the choice that maximises
    the expected per-beat accuracy under the distribution they were sampled from. Ties go to the label met
    first (in the order of the harmonisations)."""
    if not harmonisations:
        raise ValueError("vote_labels needs at least one harmonisation")
    if len({len(h) for h in harmonisations}) > 1:
        raise ValueError("the harmonisations must have the same number of beats")
    return [Counter(beat).most_common(1)[0][0] for beat in zip(*harmonisations)]


def vote_shares(harmonisations: list[list[str]], labels: list[str] = LABELS) -> np.ndarray:
    """Per beat, the share of ``harmonisations`` (equal-length label lists) giving each of ``labels``: an array
    (beats, len(labels)) whose rows sum to 1 (less where a harmonisation gives a label not in ``labels``)."""
    if not harmonisations:
        raise ValueError("vote_shares needs at least one harmonisation")
    if len({len(h) for h in harmonisations}) > 1:
        raise ValueError("the harmonisations must have the same number of beats")
    index = {label: i for i, label in enumerate(labels)}
    shares = np.zeros((len(harmonisations[0]), len(labels)))
    for h in harmonisations:
        for beat, label in enumerate(h):
            if label in index:
                shares[beat, index[label]] += 1 / len(harmonisations)
    return shares


def labels_to_track(labels: list[str], tpq: int, name: str = "chords", velocity: int = 70) -> Track:
    """Block chords for per-beat labels (beat ``i`` starts at tick ``i * tpq``): one chord per run of equal
    labels, silence for ``N``."""
    track = Track(name=name, program=0)
    start = 0
    for b in range(1, len(labels) + 1):
        if b < len(labels) and labels[b] == labels[start]:
            continue
        if labels[start] != "N":
            for p in parse_chord_symbol(labels[start]).pitches():
                track.notes.append(Note(start * tpq, (b - start) * tpq, p, velocity))
        start = b
    return track
