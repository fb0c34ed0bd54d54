"""Musical time while decoding: how many bars and quarter-note beats each row has reached.

Built from the tokenizer's vocabulary once; ``update(tokens)`` advances every
row of the batch by one token id with a handful of vectorised ops (a BPE merge
is replayed base token by base token). Used by the decoder to stop after a
number of bars or seconds. REMI counts its ``Bar`` tokens and follows
``TimeSig`` changes; TSD and MIDILike add up ``TimeShift`` tokens and count
4/4 bars, as miditok decodes them. Seconds assume the tokenizer's default
tempo (miditok's 120 bpm; these vocabularies carry no tempo tokens).
"""

from __future__ import annotations

import torch

from melodylm.data.tokenizer import base_tokens


def _beats(value: str) -> float:
    """miditok's ``beats.units.resolution`` time value -> quarter-note beats."""
    b, u, r = (int(x) for x in value.split("."))
    return b + u / r


class Timeline:
    """Bars and beats reached by each of ``batch_size`` rows; its tables and state are on ``device``."""

    STATE = ("bars", "bar_start", "cur_bar_len", "cur_unit", "pos", "shifted")

    def __init__(self, tokenizer, batch_size: int, device: torch.device | str = "cpu"):
        expanded = base_tokens(tokenizer)
        names = sorted({t for toks in expanded for t in toks})
        index = {t: i for i, t in enumerate(names)}
        width = max(len(toks) for toks in expanded)
        n = len(names)
        is_bar, position, shift = [False] * n, [-1.0] * n, [0.0] * n  # position: units within the bar
        bar_len, unit = [0.0] * n, [0.0] * n  # quarter beats of a TimeSig (0 for other tokens), per position unit
        per_beat = tokenizer.config.max_num_pos_per_beat
        for name, i in index.items():
            kind, _, value = name.partition("_")
            if kind == "Bar":
                is_bar[i] = True
            elif kind == "Position":
                position[i] = float(value)
            elif kind == "TimeShift":
                shift[i] = _beats(value)  # quarter beats
            elif kind == "TimeSig":
                num, den = (int(x) for x in value.split("/"))
                bar_len[i], unit[i] = num * 4 / den, 4 / den / per_beat
        expand = [[index[t] for t in toks] + [-1] * (width - len(toks)) for toks in expanded]
        self.expand = torch.tensor(expand, dtype=torch.long, device=device)  # (vocab, width): base tokens, -1 after
        self.is_bar = torch.tensor(is_bar, device=device)
        self.position, self.shift, self.bar_len, self.unit = (
            torch.tensor(v, device=device) for v in (position, shift, bar_len, unit))
        self.counts_bars = any(is_bar)
        self.tempo = float(getattr(tokenizer, "default_tempo", 120.0))
        self.bars = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.bar_start = torch.zeros(batch_size, device=device)
        self.cur_bar_len = torch.full((batch_size,), 4.0, device=device)
        self.cur_unit = torch.full((batch_size,), 1.0 / per_beat, device=device)
        self.pos = torch.zeros(batch_size, device=device)
        self.shifted = torch.zeros(batch_size, device=device)

    def update(self, tokens: torch.Tensor) -> None:
        """Advance every row by one token id; ``tokens`` is ``(batch,)``."""
        for j in range(self.expand.size(1)):
            b = self.expand[tokens, j]
            valid = b >= 0
            b = b.clamp(min=0)
            bar = self.is_bar[b] & valid
            self.bar_start = torch.where(bar & (self.bars > 0), self.bar_start + self.cur_bar_len, self.bar_start)
            self.bars = self.bars + bar.long()
            self.pos = torch.where(bar, torch.zeros_like(self.pos), self.pos)
            ts = (self.bar_len[b] > 0) & valid
            self.cur_bar_len = torch.where(ts, self.bar_len[b], self.cur_bar_len)
            self.cur_unit = torch.where(ts, self.unit[b], self.cur_unit)
            at = (self.position[b] >= 0) & valid
            self.pos = torch.where(at, self.position[b] * self.cur_unit, self.pos)
            self.shifted = self.shifted + torch.where(valid, self.shift[b], torch.zeros_like(self.shifted))

    def select(self, rows: torch.Tensor) -> "Timeline":
        """A copy holding only ``rows`` (in that order), for beam reordering."""
        new = object.__new__(Timeline)
        new.__dict__.update(self.__dict__)
        for name in self.STATE:
            setattr(new, name, getattr(self, name)[rows].clone())
        return new

    def beats(self) -> torch.Tensor:
        """Quarter-note beats reached by each row, ``(batch,)``."""
        return self.bar_start + self.pos + self.shifted

    def bar_count(self) -> torch.Tensor:
        """Bars started by each row (REMI: Bar tokens seen; else 4/4 bars reached)."""
        if self.counts_bars:
            return self.bars
        return torch.floor(self.shifted / 4.0).long() + 1
