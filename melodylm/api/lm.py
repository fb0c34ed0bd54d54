"""A trained language model with its tokenizer (what ``melodylm.load`` returns for one), ready to sample and score.

    lm = melodylm.load("checkpoints/quickstart/last.ckpt")
    samples = lm.sample(num=4, bars=8, key="D major", seed=0)
    lm.to_score(samples[0].ids).dump_midi("out.mid")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from miditok import TokSequence
from symusic import Note, Score

from melodylm.data.midi import CleanOptions, Rejected, clean_score, read_midi
from melodylm.data.tokenizer import SpecialIds, note_counts, score_to_ids, tokenizer_from_json
from melodylm.decoding import constraints as C
from melodylm.decoding import processors as P
from melodylm.decoding.core import Decoder, Sample, StopAt
from melodylm.decoding.timeline import Timeline
from melodylm.errors import UserError
from melodylm.models.components.rnn_lm import RecurrentLM


@dataclass
class ScoreResult:
    """Likelihood of one piece. NLLs in nats; ``tokens`` counts predicted tokens (EOS included);
    ``frames`` is the piece's length on its time grid, for a model that has one (piano rolls)."""

    logprob: float
    tokens: int
    notes: int
    seconds: float
    frames: int | None = None

    @property
    def nll_frame(self) -> float:
        return -self.logprob / self.frames if self.frames else float("nan")

    @property
    def nll_token(self) -> float:
        return -self.logprob / self.tokens

    @property
    def nll_note(self) -> float:
        return -self.logprob / self.notes if self.notes else float("nan")

    @property
    def nll_second(self) -> float:
        return -self.logprob / self.seconds if self.seconds > 0 else float("nan")


