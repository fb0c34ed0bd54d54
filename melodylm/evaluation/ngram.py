"""Interpolated Kneser-Ney n-gram models over small integer alphabets (pitch sequences).

The baseline of ``melodylm bench melody``'s bits per pitch: the pitch of each
note given the previous ``order - 1`` pitches, like IDyOM's ``cpitch``
viewpoint (Pearce 2005), smoothed with interpolated Kneser-Ney (Chen &
Goodman 1998, one absolute discount per order). With symbols
``0 .. vocab - 1`` and a history ``h`` of ``k - 1`` symbols (padded with a
start symbol, never predicted):

    P_k(w | h) = max(c_k(h w) - D_k, 0) / c_k(h .)  +  D_k * T_k(h) / c_k(h .) * P_{k-1}(w | h[1:])
    P_0(w)     = 1 / vocab

where ``c_k`` is the raw count at the model's own order and, at every lower
order, the continuation count (the number of distinct symbols seen just
before ``h w``); ``T_k(h)`` is the number of distinct ``w`` with
``c_k(h w) > 0``; a history with ``c_k(h .) = 0`` hands all its mass to
``P_{k-1}``. ``D_k = n1 / (n1 + 2 n2)`` from the order's counts of counts, floored at
0.05 so that no order keeps all its mass (an unseen symbol always gets some).
Every distribution sums to 1 over the alphabet, unseen symbols included.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

START = -1  # the padding symbol before a sequence's first element
MIN_DISCOUNT = 0.05


class KneserNey:
    """Counts for interpolated Kneser-Ney models of every order ``1 .. max_order`` over ``0 .. vocab - 1``.

    One fit serves all orders: :meth:`logprobs` and :meth:`distribution` take
    the order to use. Sequences are padded with ``max_order - 1`` start
    symbols, which gives every order the same contexts it would have with its
    own padding.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], vocab: int, max_order: int = 6):
        if max_order < 1:
            raise ValueError(f"max_order must be >= 1, got {max_order}")
        self.vocab, self.max_order = vocab, max_order
        # raw[k][h][w]: count of history h (k - 1 symbols) followed by w; left[k][(h, w)]: symbols seen before h w
        raw: list[dict[tuple, Counter]] = [defaultdict(Counter) for _ in range(max_order + 1)]
        left: list[dict[tuple, set]] = [defaultdict(set) for _ in range(max_order + 1)]
        for seq in sequences:
            seq = [int(s) for s in seq]
            if any(not 0 <= s < vocab for s in seq):
                raise ValueError(f"symbols must lie in 0 .. {vocab - 1}")
            padded = [START] * (max_order - 1) + seq
            for i in range(max_order - 1, len(padded)):
                w = padded[i]
                for k in range(1, max_order + 1):
                    h = tuple(padded[i - k + 1 : i])
                    raw[k][h][w] += 1
                    if k < max_order:
                        left[k][(h, w)].add(padded[i - k])
        self.raw = [self._table(r) for r in raw]
        cont: list[dict[tuple, Counter]] = [defaultdict(Counter) for _ in range(max_order + 1)]
        for k in range(1, max_order):
            for (h, w), before in left[k].items():
                cont[k][h][w] = len(before)
        self.cont = [self._table(c) for c in cont]
        self.raw_discount = [_discount(t) for t in self.raw]
        self.cont_discount = [_discount(t) for t in self.cont]

    @staticmethod
    def _table(counts: dict[tuple, Counter]) -> dict[tuple, tuple[np.ndarray, np.ndarray, int]]:
        """history -> (symbols, their counts, total): the Counter as arrays, for vector arithmetic."""
        out = {}
        for h, c in counts.items():
            symbols = np.fromiter(c.keys(), dtype=np.int64, count=len(c))
            values = np.fromiter(c.values(), dtype=np.float64, count=len(c))
            out[h] = (symbols, values, float(values.sum()))
        return out

    def distribution(self, history: Sequence[int], order: int) -> np.ndarray:
        """``P(. | history)`` over ``0 .. vocab - 1`` under the model of ``order`` (uses the last ``order - 1``
        symbols; a shorter history is padded with the start symbol)."""
        if not 1 <= order <= self.max_order:
            raise ValueError(f"order must be in 1 .. {self.max_order}, got {order}")
        hist = [START] * (order - 1) + [int(s) for s in history]
        hist = hist[len(hist) - (order - 1):] if order > 1 else []
        p = np.full(self.vocab, 1.0 / self.vocab)
        for k in range(1, order + 1):
            table, discounts = (self.raw, self.raw_discount) if k == order else (self.cont, self.cont_discount)
            entry = table[k].get(tuple(hist[len(hist) - (k - 1):]) if k > 1 else ())
            if entry is None:
                continue  # unseen history: P_k = P_{k-1}
            symbols, counts, total = entry
            d = discounts[k]
            lower = p
            p = lower * (d * len(symbols) / total)
            p[symbols] += np.maximum(counts - d, 0.0) / total
        return p

    def logprobs(self, seq: Sequence[int], order: int) -> np.ndarray:
        """Natural log of ``P(seq[i] | seq[:i])`` for every ``i``, shape ``(len(seq),)``."""
        seq = [int(s) for s in seq]
        return np.log([self.distribution(seq[:i], order)[w] for i, w in enumerate(seq)])

    def nll(self, sequences: Sequence[Sequence[int]], order: int) -> float:
        """Summed NLL (nats) of every symbol of ``sequences``."""
        return -float(sum(self.logprobs(s, order).sum() for s in sequences))


def _discount(table: dict[tuple, tuple[np.ndarray, np.ndarray, int]]) -> float:
    """``n1 / (n1 + 2 n2)`` over the counts of one order, at least :data:`MIN_DISCOUNT` (0.5 when it has neither
    ones nor twos)."""
    n1 = n2 = 0
    for _, counts, _ in table.values():
        n1 += int((counts == 1).sum())
        n2 += int((counts == 2).sum())
    return max(n1 / (n1 + 2 * n2), MIN_DISCOUNT) if n1 + n2 else 0.5


def short_term_probs(seq: Sequence[int], vocab: int, order: int) -> np.ndarray:
    """``P(seq[i] | seq[:i])`` for every ``i`` under Kneser-Ney of ``order`` fitted on ``seq[:i]`` alone: IDyOM's
    short-term model, which learns the piece it is predicting as it goes (the first symbol gets ``1 / vocab``)."""
    seq = [int(s) for s in seq]
    return np.array([KneserNey([seq[:i]], vocab, order).distribution(seq[:i], order)[w] for i, w in enumerate(seq)])
