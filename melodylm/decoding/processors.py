"""Logits processors: small composable objects ``(ids, logits) -> logits``.

``ids`` is the history ``(batch, time)`` (BOS and any primer included) and
``logits`` the next-token scores ``(batch, vocab)``. A processor returns new
logits and never modifies its input. Banned tokens get ``-inf``.
"""

from __future__ import annotations

import torch


class Temperature:
    """Divide logits by ``t`` (> 0): below 1 sharpens, above 1 flattens."""

    def __init__(self, t: float):
        if not t > 0:
            raise ValueError(f"temperature must be > 0, got {t} (use greedy decoding for argmax)")
        self.t = t

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.t


class TopK:
    """Keep the ``k`` highest logits per row (ties at the k-th value are kept)."""

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"top-k needs k >= 1, got {k}")
        self.k = k

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        k = min(self.k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, float("-inf"))


class TopP:
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches ``p``."""

    def __init__(self, p: float):
        if not 0 < p <= 1:
            raise ValueError(f"top-p needs 0 < p <= 1, got {p}")
        self.p = p

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= self.p  # mass before this token already reaches p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))


class MinNotes:
    """Forbid ``eos_id`` until the history holds at least ``n`` notes.

    ``notes_per_id[v]`` is how many notes token ``v`` encodes (1 for a Pitch
    token, more for a BPE merge containing several).
    """

    def __init__(self, n: int, eos_id: int, notes_per_id: torch.Tensor):
        self.n, self.eos_id, self.notes_per_id = n, eos_id, notes_per_id

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        notes = self.notes_per_id[ids].sum(-1)
        out = logits.clone()
        out[notes < self.n, self.eos_id] = float("-inf")
        return out


def apply(processors, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    for proc in processors:
        logits = proc(ids, logits)
    return logits
