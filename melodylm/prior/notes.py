"""Transcribed notes (seconds) <-> scores and token ids on a beat grid.

A transcription gives notes in seconds; the language model reads bars,
positions and durations. A :class:`Grid` (tempo, meter, time of the first
downbeat) places the notes on the score grid, so that a note sequence becomes
the checkpoint tokenizer's ids. :func:`notes_to_score` and
:func:`score_to_notes` are the matched pair.
"""

from __future__ import annotations

from dataclasses import dataclass

from symusic import Note as SNote
from symusic import Score, Tempo, TimeSignature, Track

from melodylm.data.tokenizer import score_to_ids
from melodylm.errors import UserError

TICKS_PER_QUARTER = 480


@dataclass(frozen=True)
class Note:
    """One note: ``onset`` and ``offset`` in seconds, ``pitch`` a MIDI note number."""

    onset: float
    offset: float
    pitch: int


@dataclass(frozen=True)
class Grid:
    """Where the beats are: ``qpm`` quarter notes per minute, ``time_signature``, ``origin`` (s) of the first downbeat.

    ``snap``: times are rounded to the nearest multiple of ``1/n`` quarter
    note for any ``n`` in it (default sixteenths), as the scores a melody LM
    was trained on are; a transcription's onsets jitter by tens of
    milliseconds, which would otherwise land on positions the LM never saw.
    ``(4, 3)`` also allows eighth-note triplets (on Nottingham audio jittered
    onsets then snap to triplets too often: onset F1 0.86 against 0.88 with
    sixteenths on 6 validation tunes); ``()`` keeps every tick.
    """

    qpm: float = 120.0
    time_signature: tuple[int, int] = (4, 4)
    origin: float = 0.0
    snap: tuple[int, ...] = (4,)

    def __post_init__(self):
        if not self.qpm > 0:
            raise UserError(f"the tempo must be > 0 quarter notes per minute, got {self.qpm}")
        num, den = self.time_signature
        if num < 1 or den not in (1, 2, 4, 8, 16, 32):
            raise UserError(f"bad time signature {num}/{den}")

    def tick(self, seconds: float) -> int:
        """Seconds -> score ticks (:data:`TICKS_PER_QUARTER` per quarter note) on the snap grid, never before 0."""
        quarters = (seconds - self.origin) * self.qpm / 60.0
        if self.snap:
            quarters = min((round(quarters * n) / n for n in self.snap), key=lambda q: abs(q - quarters))
        return max(0, round(quarters * TICKS_PER_QUARTER))

    @property
    def min_ticks(self) -> int:
        """The shortest note on this grid, in ticks."""
        return TICKS_PER_QUARTER // max(self.snap) if self.snap else 1

    def seconds(self, tick: int) -> float:
        return self.origin + tick / TICKS_PER_QUARTER * 60.0 / self.qpm

    @staticmethod
    def parse_time_signature(text: str) -> tuple[int, int]:
        try:
            num, den = (int(v) for v in text.split("/"))
        except ValueError:
            raise UserError(f"expected a time signature like 4/4 or 6/8, got {text!r}") from None
        return num, den


def notes_to_score(notes: list[Note], grid: Grid, program: int = 0) -> Score:
    """Notes in seconds -> a one-track symusic Score in ticks on ``grid`` (tempo and meter set).

    Every note lasts at least one step of the grid (:attr:`Grid.min_ticks`).
    """
    score = Score(TICKS_PER_QUARTER)
    score.tempos.append(Tempo(0, grid.qpm))
    score.time_signatures.append(TimeSignature(0, *grid.time_signature))
    track = Track(program=program)
    for n in sorted(notes, key=lambda n: (n.onset, n.pitch)):
        start = grid.tick(n.onset)
        track.notes.append(SNote(start, max(grid.min_ticks, grid.tick(n.offset) - start), int(n.pitch), 100))
    score.tracks.append(track)
    return score


def score_to_notes(score: Score) -> list[Note]:
    """A Score (any time unit) -> all its notes in seconds, sorted by onset then pitch."""
    sec = score.to("second")
    notes = [Note(float(n.time), float(n.end), int(n.pitch)) for t in sec.tracks for n in t.notes]
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


def hold_repeats(notes: list[Note]) -> list[Note]:
    """Merge each note into the one before it when both have the same pitch (notes sorted by onset).

    In a mixture, an accompaniment onset under a held melody note looks like a
    repeat of that note; on the validation tunes of ``melodylm.evaluation.bench_transcription`` five
    in six decoded repeats were such onsets.
    """
    out: list[Note] = []
    for n in notes:
        if out and out[-1].pitch == n.pitch:
            out[-1] = Note(out[-1].onset, max(out[-1].offset, n.offset), n.pitch)
        else:
            out.append(n)
    return out


def note_ids(tokenizer, notes: list[Note], grid: Grid) -> list[int]:
    """Token ids of a note sequence with the checkpoint's tokenizer (no BOS/EOS; none for no notes)."""
    if not notes:
        return []
    return score_to_ids(tokenizer, notes_to_score(notes, grid))
