"""Logits processors: small composable objects ``(ids, logits) -> logits``.

``ids`` is the history ``(batch, time)`` (BOS and any primer included) and
``logits`` the next-token scores ``(batch, vocab)``. A processor returns new
logits and never modifies its input. Banned tokens get ``-inf``. A processor
holding tables (:class:`Tables`) moves them to the device of the logits.
"""

from __future__ import annotations

import torch


class Tables:
    """Base of the processors that hold tensors built once (on the CPU): ``follow(device)`` moves every tensor
    attribute to ``device``, once per change of device; a carried state (``reset()``) is then rebuilt there."""

    def follow(self, device: torch.device) -> None:
        if getattr(self, "_device", None) == device:
            return
        for name, value in list(vars(self).items()):
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        self._device = device
        if hasattr(self, "reset"):
            self.reset()


class Temperature:
    """Divide logits by ``t`` (> 0): below 1 sharpens, above 1 flattens."""

    def __init__(self, t: float):
        if not t > 0:
            raise ValueError(f"temperature must be > 0, got {t} (use greedy decoding for argmax)")
        self.t = t

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.t


def _spare(drop: torch.Tensor, keep: tuple[int, ...]) -> torch.Tensor:
    """``drop`` (batch, vocab) with the columns ``keep`` never dropped."""
    if not keep:
        return drop
    drop = drop.clone()
    drop[:, list(keep)] = False
    return drop


class TopK:
    """Keep the ``k`` highest logits per row (ties at the k-th value are kept), and the ids in ``keep``.

    ``keep`` is for the end token: truncation is meant to cut a distribution's unreliable tail of notes, but the
    end token's probability is a length decision spread over many possible ending points, low at each; cut
    there, it would make every piece run on to the token budget.
    """

    def __init__(self, k: int, keep: tuple[int, ...] = ()):
        if k < 1:
            raise ValueError(f"top-k needs k >= 1, got {k}")
        self.k, self.keep = k, tuple(keep)

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        k = min(self.k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        return logits.masked_fill(_spare(logits < kth, self.keep), float("-inf"))


class TopP:
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches ``p``, and the ids in ``keep``
    (the end token; see :class:`TopK`)."""

    def __init__(self, p: float, keep: tuple[int, ...] = ()):
        if not 0 < p <= 1:
            raise ValueError(f"top-p needs 0 < p <= 1, got {p}")
        self.p, self.keep = p, tuple(keep)

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        drop_sorted = (probs.cumsum(-1) - probs) >= self.p  # mass before this token already reaches p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        return logits.masked_fill(_spare(drop, self.keep), float("-inf"))


class MinNotes(Tables):
    """Forbid ``eos_id`` until the history holds at least ``n`` notes.

    ``notes_per_id[v]`` is how many notes token ``v`` encodes (1 for a Pitch
    token, more for a BPE merge containing several).
    """

    def __init__(self, n: int, eos_id: int, notes_per_id: torch.Tensor):
        self.n, self.eos_id, self.notes_per_id = n, eos_id, notes_per_id

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        self.follow(logits.device)
        notes = self.notes_per_id[ids].sum(-1)
        out = logits.clone()
        out[notes < self.n, self.eos_id] = float("-inf")
        return out


def apply(processors, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    for proc in processors:
        logits = proc(ids, logits)
    return logits


class RepetitionPenalty:
    """CTRL's repetition penalty over the last ``window`` tokens of the history.

    Every id seen in ``ids[:, -window:]`` has its logit divided by ``penalty``
    when positive and multiplied by it when negative (``penalty > 1``
    discourages repeats, 1 does nothing). Works on raw ids, so BPE merges are
    penalised as units.
    """

    def __init__(self, penalty: float, window: int = 64):
        if not penalty > 0:
            raise ValueError(f"repetition penalty must be > 0 (1 = off), got {penalty}")
        if window < 1:
            raise ValueError(f"repetition window must be >= 1 token, got {window}")
        self.penalty, self.window = float(penalty), int(window)

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        recent = ids[:, -self.window :]
        seen = logits.gather(1, recent)
        seen = torch.where(seen > 0, seen / self.penalty, seen * self.penalty)
        return logits.scatter(1, recent, seen)


def sampling_shape(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                   repetition_penalty: float = 1.0, sampling: bool = True, keep: tuple[int, ...] = ()) -> list:
    """The processors that shape a distribution for sampling, after any constraint: the repetition penalty,
    then (when ``sampling``; greedy and beam search leave them out) temperature, top-k and top-p, which never
    cut the ids in ``keep`` (the end token)."""
    if not 0 < top_p <= 1:
        raise ValueError(f"top-p must be in (0, 1] (1: off), got {top_p}")
    if top_k < 0:
        raise ValueError(f"top-k must be >= 0 (0: off), got {top_k}")
    procs: list = []
    if repetition_penalty != 1.0:
        procs.append(RepetitionPenalty(repetition_penalty))
    if sampling:
        procs.append(Temperature(temperature))
        if top_k:
            procs.append(TopK(top_k, keep))
        if top_p < 1.0:
            procs.append(TopP(top_p, keep))
    return procs