class MusicLM:
    """A recurrent music language model with its tokenizer (from a checkpoint)."""

    def __init__(self, model: RecurrentLM, tokenizer, prepare_settings: dict | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.special = SpecialIds(tokenizer)
        self.decoder = Decoder(model, self.special.bos, self.special.eos, self.special.pad,
                               timeline=lambda batch, device: Timeline(tokenizer, batch, device))
        self.notes_per_id = torch.as_tensor(note_counts(tokenizer))
        clean = (prepare_settings or {}).get("clean", {})
        self.clean = CleanOptions(**{**clean, "min_notes": 1, "max_seconds": float("inf")})

    @property
    def device(self) -> torch.device:
        """Where the model is; sampling and scoring run there."""
        return self.decoder.device

    def to(self, device: torch.device | str) -> "MusicLM":
        """Move the model to ``device`` (e.g. ``"cuda"``); returns ``self``."""
        self.model.to(device)
        return self

    @classmethod
    def from_checkpoint(cls, meta: dict, weights: dict) -> "MusicLM":
        """From a checkpoint's ``melodylm`` block and its module weights (:func:`melodylm.checkpoint.load`)."""
        model = RecurrentLM(**meta["model"])
        model.load_state_dict(weights)
        return cls(model, tokenizer_from_json(meta["tokenizer"]), meta.get("prepare"))

    # --- constraints and sampling settings ---------------------------------------

    def processors(
        self,
        grammar: bool | None = None,
        max_tokens: int | None = None,
        min_notes: int = 0,
        pitch_range: tuple[int, int] | None = None,
        key: str | None = None,
        monophonic: bool = False,
        repetition_penalty: float = 1.0,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        sampling: bool = True,
    ) -> list:
        """The processor list for these settings: constraints first, then the sampling shape.

        ``grammar``: mask token successions that cannot decode to valid MIDI
        (``None``: whenever the tokenizer supports it, i.e. without BPE).
        ``max_tokens`` lets the mask plan a complete ending within the budget.
        ``sampling=False`` (greedy, beam search) leaves out temperature, top-k and top-p.
        """
        from melodylm.decoding.grammar import GrammarMask

        procs: list = []
        if grammar is None:
            grammar = not self.tokenizer.is_trained
        if grammar:
            procs.append(GrammarMask(self.tokenizer, max_tokens=max_tokens))
        if min_notes > 0:
            procs.append(P.MinNotes(min_notes, self.special.eos, self.notes_per_id))
        pitch_filters = []
        if pitch_range is not None:
            pitch_filters.append(C.PitchRange(self.tokenizer, *pitch_range))
        if key:
            pitch_filters.append(C.AllowedPitchClasses(self.tokenizer, C.scale_pitch_classes(key)))
        if pitch_filters:  # one combined filter: also refuses a range holding no pitch of the key
            procs.append(pitch_filters[0] if len(pitch_filters) == 1 else pitch_filters[0] & pitch_filters[1])
        if monophonic:
            procs.append(C.Monophonic(self.tokenizer))
        return procs + P.sampling_shape(temperature, top_k, top_p, repetition_penalty, sampling,
                                         keep=(self.special.eos,))

    def sample(
        self,
        num: int = 1,
        max_tokens: int = 512,
        bars: int | list[int] | None = None,
        seconds: float | None = None,
        greedy: bool = False,
        seed: int | None = None,
        primer: list[int] = (),
        min_bars: int | list[int] | None = None,
        **settings,
    ) -> list[Sample]:
        """``num`` pieces in one batch (continuing ``primer`` ids, see :meth:`primer_ids`).

        Stops on EOS, ``max_tokens``, ``bars`` or ``seconds`` of new music; EOS is banned
        before ``min_bars`` bars. ``bars`` and ``min_bars`` may be one value per row.
        ``settings`` are :meth:`processors` keywords (temperature, top_k,
        top_p, key, pitch_range, monophonic, min_notes, repetition_penalty,
        grammar). Decode a result with :meth:`to_score`.
        """
        procs = self.processors(sampling=not greedy, max_tokens=max_tokens, **settings)
        return self.decoder.sample(num, StopAt(max_tokens, bars, seconds, min_bars), procs, seed=seed, greedy=greedy,
                                   primer=list(primer))

    def beam_search(
        self,
        beam_size: int = 4,
        max_tokens: int = 512,
        bars: int | None = None,
        seconds: float | None = None,
        length_penalty: float = 1.0,
        primer: list[int] = (),
        min_bars: int | None = None,
        **constraints,
    ) -> list[Sample]:
        """The ``beam_size`` most likely continuations, best first (constraints and limits as in :meth:`sample`)."""
        procs = self.processors(sampling=False, max_tokens=max_tokens, **constraints)
        return self.decoder.beam_search(beam_size, StopAt(max_tokens, bars, seconds, min_bars), procs,
                                        length_penalty=length_penalty, primer=list(primer))

    # --- tokens <-> music -----------------------------------------------------------

    def primer_ids(self, midi: str | Path | Score, bars: int | None = None) -> list[int]:
        """Token ids of a primer MIDI file (or its first ``bars`` bars), cleaned like the training data."""
        score = read_midi(midi)
        if bars is not None:
            downbeats = score.get_downbeats()
            if bars < 1:
                raise UserError(f"--primer-bars must be >= 1, got {bars}")
            if len(downbeats) > bars:
                score = score.clip(0, int(downbeats[bars]), clip_end=True)
        ids, _ = self.encode(score)
        if not ids:
            raise UserError(f"primer {midi} gives no tokens")
        return ids

    def to_score(self, ids: list[int], primer: list[int] = (), keep_primer: bool = True) -> Score:
        """Token ids (no BOS/EOS) -> symusic Score; with a primer, the continuation after it.

        ``keep_primer=False`` drops the primer's notes and moves the
        continuation to start at the bar where it begins.
        """
        score = self.tokenizer.decode([list(primer) + list(ids)])
        if not primer or keep_primer:
            return score
        n_primer = self.tokenizer.decode([list(primer)]).note_num()
        cut = None
        for track in score.tracks:
            arr = track.notes.numpy()
            order = np.argsort(arr["time"], kind="stable")
            keep = np.ones(len(order), dtype=bool)
            keep[order[:n_primer]] = False
            cut = int(arr["time"][keep].min()) if keep.any() else int(score.end())
            track.notes = Note.from_numpy(**{k: v[keep] for k, v in arr.items()})
        bar_starts = score.get_downbeats()
        shift = int(bar_starts[bar_starts <= cut].max()) if cut is not None and len(bar_starts) else 0
        return _shift_left(score, shift)

    def invalid_token_rate(self, ids: list[int]) -> float:
        """miditok's own error measure: share of tokens breaking the grammar (0 = valid)."""
        return float(self.tokenizer.tokens_errors(TokSequence(ids=list(ids)))) if ids else 0.0

    def encode(self, midi: str | Path | Score) -> tuple[list[int], Score]:
        """A MIDI file (cleaned as the training data was) -> token ids and the cleaned score."""
        try:
            score, _ = clean_score(read_midi(midi), self.clean)
        except Rejected as rej:
            raise UserError(f"{midi}: {rej}") from rej
        return score_to_ids(self.tokenizer, score), score

    # --- likelihood -------------------------------------------------------------------

    def score(self, midi_or_ids: str | Path | Score | list[int]) -> ScoreResult:
        """Log-likelihood of a piece given as a MIDI path, a Score or token ids."""
        if isinstance(midi_or_ids, (list, tuple, np.ndarray)):
            ids = [int(i) for i in midi_or_ids]
            score = self.to_score(ids)
        else:
            ids, score = self.encode(midi_or_ids)
        logp = self.decoder.token_logprobs([ids])[0]
        return ScoreResult(logprob=float(logp.sum()), tokens=len(logp), notes=score.note_num(),
                           seconds=float(score.to("second").end()))


def _shift_left(score: Score, ticks: int) -> Score:
    """Move everything ``ticks`` earlier; tempo and meter in force at ``ticks`` move to 0."""
    out = score.copy()
    for track in out.tracks:
        track.shift_time(-ticks, inplace=True)
    for events in (out.time_signatures, out.tempos, out.key_signatures):
        before = [e for e in events if e.time <= ticks]
        after = [e for e in events if e.time > ticks]
        events.clear()
        for e in ([before[-1]] if before else []) + after:
            e = e.copy()
            e.time = max(e.time - ticks, 0)
            events.append(e)
    return out
