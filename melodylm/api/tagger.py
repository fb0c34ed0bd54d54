"""A trained chord tagger (the aligned bi-LSTM baseline): one chord label per beat of a melody.

    tagger = melodylm.load("checkpoints/seq2seq-tagger")
    labels, score = tagger.harmonise(melody_score)   # labels per quarter note; the melody plus block chords
"""

from __future__ import annotations

import torch
from symusic import Score

from melodylm.data.beats import melody_beat_features, num_beats
from melodylm.data.chords import labels_to_track
from melodylm.models.components.seq2seq import BeatTagger


class ChordTagger:
    """A :class:`BeatTagger` with its chord labels (``N`` is silence)."""

    def __init__(self, model: BeatTagger, labels: list[str], pairs: dict | None = None):
        self.model = model.eval()
        self.labels = list(labels)
        self.pairs = dict(pairs or {})  # the pair settings it was trained on (PairSettings fields)

    @classmethod
    def from_checkpoint(cls, meta: dict, weights: dict) -> "ChordTagger":
        """From a checkpoint's ``melodylm`` block and its module weights (:func:`melodylm.checkpoint.load`)."""
        model = BeatTagger(**meta["model"])
        model.load_state_dict(weights)
        return cls(model, meta["labels"], meta.get("prepare", {}).get("pairs"))

    def label_beats(self, melody: Score, beats: int | None = None) -> list[str]:
        """The most likely chord label of each of ``beats`` quarter-note beats (default: the melody's)."""
        beats = num_beats(melody) if beats is None else beats
        with torch.inference_mode():
            device = next(self.model.parameters()).device  # the features go where the model is
            logits = self.model(torch.from_numpy(melody_beat_features(melody, beats))[None].to(device))
        return [self.labels[i] for i in logits[0].argmax(-1).tolist()]

    def harmonise(self, melody: Score) -> tuple[list[str], Score]:
        """A chord label per beat of ``melody``, and the melody with the chords as a block-chord track."""
        labels = self.label_beats(melody)
        track = labels_to_track(labels, melody.ticks_per_quarter)
        out = melody.copy()
        for t in out.tracks:
            t.name = "melody"
        out.tracks.append(track)
        return labels, out
