"""A trained piano-roll language model (frame tokens, the polyphonic benchmark's), ready to sample and score.

    lm = melodylm.load("runs/pianoroll-jsb/checkpoints")
    samples = lm.sample(num=4, max_tokens=600, seed=0)
    lm.to_score(samples[0].ids).dump_midi("chorale.mid")       # on the data's frame grid
    lm.score("chorale.mid").nll_frame                           # nats per frame (and .nll_token)

Its tokens are :mod:`melodylm.data.pianoroll`'s encodings, not miditok's: a
MIDI file is read onto the checkpoint's frame grid (``frames_per_beat`` frames
per quarter note) as a binary 88-key roll, and a sample is written back on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from symusic import Score

from melodylm.api.lm import ScoreResult
from melodylm.data import pianoroll as PR
from melodylm.data.midi import read_midi
from melodylm.decoding import processors as P
from melodylm.decoding.core import Decoder, Sample, StopAt
from melodylm.errors import UserError
from melodylm.models.components.rnn_lm import RecurrentLM

TICKS_PER_QUARTER = 480
# MusicLM.sample settings with no meaning on frame tokens: accepted only when unset
MELODY_SETTINGS = ("key", "pitch_range", "monophonic", "grammar", "bars", "seconds", "primer")


class PianoRollLM:
    """A :class:`RecurrentLM` over frame tokens, with its encoding and frame grid."""

    def __init__(self, model: RecurrentLM, encoding: PR.Encoding, frames_per_beat: int = 1):
        self.model = model.eval()
        self.encoding = encoding
        self.frames_per_beat = frames_per_beat
        self.decoder = Decoder(model, PR.BOS, PR.EOS, PR.PAD)
        onsets = torch.zeros(encoding.vocab_size)
        onsets[PR.FIRST_KEY : PR.FIRST_KEY + PR.KEYS] = 1  # a key token names a sounding key
        self.keys_per_id = onsets

    @property
    def device(self) -> torch.device:
        """Where the model is; sampling and scoring run there."""
        return self.decoder.device

    def to(self, device: torch.device | str) -> "PianoRollLM":
        """Move the model to ``device`` (e.g. ``"cuda"``); returns ``self``."""
        self.model.to(device)
        return self

    @classmethod
    def from_checkpoint(cls, meta: dict, weights: dict) -> "PianoRollLM":
        """From a checkpoint's ``melodylm`` block and its module weights (:func:`melodylm.checkpoint.load`)."""
        described = json.loads(meta["tokenizer"])
        model = RecurrentLM(**meta["model"])
        model.load_state_dict(weights)
        return cls(model, PR.encoding(described["encoding"]), int(described.get("frames_per_beat", 1)))

    @property
    def ticks_per_frame(self) -> int:
        return TICKS_PER_QUARTER // self.frames_per_beat

    # --- generation --------------------------------------------------------------------------------

    def sample(self, num: int = 1, max_tokens: int = 512, greedy: bool = False, seed: int | None = None,
               temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_notes: int = 0,
               repetition_penalty: float = 1.0, **settings) -> list[Sample]:
        """``num`` pieces in one batch, each until EOS or ``max_tokens``.

        ``min_notes`` forbids ending before that many key tokens; the melody constraints of
        :meth:`MusicLM.sample` (key, pitch range, monophonic, bars, seconds, primer) do not apply to frame
        tokens and are refused.
        """
        procs = self.processors(min_notes, repetition_penalty, temperature, top_k, top_p, sampling=not greedy,
                                **settings)
        return self.decoder.sample(num, StopAt(max_tokens), procs, seed=seed, greedy=greedy)

    def beam_search(self, beam_size: int = 4, max_tokens: int = 512, length_penalty: float = 1.0,
                    min_notes: int = 0, **settings) -> list[Sample]:
        """The ``beam_size`` most likely pieces, best first (settings as in :meth:`sample`)."""
        procs = self.processors(min_notes, sampling=False, **settings)
        return self.decoder.beam_search(beam_size, StopAt(max_tokens), procs, length_penalty=length_penalty)

    def processors(self, min_notes: int = 0, repetition_penalty: float = 1.0, temperature: float = 1.0,
                   top_k: int = 0, top_p: float = 1.0, sampling: bool = True, **settings) -> list:
        """The processor list (see :meth:`MusicLM.processors`); melody settings that are set are refused."""
        refused = sorted(k for k, v in settings.items() if k not in MELODY_SETTINGS or v)
        if refused:
            raise UserError(f"a piano-roll model does not take {', '.join(refused)} "
                            "(it samples frame tokens: use --max-tokens, --temperature, --top-k, --top-p)")
        procs = [P.MinNotes(min_notes, PR.EOS, self.keys_per_id)] if min_notes > 0 else []
        return procs + P.sampling_shape(temperature, top_k, top_p, repetition_penalty, sampling, keep=(PR.EOS,))

    # --- tokens <-> music ----------------------------------------------------------------------------

    def to_roll(self, ids: list[int]) -> np.ndarray:
        """Frame tokens (no BOS/EOS) -> a binary ``(frames, 88)`` roll."""
        return self.encoding.decode([int(i) for i in ids])

    def to_score(self, ids: list[int], primer: list[int] = (), keep_primer: bool = True) -> Score:
        """Frame tokens -> a symusic Score on the checkpoint's frame grid (a held key is one note)."""
        return PR.roll_to_score(self.to_roll([*primer, *ids]), self.ticks_per_frame, TICKS_PER_QUARTER)

    def invalid_token_rate(self, ids: list[int]) -> float:
        """Share of tokens the roll does not need: 0 for a sequence that is its roll's own encoding."""
        if not ids:
            return 0.0
        canonical = len(self.encoding.encode(self.to_roll(ids))) - 1  # without EOS
        return max(len(ids) - canonical, 0) / len(ids)

    def encode(self, midi: str | Path | Score | np.ndarray) -> tuple[list[int], np.ndarray]:
        """A MIDI file, a Score or a ``(frames, 88)`` roll -> frame tokens (no EOS) and the roll."""
        if isinstance(midi, np.ndarray):
            roll = midi.astype(bool)
            if roll.ndim != 2 or roll.shape[1] != PR.KEYS:
                raise UserError(f"a piano roll is (frames, {PR.KEYS}), got {roll.shape}")
        else:
            score = read_midi(midi)
            roll = PR.score_to_grid(score, self.frames_per_beat)
        if len(roll) == 0:
            raise UserError(f"{midi if not isinstance(midi, np.ndarray) else 'the roll'} has no notes")
        return self.encoding.encode(roll)[:-1], roll

    # --- likelihood ----------------------------------------------------------------------------------

    def score(self, midi_or_ids: str | Path | Score | np.ndarray | list[int]) -> ScoreResult:
        """Log-likelihood of a piece (MIDI path, Score, roll or frame tokens), with its frame count."""
        if isinstance(midi_or_ids, (list, tuple)):
            ids = [int(i) for i in midi_or_ids]
            roll = self.to_roll(ids)
        else:
            ids, roll = self.encode(midi_or_ids)
        logp = self.decoder.token_logprobs([ids])[0]
        onsets = int((roll & ~np.vstack([np.zeros((1, PR.KEYS), bool), roll[:-1]])).sum())
        seconds = len(roll) / self.frames_per_beat * 0.5  # 120 quarter notes per minute, as the MIDI is written
        return ScoreResult(logprob=float(logp.sum()), tokens=len(logp), notes=onsets, seconds=seconds,
                           frames=len(roll))

