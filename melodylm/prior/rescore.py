"""The language model's log-probability of note sequences, and N-best rescoring.

Candidates from a transcription system (notes in seconds plus an acoustic
log-score) are ranked by ``acoustic + λ·LM``, where LM is the log-probability
(nats) of the candidate's tokens under the checkpoint, EOS included, computed
by the one decoding core (:meth:`~melodylm.decoding.core.Decoder.token_logprobs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from melodylm.errors import UserError
from melodylm.prior.notes import Grid, Note, note_ids


def note_logprobs(lm, sequences: list[list[Note]], grid: Grid) -> list[float]:
    """Log-probability (nats) of each note sequence under ``lm`` (a :class:`~melodylm.api.lm.MusicLM`)."""
    ids = [note_ids(lm.tokenizer, notes, grid) for notes in sequences]
    return [float(lp.sum()) for lp in lm.decoder.token_logprobs(ids)]


def note_logprob(lm, notes: list[Note], grid: Grid) -> float:
    """Log-probability (nats) of one note sequence: its tokens and the final EOS."""
    return note_logprobs(lm, [notes], grid)[0]


@dataclass
class Ranked:
    """One rescored candidate: ``index`` in the input list; scores in nats; ``total = acoustic + λ·lm``."""

    index: int
    notes: list[Note]
    acoustic: float
    lm: float
    total: float


def rescore(lm, candidates: list[tuple[list[Note], float]], grid: Grid, lam: float = 1.0) -> list[Ranked]:
    """Rank ``(notes, acoustic log-score)`` candidates by ``acoustic + lam * LM``, best first.

    ``lam = 0`` keeps the acoustic order (stable for ties).
    """
    if lam < 0:
        raise UserError(f"the LM weight must be >= 0, got {lam}")
    if not candidates:
        return []
    lms = note_logprobs(lm, [notes for notes, _ in candidates], grid)
    ranked = [Ranked(i, notes, float(ac), lp, float(ac) + lam * lp)
              for i, ((notes, ac), lp) in enumerate(zip(candidates, lms))]
    return sorted(ranked, key=lambda r: r.total, reverse=True)


# --- the N-best file format ------------------------------------------------------------

NBEST_FORMAT = """\
one JSON object per line, one N-best list each:
  {"id": "tune1", "qpm": 120, "time_signature": "4/4", "origin": 0.0,
   "candidates": [{"acoustic": -12.5, "notes": [[onset_s, offset_s, pitch], ...]}, ...]}
qpm, time_signature and origin (the first downbeat, s) are optional (120, 4/4, 0)."""


@dataclass
class NBestList:
    id: str
    grid: Grid
    candidates: list[tuple[list[Note], float]]


def read_nbest(path: str | Path) -> list[NBestList]:
    """Parse an N-best JSONL file (see :data:`NBEST_FORMAT`); mistakes are :class:`UserError` with the line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            grid = Grid(float(obj.get("qpm", 120.0)), Grid.parse_time_signature(obj.get("time_signature", "4/4")),
                        float(obj.get("origin", 0.0)))
            cands = [([Note(float(a), float(b), int(p)) for a, b, p in c["notes"]], float(c["acoustic"]))
                     for c in obj["candidates"]]
        except UserError as err:
            raise UserError(f"{path}:{n}: {err}") from err
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path}:{n}: not an N-best list ({type(err).__name__}: {err}); expected {NBEST_FORMAT}") from err
        for notes, _ in cands:
            if any(not 0 <= note.pitch < 128 or note.offset < note.onset for note in notes):
                raise UserError(f"{path}:{n}: a note has a pitch outside 0..127 or ends before it starts")
        out.append(NBestList(str(obj.get("id", n)), grid, cands))
    return out
