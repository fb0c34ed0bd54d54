"""Frame-level posteriors -> note segments with pitch candidates (monophonic melody).

A :class:`Posteriorgram` is what a frame-level transcription model gives
(basic-pitch's ``note`` and ``onset`` outputs): probabilities of shape
``(frames, 88)`` for MIDI pitches 21..108 at ``fps`` frames per second.
:func:`segments` cuts it at note onsets (peaks of the onset probability of
any pitch, merged within ``merge`` seconds) and proposes the ``top_k`` most
likely pitches of each segment, each with an acoustic log-score, an offset,
and the option of skipping the segment (an onset of the accompaniment, not
of the melody).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

LOWEST_PITCH = 21  # MIDI pitch of column 0
EPS = 1e-4
SILENCE_SUSTAIN = 0.05
ONSET_LOOKAHEAD = 6  # frames after an onset in which its note's frames must begin  # stands in for the sustain probability when no melody note has started yet


@dataclass
class Posteriorgram:
    """``note``, ``onset``: ``(frames, 88)`` probabilities for MIDI pitches 21..108; ``fps`` frames per second.

    ``times`` (optional, ``(frames,)`` seconds) overrides ``frame / fps`` for
    models whose frames are not evenly spaced (basic-pitch's windows overlap).
    """

    note: np.ndarray
    onset: np.ndarray
    fps: float
    times: np.ndarray | None = None

    def __post_init__(self):
        self.note = np.asarray(self.note, dtype=np.float32)
        self.onset = np.asarray(self.onset, dtype=np.float32)
        if self.note.ndim != 2 or self.note.shape[1] != 88 or self.onset.shape != self.note.shape:
            raise ValueError(f"expected note and onset posteriors of shape (frames, 88), got "
                             f"{self.note.shape} and {self.onset.shape}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.times is None:
            self.times = np.arange(self.frames + 1) / self.fps
        else:  # one more entry: the end of the last frame
            self.times = np.append(np.asarray(self.times, dtype=np.float64)[: self.frames],
                                   self.times[self.frames - 1] + 1 / self.fps if self.frames else 0.0)

    @property
    def frames(self) -> int:
        return self.note.shape[0]


@dataclass
class Candidate:
    """One pitch for a segment: MIDI ``pitch``, ``offset`` (s), ``acoustic`` log-score (nats)."""

    pitch: int
    offset: float
    acoustic: float


@dataclass
class Segment:
    """From one onset (s) to the next; ``candidates`` best first.

    Skipping the segment (no melody onset here: the accompaniment's) means the
    previous melody note goes on sounding; its log-score is ``skip`` plus the
    log of ``sustain[previous pitch - 21]``, the mean note probability of that
    pitch over the segment's first frames (:meth:`skip_score`).
    """

    onset: float
    end: float
    candidates: list[Candidate]
    skip: float
    sustain: np.ndarray | None = None

    def skip_score(self, previous_pitch: int | None) -> float:
        """Log-score of no melody onset here, after a melody note of ``previous_pitch`` (None: silence so far)."""
        if self.skip == float("-inf"):
            return self.skip
        if previous_pitch is None or self.sustain is None:
            return self.skip + float(np.log(SILENCE_SUSTAIN))
        return self.skip + float(np.log(self.sustain[previous_pitch - LOWEST_PITCH] + EPS))


@dataclass
class SegmentOptions:
    """How posteriors become segments and candidates.

    ``onset_threshold``: a per-pitch onset peak at least this likely starts a
    segment; ``merge``: peaks closer than this (s) are one onset; ``top_k``
    pitch candidates per segment; ``frame_threshold``: a candidate note lasts
    while its note probability stays above this; ``window``: seconds after the
    onset over which the note probability is averaged for the acoustic score;
    ``skip_logprob``: log-score added to the sustain evidence for leaving a
    segment without a melody note (``None``: never skip); ``onset_shift``:
    seconds added to every onset (a model's onset peaks may come late on
    soft attacks such as a flute's); ``log_odds``: score candidates by
    ``log(p / (1 - p))`` instead of ``log p`` (spreads confident notes apart
    from weak ones, so the LM overrides them less); ``margin``: drop
    candidates scoring more than this below the segment's best (``None``:
    keep all ``top_k``), so the prior cannot overrule a clear acoustic call.
    """

    onset_threshold: float = 0.5
    merge: float = 0.05
    top_k: int = 8
    frame_threshold: float = 0.3
    window: float = 0.1
    skip_logprob: float | None = 0.0
    onset_shift: float = 0.0
    log_odds: bool = True
    margin: float | None = None


def _evidence(p: np.ndarray, log_odds: bool) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p)) if log_odds else np.log(p)


def onset_times(post: Posteriorgram, opts: SegmentOptions) -> np.ndarray:
    """Frames (int array, sorted) where a melody note may start: per-pitch onset peaks, merged."""
    o = post.onset
    padded = np.pad(o, ((1, 1), (0, 0)))
    peaks = (o >= opts.onset_threshold) & (o >= padded[:-2]) & (o > padded[2:])
    frames = np.unique(np.nonzero(peaks)[0])
    if frames.size == 0:
        return frames
    gap = max(1, int(round(opts.merge * post.fps)))
    keep = [int(frames[0])]
    for f in frames[1:]:
        if f - keep[-1] >= gap:
            keep.append(int(f))
    return np.asarray(keep)


def segments(post: Posteriorgram, opts: SegmentOptions | None = None) -> list[Segment]:
    """Cut ``post`` at onsets and propose pitch candidates per segment (see the module doc)."""
    opts = opts or SegmentOptions()
    starts = onset_times(post, opts)
    out: list[Segment] = []
    win = max(1, int(round(opts.window * post.fps)))
    for i, f in enumerate(starts):
        nxt = int(starts[i + 1]) if i + 1 < len(starts) else post.frames
        lo, hi = max(0, f - 2), min(post.frames, f + 3)
        onset_peak = post.onset[lo:hi].max(axis=0)
        note_mean = post.note[f:min(nxt, f + win)].mean(axis=0) if nxt > f else post.note[f]
        score = _evidence(onset_peak, opts.log_odds) + _evidence(note_mean, opts.log_odds)
        order = np.argsort(-score, kind="stable")[: opts.top_k]
        if opts.margin is not None:  # only acoustically plausible rivals: the LM decides among close calls
            order = order[score[order] >= score[order[0]] - opts.margin]
        cands = []
        for col in order:
            active = post.note[f:nxt, col] >= opts.frame_threshold
            run = int(np.argmin(active)) if not active.all() else len(active)
            cands.append(Candidate(pitch=int(col) + LOWEST_PITCH, offset=float(post.times[f + max(run, 1)]),
                                   acoustic=float(score[col])))
        skip = opts.skip_logprob if opts.skip_logprob is not None else float("-inf")
        onset = max(0.0, float(post.times[f]) + opts.onset_shift)
        end = max(onset, float(post.times[nxt]) + opts.onset_shift)
        cands = [replace(c, offset=max(c.offset + opts.onset_shift, onset + 1e-3)) for c in cands]
        out.append(Segment(onset=onset, end=end, candidates=cands, skip=skip, sustain=note_mean))
    return out


def refine_offsets(notes: list, post: Posteriorgram, frame_threshold: float = 0.3) -> list:
    """Each note of a melody ends where its pitch's note probability falls below ``frame_threshold``.

    Looked up from the note's onset on, so a note decoded across skipped
    segments (accompaniment onsets) sounds on; never past the next note's onset
    and never shorter than one frame. ``notes`` sorted by onset (a
    :class:`~melodylm.prior.notes.Note` list); returns new notes.
    """
    from melodylm.prior.notes import Note

    out = []
    times = post.times
    for i, n in enumerate(notes):
        f = min(int(np.searchsorted(times, n.onset - 0.5 / post.fps)), post.frames - 1)
        col = n.pitch - LOWEST_PITCH
        active = post.note[f:, col] >= frame_threshold if 0 <= col < 88 else np.zeros(0, dtype=bool)
        lead = int(np.argmax(active[:ONSET_LOOKAHEAD])) if active[:ONSET_LOOKAHEAD].any() else 0
        rest = active[lead:]  # the note's frames may start a few frames after its (shifted) onset
        run = lead + (int(np.argmin(rest)) if rest.size and not rest.all() else int(rest.size))
        end = float(times[min(f + max(run, 1), post.frames)])
        if i + 1 < len(notes):
            end = min(end, notes[i + 1].onset)
        out.append(Note(n.onset, max(end, n.onset + 1.0 / post.fps), n.pitch))
    return out
