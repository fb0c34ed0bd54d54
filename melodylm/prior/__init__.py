"""The language model as a prior for transcription: note-sequence scores, N-best rescoring, beam decoding.

    lm = melodylm.load("checkpoints/nottingham-melody")
    grid = Grid(qpm=120, time_signature=(6, 8))
    note_logprob(lm, notes, grid)                                  # nats, EOS included
    rescore(lm, [(notes_a, -10.2), (notes_b, -9.8)], grid, lam=1)  # best first
    decode(lm, segments(posteriorgram), grid, lam=1, beam_size=8)  # frame posteriors -> melody

Monophonic melodies; the checkpoint's tokenizer must be REMI without BPE for decoding. Every note, with a
piano-roll LM as the prior: :mod:`melodylm.prior.frames` (``frames.decode(roll_lm, frames.pool(post, grid))``);
the grid without an oracle: :mod:`melodylm.prior.meter`.
"""

from melodylm.prior.decode import Transcription, acoustic_only, decode
from melodylm.prior.notes import Grid, Note, hold_repeats, note_ids, notes_to_score, score_to_notes
from melodylm.prior.posteriors import Candidate, Posteriorgram, Segment, SegmentOptions, segments
from melodylm.prior.rescore import Ranked, note_logprob, note_logprobs, read_nbest, rescore

__all__ = [
    "Candidate", "Grid", "Note", "Posteriorgram", "Ranked", "Segment", "SegmentOptions", "Transcription",
    "acoustic_only", "decode", "hold_repeats", "note_ids", "note_logprob", "note_logprobs", "notes_to_score", "read_nbest",
    "rescore", "score_to_notes", "segments",
]
