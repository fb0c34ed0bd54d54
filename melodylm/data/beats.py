"""The aligned view of a pair: melody features and the chord label per beat (quarter note).

The tagger baseline and the chord-accuracy metric share this grid: beat ``b``
starts at ``b * ticks_per_quarter`` of the decoded score, and its chord label
is what the chord part sounds at that tick (:func:`~melodylm.data.chords.beat_labels`).
"""

from __future__ import annotations

import numpy as np
import torch
from symusic import Score

from melodylm.data.chords import LABEL_INDEX, LABEL_QUALITIES, LABELS
from melodylm.data.windows import IGNORE

NUM_FEATURES = 12 + 1 + 12 + 12  # pitch-class share, rest share, pitch class at the beat's start, beat in bar


def num_beats(*scores: Score) -> int:
    """Beats (quarter notes) covering every score: all must share one ticks-per-quarter."""
    tpq = scores[0].ticks_per_quarter
    return max(1, max(-(-int(s.end()) // tpq) for s in scores))


def melody_beat_features(score: Score, beats: int) -> np.ndarray:
    """``(beats, NUM_FEATURES)`` float32: per beat, the share of the beat each pitch class sounds, the rest share,
    the pitch class sounding at the beat's start (one-hot), and the beat's index in its bar (one-hot, capped at 11)."""
    tpq = score.ticks_per_quarter
    out = np.zeros((beats, NUM_FEATURES), dtype=np.float32)
    for track in score.tracks:
        arr = track.notes.numpy()
        for t, d, p in zip(arr["time"].astype(np.int64), arr["duration"].astype(np.int64), arr["pitch"]):
            end = t + d
            for b in range(t // tpq, min(-(-end // tpq), beats)):
                lo, hi = max(t, b * tpq), min(end, (b + 1) * tpq)
                out[b, p % 12] += (hi - lo) / tpq
                if lo == b * tpq:
                    out[b, 13 + p % 12] = 1.0
    out[:, :12] = np.minimum(out[:, :12], 1.0)
    out[:, 12] = np.clip(1.0 - out[:, :12].sum(1), 0.0, 1.0)
    downbeats = np.asarray(score.get_downbeats(), dtype=np.int64) if len(score.time_signatures) else np.zeros(1, np.int64)
    starts = np.arange(beats, dtype=np.int64) * tpq
    last = downbeats[np.clip(np.searchsorted(downbeats, starts, side="right") - 1, 0, None)]
    pos = np.clip((starts - last) // tpq, 0, 11)
    out[np.arange(beats), 25 + pos] = 1.0
    return out


def label_ids(labels: list[str]) -> np.ndarray:
    return np.array([LABEL_INDEX[x] for x in labels], dtype=np.int64)


def transpose_beats(features: np.ndarray, labels: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """The beat view of a melody and its chord labels moved by ``shift`` semitones: both pitch-class blocks of the
    features rotate, every chord label's root moves (``N`` stays ``N``), the beat-in-bar block stays."""
    feats = features.copy()
    feats[:, :12] = np.roll(features[:, :12], shift, axis=1)
    feats[:, 13:25] = np.roll(features[:, 13:25], shift, axis=1)
    chord = labels > 0  # LABELS: N, then 12 roots x the qualities, root-major
    out = labels.copy()
    out[chord] = 1 + (labels[chord] - 1 + len(LABEL_QUALITIES) * shift) % (len(LABELS) - 1)
    return feats, out


class TransposedBeats(torch.utils.data.Dataset):
    """``(features, labels)`` items, each moved by a random shift in [-5, 6] semitones every time it is read
    (as :class:`~melodylm.data.pairs.PairDataset` moves training pairs)."""

    def __init__(self, items: list[tuple[np.ndarray, np.ndarray]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return transpose_beats(*self.items[i], int(torch.randint(12, ())) - 5)


def collate_beats(batch) -> dict[str, torch.Tensor]:
    """``features`` ``(batch, beats, NUM_FEATURES)`` (zero-padded), ``labels`` ``(batch, beats)`` (IGNORE-padded),
    ``lengths`` ``(batch,)``."""
    width = max(len(f) for f, _ in batch)
    feats = torch.zeros(len(batch), width, NUM_FEATURES)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for i, (f, y) in enumerate(batch):
        feats[i, : len(f)] = torch.from_numpy(f)
        labels[i, : len(y)] = torch.from_numpy(y)
    return {"features": feats, "labels": labels, "lengths": torch.tensor([len(f) for f, _ in batch])}


