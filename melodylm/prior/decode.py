"""Beam search over note segments and pitch candidates with the LM's state carried in the beam.

Each hypothesis holds the LM's recurrent state after its tokens so far. At a
segment it branches into the segment's pitch candidates (and, if allowed,
"no melody note here"); each branch feeds only the new tokens with
``model.step`` (never re-running a prefix) and is ranked by
``acoustic + λ·LM``.

As far as the LM is concerned a melody is legato: a note lasts until the next
note's onset (the last one until its acoustic offset). So a note's Duration
token is fed when the next note is chosen, and skipping a segment makes the
previous note longer, which the LM pays for when the next note comes. The
acoustic offsets are far noisier than the onsets (priced by the LM, they
cost more than a nat per note) and :func:`~melodylm.prior.posteriors.refine_offsets`
puts them back on the result.

The tokens come from the checkpoint's own tokenizer: every candidate of every
segment is encoded once, together, and cut into per-note chunks (REMI: the
Bar/TimeSig tokens before a note, then its Position and Pitch); Duration
tokens are the tokenizer's own for each length (:class:`Durations`). The
tokens scored while decoding are exactly those of
:func:`~melodylm.prior.notes.note_ids` on the result, and its LM score equals
:func:`~melodylm.prior.rescore.note_logprob`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from melodylm.decoding.core import feed, select_state
from melodylm.errors import UserError
from melodylm.prior.notes import Grid, Note, notes_to_score
from melodylm.prior.posteriors import Segment

NOTE_PARTS = ("Position", "Pitch", "Velocity")  # the tokens of one REMI note before its Duration; others lead up to it


@dataclass
class Transcription:
    """A decoded melody: ``notes`` (seconds, legato), ``choices`` per segment (candidate index, -1 = skipped),
    scores in nats."""

    notes: list[Note]
    choices: list[int]
    acoustic: float
    lm: float
    total: float


def distinct_onsets(segs: list[Segment], grid: Grid) -> list[Segment]:
    """Merge segments whose onsets fall on the same grid position (the LM cannot tell them apart).

    The merged segment starts at the first onset and offers the candidates of
    all of them (each pitch with its best acoustic score), best first.
    """
    out: list[Segment] = []
    last = None
    for s in segs:
        tick = grid.tick(s.onset)
        if tick != last:
            out.append(replace(s, candidates=list(s.candidates)))
            last = tick
            continue
        merged = out[-1]
        best = {c.pitch: c for c in merged.candidates}
        for c in s.candidates:
            if c.pitch not in best or c.acoustic > best[c.pitch].acoustic:
                best[c.pitch] = replace(c, offset=max(c.offset, merged.onset))
        merged.candidates = sorted(best.values(), key=lambda c: c.acoustic, reverse=True)
        merged.end = s.end
    return out


def segment_chunks(tokenizer, segs: list[Segment], grid: Grid) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Token ids per segment: ``lead[s]`` (bar lines before segment ``s``) and ``note[s][k]`` (its candidate ``k``
    up to its Duration, which :class:`Durations` gives).

    ``segs`` must have distinct onset ticks (:func:`distinct_onsets`).
    """
    if type(tokenizer).__name__ != "REMI" or tokenizer.is_trained:
        raise UserError("the transcription prior needs a checkpoint with a REMI tokenizer without BPE "
                        f"(this one: {type(tokenizer).__name__}{' + BPE' if tokenizer.is_trained else ''})")
    if not segs:
        return [], []
    notes = [Note(s.onset, c.offset, c.pitch) for s in segs for c in s.candidates]
    seq = tokenizer.encode(notes_to_score(notes, grid))
    seq = seq[0] if isinstance(seq, list) else seq
    lead: list[list[int]] = []
    by_pitch: list[dict[int, list[int]]] = []
    pending: list[int] = []
    current: list[int] | None = None
    position = None
    for tok, tid in zip(seq.tokens, seq.ids):
        kind, _, value = tok.partition("_")
        if kind == "Position":
            lead.append(pending)
            by_pitch.append({})
            pending, position = [], tid
        elif kind == "Pitch":
            current = by_pitch[-1].setdefault(int(value), [position])
            current.append(tid)
        elif kind in NOTE_PARTS:
            current.append(tid)
        elif kind != "Duration":
            pending.append(tid)
    if len(lead) != len(segs):
        raise RuntimeError(f"{len(segs)} segments gave {len(lead)} onsets in the tokens: onsets not distinct on the grid")
    chunks = [[by_pitch[i][c.pitch] for c in s.candidates] for i, s in enumerate(segs)]
    return lead, chunks


class Durations:
    """The tokenizer's Duration token ids for a note of ``ticks`` on ``grid`` (at least one grid step), cached."""

    def __init__(self, tokenizer, grid: Grid):
        self.tokenizer, self.grid, self.cache = tokenizer, grid, {}

    def __call__(self, ticks: int) -> list[int]:
        ticks = max(self.grid.min_ticks, ticks)
        if ticks not in self.cache:
            score = notes_to_score([Note(self.grid.seconds(0), self.grid.seconds(ticks), 60)], self.grid)
            seq = self.tokenizer.encode(score)
            seq = seq[0] if isinstance(seq, list) else seq
            self.cache[ticks] = [tid for tok, tid in zip(seq.tokens, seq.ids) if tok.startswith("Duration_")]
        return self.cache[ticks]


