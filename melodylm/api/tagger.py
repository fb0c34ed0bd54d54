"""A trained chord tagger (the aligned bi-LSTM baseline): one chord label per beat of a melody.

    tagger = melodylm.load("checkpoints/seq2seq-tagger")
    labels, score = tagger.harmonise(melody_score)   # labels per quarter note; the melody plus block chords
    samples = seq2seq.sample_harmonies([ids], [beats], 16, top_p=0.95)[0]   # a melody -> chords model's samples
    labels = tagger.label_beats(melody_score, beats, samples, weight=1.0)  # tagger probability + share of samples
"""

from __future__ import annotations

import numpy as np
import torch
from symusic import Score

from melodylm.data.beats import melody_beat_features, num_beats
from melodylm.data.chords import labels_to_track, vote_shares
from melodylm.models.components.seq2seq import BeatTagger

BLEND_WEIGHT = 1.0  # the seq2seq samples' share against the tagger's probability, chosen on Nottingham validation


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

    def beat_probs(self, melody: Score, beats: int | None = None) -> np.ndarray:
        """The tagger's probability of each of its labels on each of ``beats`` quarter-note beats (default: the
        melody's): an array (beats, len(self.labels))."""
        beats = num_beats(melody) if beats is None else beats
        with torch.inference_mode():
            device = next(self.model.parameters()).device  # the features go where the model is
            logits = self.model(torch.from_numpy(melody_beat_features(melody, beats))[None].to(device))
        return torch.softmax(logits[0].float(), -1).cpu().numpy()

    def label_beats(self, melody: Score, beats: int | None = None, samples: list[list[str]] | None = None,
                    weight: float = BLEND_WEIGHT) -> list[str]:
        """The most likely chord label of each of ``beats`` quarter-note beats (default: the melody's).

        ``samples``: harmonisations of the same melody sampled from a melody -> chords seq2seq model
        (:meth:`~melodylm.api.seq2seq.ConditionalGenerator.sample_harmonies`); each beat's label then
        maximises the tagger's probability plus ``weight`` times the share of samples giving it."""
        probs = self.beat_probs(melody, beats)
        if samples:
            probs = probs + weight * vote_shares(samples, self.labels)
        return [self.labels[i] for i in probs.argmax(-1).tolist()]

    def harmonise(self, melody: Score, samples: list[list[str]] | None = None,
                  weight: float = BLEND_WEIGHT) -> tuple[list[str], Score]:
        """A chord label per beat of ``melody`` (with seq2seq ``samples``, as :meth:`label_beats`), and the
        melody with the chords as a block-chord track."""
        labels = self.label_beats(melody, None, samples, weight)
        track = labels_to_track(labels, melody.ticks_per_quarter)
        out = melody.copy()
        for t in out.tracks:
            t.name = "melody"
        out.tracks.append(track)
        return labels, out
