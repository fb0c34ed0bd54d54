"""Aligned conditioning: what the condition sounds at the time the generated part has reached.

A seq2seq decoder that only attends over the condition's tokens has to find
"now" in them by itself, and mostly does not (docs/seq2seq.md). Here the
decoder is told instead, at every step, what the condition sounds at its
current time, as Magenta's Improv RNN feeds the current chord:

- :func:`condition_frames` turns the condition's token ids into a frame grid
  (``FRAMES_PER_BEAT`` frames per quarter note) of :data:`FEATURES` numbers:
  the pitch classes sounding (12), the lowest sounding pitch class (12), and
  the pitch classes of the next two beats weighted by how long they sound
  (12, the largest 1) - what a chord under the melody, or a melody over the
  chords, is about to do;
- :func:`token_times` gives the time (quarter notes) the target has reached
  after each of its tokens, as :class:`melodylm.decoding.timeline.Timeline`
  counts it while decoding (``Bar``, ``TimeSig`` and ``Position`` tokens);
- :func:`aligned_features` looks the frames up at those times;
- :func:`now_index` finds the condition token sounding at each of them, so
  a decoder can also read the encoder's (bidirectional) state of "now".

Times restart at the first ``Bar`` of whatever is given, so a condition and a
target cropped at the same bar stay aligned. Everything past the condition's
end is silence (zeros).
"""

from __future__ import annotations

import numpy as np

FRAMES_PER_BEAT = 12  # frames per quarter note: sixteenths and eighth-note triplets fall on frames
LOOKAHEAD_BEATS = 2
FEATURES = 36


class TokenClock:
    """The REMI time tokens of a vocabulary (Bar, TimeSig, Position), for :func:`token_times` in numpy."""

    def __init__(self, tokenizer):
        per_beat = tokenizer.config.max_num_pos_per_beat
        n = len(tokenizer)
        self.is_bar = np.zeros(n, dtype=bool)
        self.position = np.full(n, -1.0)  # units within the bar
        self.bar_len = np.zeros(n)  # quarter notes of a TimeSig token
        self.unit = np.zeros(n)  # quarter notes per position unit under that TimeSig
        for name, i in tokenizer.vocab.items():
            kind, _, value = name.partition("_")
            if kind == "Bar":
                self.is_bar[i] = True
            elif kind == "Position":
                self.position[i] = float(value)
            elif kind == "TimeSig":
                num, den = (int(x) for x in value.split("/"))
                self.bar_len[i], self.unit[i] = num * 4 / den, 4 / den / per_beat
        self.default_unit = 1.0 / per_beat


def token_times(ids, clock: TokenClock) -> np.ndarray:
    """Quarter notes reached after each token of ``ids`` (float64, ``len(ids)``), as the decoder's Timeline counts."""
    out = np.zeros(len(ids))
    bars, bar_start, bar_len, unit, pos = 0, 0.0, 4.0, clock.default_unit, 0.0
    for k, i in enumerate(ids):
        i = int(i)
        if clock.is_bar[i]:
            if bars > 0:
                bar_start += bar_len
            bars += 1
            pos = 0.0
        elif clock.bar_len[i] > 0:
            bar_len, unit = clock.bar_len[i], clock.unit[i]
        elif clock.position[i] >= 0:
            pos = clock.position[i] * unit
        out[k] = bar_start + pos
    return out


def score_frames(score, frames: int | None = None) -> np.ndarray:
    """``(frames, FEATURES)`` float32 features of every note of ``score`` (all tracks) on the frame grid."""
    tpq = score.ticks_per_quarter
    notes = [t.notes.numpy() for t in score.tracks]
    time = np.concatenate([n["time"] for n in notes]) if notes else np.zeros(0)
    dur = np.concatenate([n["duration"] for n in notes]) if notes else np.zeros(0)
    pitch = np.concatenate([n["pitch"] for n in notes]).astype(np.int64) if notes else np.zeros(0, np.int64)
    start = np.floor(time / tpq * FRAMES_PER_BEAT + 1e-6).astype(np.int64)
    end = np.maximum(np.floor((time + dur) / tpq * FRAMES_PER_BEAT + 1e-6).astype(np.int64), start + 1)
    if frames is None:
        frames = int(end.max()) + 1 if len(end) else 1
    sounding = np.zeros((frames + 1, 12), dtype=np.float32)  # +1: the difference array's end
    lowest = np.full(frames, 128, dtype=np.int64)
    for s, e, p in zip(start, end, pitch):
        if s >= frames:
            continue
        sounding[s, p % 12] += 1
        sounding[min(e, frames), p % 12] -= 1
        lowest[s:e] = np.minimum(lowest[s:e], p)
    sounding = np.cumsum(sounding, 0)[:frames] > 0
    out = np.zeros((frames, FEATURES), dtype=np.float32)
    out[:, :12] = sounding
    has = lowest < 128
    out[np.flatnonzero(has), 12 + lowest[has] % 12] = 1.0
    # duration-weighted pitch classes of [f, f + LOOKAHEAD): a window sum over the cumulative frame counts
    window = LOOKAHEAD_BEATS * FRAMES_PER_BEAT
    csum = np.concatenate([np.zeros((1, 12)), np.cumsum(sounding, 0)])
    upto = np.minimum(np.arange(frames) + window, frames)
    ahead = csum[upto] - csum[np.arange(frames)]
    out[:, 24:] = ahead / np.maximum(ahead.max(1, keepdims=True), 1.0)
    return out


def condition_frames(ids, tokenizer) -> np.ndarray:
    """The condition's token ids -> ``(frames, FEATURES)`` (decoded by the tokenizer, so its time rules hold)."""
    ids = [int(i) for i in ids]
    if not ids:
        return np.zeros((1, FEATURES), dtype=np.float32)
    return score_frames(tokenizer.decode([ids]))


def aligned_features(frames: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The rows of ``frames`` at ``times`` (quarter notes), zeros past the end: ``(len(times), FEATURES)``."""
    idx = np.floor(np.asarray(times) * FRAMES_PER_BEAT + 1e-6).astype(np.int64)
    out = np.zeros((len(idx), frames.shape[1]), dtype=np.float32)
    inside = (idx >= 0) & (idx < len(frames))
    out[inside] = frames[idx[inside]]
    return out


def now_index(source, times: np.ndarray, clock: TokenClock) -> np.ndarray:
    """For each of ``times`` (quarter notes), the index of the condition's last token at or before that time
    (0 before any): where an aligned-memory decoder reads the encoder's state of "now"."""
    source_times = token_times(source, clock)
    return np.maximum(np.searchsorted(source_times, np.asarray(times) + 1e-6, side="right") - 1, 0)


def input_times(target, clock: TokenClock) -> np.ndarray:
    """Times of the decoder inputs ``[BOS, *target]``: 0 before any token, then after each target token."""
    return np.concatenate([[0.0], token_times(target, clock)])
