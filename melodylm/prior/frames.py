"""Polyphonic transcription on a piano-roll LM's frame grid: pooled posteriors, baselines and the LM beam search.

An acoustic model's note posteriors (basic-pitch: ``(frames, 88)`` at about
86 frames per second) are pooled onto the grid of a piano-roll checkpoint:
``frames_per_beat`` frames per quarter note at a tempo, from a first downbeat
(:class:`FrameGrid`, :func:`pool`). On that grid a transcription is a binary
``(frames, 88)`` roll, scored per frame by

    acoustic(y) = sum over keys of y_k * (logit p_k - logit θ)

(the Bernoulli log-likelihood of ``y`` with every key's log-odds moved by the
threshold θ, up to a constant per frame): the best frame under it alone is
``p > θ`` (:func:`threshold`), so θ tuned for acoustic-only frames carries
over to every system below.

- :func:`hmm`: each key on its own, a two-state (up/down) Markov chain whose
  transitions are counted on training rolls (:func:`key_transitions`),
  decoded exactly by Viterbi: acoustic + λ·chain (the temporal smoothing of
  Poliner & Ellis 2007, the baseline of Sigtia et al.).
- :func:`decode`: a beam search over whole frames that maximises
  acoustic + λ·LM, the LM being the checkpoint's RNN over its frame tokens.
  Each hypothesis carries its LM state; at every frame it branches into the
  acoustically best frames (:func:`best_frames`, exact k-best of the
  per-key Bernoullis) plus its own previous frame held, each branch fed only
  its frame's tokens (:func:`melodylm.decoding.core.feed`, never a prefix
  re-run). The tokens fed are exactly the checkpoint's encoding of the
  result, so its LM score equals :meth:`PianoRollLM.score` of the roll.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch
from symusic import Score, Tempo

from melodylm.data import pianoroll as PR
from melodylm.decoding.core import feed, select_state
from melodylm.errors import UserError
from melodylm.prior.posteriors import Posteriorgram

EPS = 1e-4  # posteriors are clipped to [EPS, 1 - EPS] before their log-odds are taken


@dataclass(frozen=True)
class FrameGrid:
    """``frames_per_beat`` frames per quarter note at ``qpm`` quarter notes per minute; frame 0 starts at ``origin``
    seconds."""

    qpm: float
    frames_per_beat: int
    origin: float = 0.0

    def __post_init__(self):
        if not self.qpm > 0:
            raise UserError(f"the tempo must be > 0 quarter notes per minute, got {self.qpm}")
        if self.frames_per_beat < 1:
            raise UserError(f"frames per beat must be >= 1, got {self.frames_per_beat}")
        if self.origin < 0:
            raise UserError(f"the first frame starts within the audio: origin must be >= 0 s, got {self.origin}")

    @property
    def seconds_per_frame(self) -> float:
        return 60.0 / self.qpm / self.frames_per_beat

    def starts(self, frames: int) -> np.ndarray:
        """Start time (s) of each of ``frames`` frames."""
        return self.origin + np.arange(frames) * self.seconds_per_frame


def roll_to_midi(roll: np.ndarray, grid: FrameGrid, tpq: int = 480) -> Score:
    """A roll as MIDI at the grid's tempo, frame 0 at its origin (a held key is one note, velocity 80)."""
    score = PR.roll_to_score(roll, tpq // grid.frames_per_beat, tpq)
    score.tempos.append(Tempo(0, grid.qpm))
    shift = int(round(grid.origin * grid.qpm / 60 * tpq))
    return score.shift_time(shift) if shift else score


def note_runs(roll: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, first frame, end frame) of every note of a roll (a run of consecutive frames of one key), key-major."""
    roll = np.asarray(roll, bool).reshape(-1, PR.KEYS)
    padded = np.vstack([np.zeros((1, PR.KEYS), bool), roll, np.zeros((1, PR.KEYS), bool)])
    change = np.diff(padded.astype(np.int8), axis=0).T  # (keys, frames + 1)
    keys, starts = np.nonzero(change == 1)
    _, ends = np.nonzero(change == -1)
    return keys, starts, ends


def pool(post: Posteriorgram, grid: FrameGrid, frames: int | None = None) -> np.ndarray:
    """Mean note posterior of each grid frame: ``(frames, 88)``; the acoustic frames whose start falls inside.

    ``frames`` defaults to the last grid frame that starts before the audio ends; a grid frame with no
    acoustic frame inside (a grid finer than the model's) takes the nearest acoustic frame.
    """
    starts = post.times[:-1]
    if frames is None:
        frames = max(int(np.floor((post.times[-1] - grid.origin) / grid.seconds_per_frame)), 0)
    edges = grid.starts(frames + 1)
    which = np.searchsorted(edges, starts, side="right") - 1  # grid frame of each acoustic frame (-1: before)
    out = np.zeros((frames, PR.KEYS), dtype=np.float64)
    count = np.zeros(frames)
    inside = (which >= 0) & (which < frames)
    np.add.at(out, which[inside], post.note[inside])
    np.add.at(count, which[inside], 1)
    empty = np.flatnonzero(count == 0)
    if len(empty) and post.frames:
        nearest = np.clip(np.searchsorted(starts, (edges[empty] + edges[empty + 1]) / 2), 0, post.frames - 1)
        out[empty], count[empty] = post.note[nearest], 1
    return (out / np.maximum(count, 1)[:, None]).astype(np.float32)


def extent(probs: np.ndarray, threshold: float) -> int:
    """Frames up to the last one with a key above ``threshold`` (the silence after the music is left out)."""
    active = np.flatnonzero((np.asarray(probs) > threshold).any(axis=1))
    return int(active[-1]) + 1 if len(active) else 0


def log_odds(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``logit p - logit θ`` per key and frame: a key's acoustic score for being down (up scores 0)."""
    if not 0 < threshold < 1:
        raise UserError(f"the threshold must be in (0, 1), got {threshold}")
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p) - (np.log(threshold) - np.log1p(-threshold))


def threshold(probs: np.ndarray, theta: float = 0.5) -> np.ndarray:
    """Acoustic-only frames: a key is down where its posterior exceeds ``theta``."""
    return np.asarray(probs) > theta


def best_frames(odds: np.ndarray, k: int) -> list[tuple[np.ndarray, float]]:
    """The ``k`` best frames of one grid frame under its keys' log-odds ``odds`` ``(88,)``, best first, with scores.

    Exact: the best frame takes every key with positive log-odds; each other frame differs from it by a set of
    flips, each costing ``|odds|``, and the k cheapest sets are enumerated in order (Lawler's scheme over keys
    sorted by cost: from the set ending at key ``i``, add key ``i + 1`` or move ``i`` to ``i + 1``).
    """
    odds = np.asarray(odds, dtype=np.float64)
    best = odds > 0
    top = float(odds[best].sum())
    cost = np.abs(odds)
    order = np.argsort(cost, kind="stable")
    out = [(best, top)]
    heap = [(cost[order[0]], (0,))] if k > 1 else []
    while heap and len(out) < k:
        c, flips = heapq.heappop(heap)
        frame = best.copy()
        frame[order[list(flips)]] ^= True
        out.append((frame, top - c))
        last = flips[-1]
        if last + 1 < len(order):
            heapq.heappush(heap, (c + cost[order[last + 1]], flips + (last + 1,)))
            heapq.heappush(heap, (c - cost[order[last]] + cost[order[last + 1]], flips[:-1] + (last + 1,)))
    return out


def frame_tokens(encoding: PR.Encoding, previous: np.ndarray, frame: np.ndarray) -> list[int]:
    """The tokens that write ``frame`` after ``previous`` in ``encoding`` (a frame's tokens may depend on the last)."""
    ids = encoding.encode(np.stack([previous, frame]))[:-1]  # without EOS
    first_end = next(i for i, t in enumerate(ids) if t in encoding.frame_ends)
    return ids[first_end + 1 :]


def key_transitions(rolls: list[np.ndarray], prior: float = 1.0) -> np.ndarray:
    """Log transition probabilities ``(88, 2, 2)`` (from up/down to up/down) of each key, counted on ``rolls``.

    ``prior`` pseudo-counts are spread over each key's rows in proportion to the counts pooled over all keys
    (add-one smoothed), so a key seldom played borrows the others' habits.
    """
    counts = np.zeros((PR.KEYS, 2, 2))
    for roll in rolls:
        r = np.vstack([np.zeros((1, PR.KEYS), bool), np.asarray(roll, bool)]).astype(np.int64)
        for a in (0, 1):
            for b in (0, 1):
                counts[:, a, b] += ((r[:-1] == a) & (r[1:] == b)).sum(axis=0)
    pooled = counts.sum(axis=0) + 1.0  # Laplace: every transition is possible somewhere
    pooled = pooled / pooled.sum(axis=1, keepdims=True)
    counts = counts + prior * pooled
    with np.errstate(divide="ignore", invalid="ignore"):  # prior 0: a transition never seen is impossible
        return np.log(counts / counts.sum(axis=2, keepdims=True))


def hmm(probs: np.ndarray, transitions: np.ndarray, lam: float = 1.0, theta: float = 0.5) -> np.ndarray:
    """Per-key two-state Viterbi: the roll maximising acoustic + ``lam``·(key transitions), each key alone.

    The chain starts from "up" (a piece begins in silence), as :func:`key_transitions` counts it.
    """
    odds = log_odds(probs, theta)  # (frames, 88)
    frames = len(odds)
    if frames == 0:
        return np.zeros((0, PR.KEYS), bool)
    trans = lam * transitions  # (88, from, to)
    score = np.stack([trans[:, 0, 0], trans[:, 0, 1] + odds[0]], axis=1)  # (88, state)
    back = np.zeros((frames, PR.KEYS, 2), dtype=np.int8)
    for t in range(1, frames):
        cand = score[:, :, None] + trans  # (88, from, to)
        back[t] = cand.argmax(axis=1)
        score = cand.max(axis=1)
        score[:, 1] += odds[t]
    roll = np.zeros((frames, PR.KEYS), bool)
    state = score.argmax(axis=1)
    keys = np.arange(PR.KEYS)
    for t in range(frames - 1, -1, -1):
        roll[t] = state == 1
        state = back[t, keys, state]
    return roll


@dataclass
class FrameTranscription:
    """A decoded roll ``(frames, 88)`` with its scores (nats) and the LM tokens fed (the checkpoint's encoding)."""

    roll: np.ndarray
    acoustic: float
    lm: float
    total: float
    ids: list[int]


@torch.inference_mode()
def decode(lm, probs: np.ndarray, lam: float = 0.25, beam_size: int = 4, candidates: int = 64,
           theta: float = 0.2) -> FrameTranscription:
    """The roll maximising acoustic + ``lam``·LM over the grid frames of ``probs`` (beam search; module doc).

    ``lm`` is a :class:`~melodylm.api.pianoroll.PianoRollLM` whose grid ``probs`` is on; ``candidates`` frames
    per grid frame come from the acoustics (plus each hypothesis's previous frame); ``theta`` is the acoustic
    threshold. The LM score includes the final EOS. The defaults are ``transcribe --polyphonic``'s, chosen on
    JSB's validation pieces (basic-pitch's posteriors, quarter-note frames at 120 bpm: docs/transcription.md).
    """
    if lam < 0:
        raise UserError(f"the LM weight must be >= 0, got {lam}")
    if beam_size < 1 or candidates < 1:
        raise UserError(f"the beam size and the candidates per frame must be >= 1, got {beam_size} and {candidates}")
    odds = log_odds(probs, theta)
    enc, dec = lm.encoding, lm.decoder
    model, dev = dec.model, dec.device
    logits, state = model(torch.tensor([[dec.bos]], device=dev))
    logp = logits[:, -1].log_softmax(-1)
    acoustic, lmsc = torch.zeros(1, device=dev, dtype=torch.float64), torch.zeros(1, device=dev)
    silence = np.zeros(PR.KEYS, bool)
    frames: list[np.ndarray] = [silence]  # the previous frame of each hypothesis
    back: list[tuple[list[int], list[np.ndarray], list[list[int]]]] = []  # per step: parent, frame, tokens
    tokens_of: dict[tuple[bytes, bytes], list[int]] = {}
    for t in range(len(odds)):
        proposals = best_frames(odds[t], candidates)
        rows, chosen, seqs, ac = [], [], [], []
        for b, prev in enumerate(frames):
            options = list(proposals)
            if not any((f == prev).all() for f, _ in options):  # holding the previous frame is always an option
                options.append((prev, float(odds[t][prev].sum())))
            for frame, score in options:
                key = (prev.tobytes(), frame.tobytes())
                if key not in tokens_of:
                    tokens_of[key] = frame_tokens(enc, prev, frame)
                rows.append(b)
                chosen.append(frame)
                seqs.append(tokens_of[key])
                ac.append(score)
        idx = torch.tensor(rows, device=dev)
        logp, state, gained = feed(model, logp[idx], select_state(state, idx), seqs)
        acoustic = acoustic[idx] + torch.tensor(ac, device=dev, dtype=torch.float64)
        lmsc = lmsc[idx] + gained
        keep = torch.topk(acoustic + lam * lmsc.double(), min(beam_size, len(rows))).indices
        kept = keep.tolist()
        logp, state, acoustic, lmsc = logp[keep], select_state(state, keep), acoustic[keep], lmsc[keep]
        back.append(([rows[j] for j in kept], [chosen[j] for j in kept], [seqs[j] for j in kept]))
        frames = back[-1][1]
    final = lmsc + logp[:, dec.eos]
    total = acoustic + lam * final.double()
    best = int(total.argmax())
    roll, chunks, row = [], [], best
    for parents, chosen, seqs in reversed(back):  # follow the best hypothesis back to the first frame
        roll.append(chosen[row])
        chunks.append(seqs[row])
        row = parents[row]
    ids = [tok for chunk in reversed(chunks) for tok in chunk]
    return FrameTranscription(np.array(roll[::-1], bool).reshape(-1, PR.KEYS), float(acoustic[best]),
                              float(final[best]), float(total[best]), ids)