def acoustic_only(segs: list[Segment]) -> Transcription:
    """The best path by acoustic scores alone (what λ = 0 decodes), exactly, by dynamic programming.

    The only dependence between segments is a skip's sustain evidence, which
    depends on the last melody pitch: the state is that pitch.
    """
    paths: dict[int | None, tuple[float, list[int]]] = {None: (0.0, [])}
    for s in segs:
        nxt: dict[int | None, tuple[float, list[int]]] = {}
        for prev, (score, choices) in paths.items():
            options = [(c.pitch, c.acoustic, k) for k, c in enumerate(s.candidates)]
            options.append((prev, s.skip_score(prev), -1))
            for state, a, k in options:
                if a > float("-inf") and (state not in nxt or score + a > nxt[state][0]):
                    nxt[state] = (score + a, choices + [k])
        paths = nxt
    total, choices = max(paths.values(), key=lambda v: v[0])
    return Transcription(_notes(segs, choices), choices, total, float("nan"), total)


def _notes(segs: list[Segment], choices: list[int]) -> list[Note]:
    """The chosen notes, legato: each lasts until the next one's onset, the last until its candidate's offset."""
    kept = [(s, s.candidates[k]) for s, k in zip(segs, choices) if k >= 0]
    ends = [s.onset for s, _ in kept[1:]] + [c.offset for _, c in kept[-1:]]
    return [Note(s.onset, end, c.pitch) for (s, c), end in zip(kept, ends)]


class _Beam:
    """Hypotheses as rows: LM state, next-token log-probabilities, scores, choices, last kept segment."""

    def __init__(self, logp, state, acoustic, lm, choices, last):
        self.logp, self.state, self.acoustic, self.lm = logp, state, acoustic, lm
        self.choices, self.last = choices, last


@torch.inference_mode()
def decode(lm, segs: list[Segment], grid: Grid, lam: float = 1.0, beam_size: int = 8,
           note_bonus: float = 0.0) -> Transcription:
    """The note sequence maximising ``acoustic + lam * (LM + note_bonus * notes)`` over ``segs`` (beam search).

    ``note_bonus`` (nats per note, as a word-insertion bonus in speech
    recognition) offsets the LM's cost of every extra note, which would
    otherwise make skipping segments cheap; it matters only when segments can
    be skipped. See the module doc for the search.

    ``lm`` is a :class:`~melodylm.api.lm.MusicLM`; LM scores include the final EOS.
    With ``lam = 0`` the LM is still stepped and its score reported, but it
    does not steer: the result is :func:`acoustic_only`'s (up to beam pruning).
    """
    if lam < 0:
        raise UserError(f"the LM weight must be >= 0, got {lam}")
    if beam_size < 1:
        raise UserError(f"the beam size must be >= 1, got {beam_size}")
    segs = distinct_onsets(segs, grid)
    lead, chunks = segment_chunks(lm.tokenizer, segs, grid)
    durations = Durations(lm.tokenizer, grid)
    ticks = [grid.tick(s.onset) for s in segs]
    model, dec = lm.decoder.model, lm.decoder
    dev = dec.device  # every tensor of the search lives beside the model
    logits, state = model(torch.tensor([[dec.bos]], device=dev))
    beam = _Beam(logits[:, -1].log_softmax(-1), state, torch.zeros(1, device=dev), torch.zeros(1, device=dev), [[]],
                 [-1])
    bonus = torch.zeros(1, device=dev)
    for i, seg in enumerate(segs):
        rows, seqs, ac, picks = [], [], [], []
        for b in range(len(beam.choices)):
            last = beam.last[b]
            # the previous note ends here: its Duration, then the bar lines up to this onset
            before = (durations(ticks[i] - ticks[last]) if last >= 0 else []) + [
                t for s in range(last + 1, i + 1) for t in lead[s]]
            prev = segs[last].candidates[beam.choices[b][last]].pitch if last >= 0 else None
            options = [(k, c.acoustic) for k, c in enumerate(seg.candidates)] + [(-1, seg.skip_score(prev))]
            for k, a in options:
                if a == float("-inf"):
                    continue
                rows.append(b)
                seqs.append([] if k < 0 else before + chunks[i][k])
                ac.append(a)
                picks.append(k)
        idx = torch.tensor(rows, device=dev)
        logp, st, gained = feed(model, beam.logp[idx], select_state(beam.state, idx), seqs)
        acoustic = beam.acoustic[idx] + torch.tensor(ac, device=dev)
        lmsc = beam.lm[idx] + gained
        bonus = bonus[idx] + note_bonus * (torch.tensor(picks, device=dev) >= 0)
        keep = torch.topk(acoustic + lam * (lmsc + bonus), min(beam_size, len(rows))).indices
        bonus = bonus[keep]
        kept = keep.tolist()
        beam = _Beam(logp[keep], select_state(st, keep), acoustic[keep], lmsc[keep],
                     [beam.choices[rows[j]] + [picks[j]] for j in kept],
                     [i if picks[j] >= 0 else beam.last[rows[j]] for j in kept])
    ends = [durations(grid.tick(segs[last].candidates[choices[last]].offset) - ticks[last]) if last >= 0 else []
            for last, choices in zip(beam.last, beam.choices)]  # the last note's Duration, by its own offset
    logp, _, gained = feed(model, beam.logp, beam.state, ends)
    lm_final = beam.lm + gained + logp[:, dec.eos]
    best = int((beam.acoustic + lam * (lm_final + bonus)).argmax())
    total = beam.acoustic + lam * lm_final
    choices = beam.choices[best]
    return Transcription(_notes(segs, choices), choices, float(beam.acoustic[best]), float(lm_final[best]), float(total[best]))
