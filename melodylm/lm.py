"""``melodylm.load(ckpt)``: a trained language model with its tokenizer, ready to sample and score."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from symusic import Score

from melodylm.checkpoint import module_state, read_checkpoint
from melodylm.decoding import processors as P
from melodylm.decoding.core import Decoder, Sample
from melodylm.errors import UserError
from melodylm.midi import CleanOptions, Rejected, clean_score, read_score
from melodylm.models.components.rnn_lm import RecurrentLM
from melodylm.tokenizer import SpecialIds, note_counts, tokenizer_from_json


@dataclass
class ScoreResult:
    """Likelihood of one piece. NLLs in nats; ``tokens`` counts predicted tokens (EOS included)."""

    logprob: float
    tokens: int
    notes: int
    seconds: float

    @property
    def nll_token(self) -> float:
        return -self.logprob / self.tokens

    @property
    def nll_note(self) -> float:
        return -self.logprob / self.notes if self.notes else float("nan")


class MusicLM:
    """A recurrent music language model with its tokenizer (from a checkpoint)."""

    def __init__(self, model: RecurrentLM, tokenizer, prepare_settings: dict | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.special = SpecialIds(tokenizer)
        self.decoder = Decoder(model, self.special.bos, self.special.eos, self.special.pad)
        self.notes_per_id = torch.as_tensor(note_counts(tokenizer))
        clean = (prepare_settings or {}).get("clean", {})
        self.clean = CleanOptions(**{**clean, "min_notes": 1, "max_seconds": float("inf")})

    # --- generation ---------------------------------------------------------

    def sample(
        self,
        num: int = 1,
        max_tokens: int = 512,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        min_notes: int = 0,
        greedy: bool = False,
        seed: int | None = None,
    ) -> list[Sample]:
        """``num`` new pieces as token ids (decode with :meth:`to_score`)."""
        procs = []
        if min_notes > 0:
            procs.append(P.MinNotes(min_notes, self.special.eos, self.notes_per_id))
        if not greedy:
            procs.append(P.Temperature(temperature))
            if top_k:
                procs.append(P.TopK(top_k))
            if top_p < 1.0:
                procs.append(P.TopP(top_p))
        return self.decoder.sample(num, max_tokens, procs, seed=seed, greedy=greedy)

    def to_score(self, ids: list[int]) -> Score:
        """Token ids (no BOS/EOS) -> symusic Score."""
        return self.tokenizer.decode([list(ids)])

    # --- likelihood ---------------------------------------------------------

    def encode(self, midi: str | Path | Score) -> tuple[list[int], Score]:
        """A MIDI file (cleaned as the training data was) -> token ids and the cleaned score."""
        if not isinstance(midi, Score):
            path = Path(midi)
            if not path.is_file():
                raise UserError(f"{path} does not exist")
            midi = read_score(path.read_bytes())
        score, _ = clean_score(midi, self.clean)
        seq = self.tokenizer.encode(score)
        return (seq[0] if isinstance(seq, list) else seq).ids, score

    def score(self, midi_or_ids: str | Path | Score | list[int]) -> ScoreResult:
        """Log-likelihood of a piece given as a MIDI path, a Score or token ids."""
        if isinstance(midi_or_ids, (list, tuple, np.ndarray)):
            ids = [int(i) for i in midi_or_ids]
            score = self.to_score(ids)
        else:
            try:
                ids, score = self.encode(midi_or_ids)
            except Rejected as rej:
                raise UserError(f"{midi_or_ids}: {rej}") from rej
        logp = self.decoder.token_logprobs([ids])[0]
        return ScoreResult(
            logprob=float(logp.sum()), tokens=len(logp), notes=score.note_num(),
            seconds=float(score.to("second").end()),
        )


def load(path: str | Path) -> MusicLM:
    """Load a melodylm checkpoint (no Lightning needed, ``weights_only`` unpickling)."""
    ckpt = read_checkpoint(path)
    meta = ckpt["melodylm"]
    if meta.get("kind") != "language_model":
        raise UserError(f"{path} holds a {meta.get('kind')!r} model, not a language model")
    model = RecurrentLM(**meta["model"])
    model.load_state_dict(module_state(ckpt))
    return MusicLM(model, tokenizer_from_json(meta["tokenizer"]), meta.get("prepare"))
