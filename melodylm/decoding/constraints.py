"""Musical constraints: logits processors built from a tokenizer's vocabulary.

Same contract as :mod:`melodylm.decoding.processors` (``(ids, logits) ->
logits``, input never modified, banned ids at ``-inf``). Built once from the
vocabulary; each call is a handful of vectorised ops on ``(batch, vocab)``
tensors. "Note start" tokens are the ones that begin a note: ``Pitch`` (REMI,
TSD), ``NoteOn`` (MIDILike) and their drum twins ``PitchDrum`` / ``DrumOn``,
which miditok decodes as ordinary notes when the tokenizer has no programs.
"""

from __future__ import annotations

import torch

from melodylm.data.tokenizer import base_tokens
from melodylm.decoding.processors import Tables

NOTE_STARTS = ("Pitch", "PitchDrum", "NoteOn", "DrumOn")
NOTE_ENDS = ("NoteOff", "DrumOff")
PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_NEG = -(2.0**40)  # "minus infinity" for tick arithmetic (exact in float64)


def _note_start_pitch(token: str) -> int | None:
    kind, _, value = token.partition("_")
    return int(value) if kind in NOTE_STARTS else None


class PitchFilter(Tables):
    """Ban every id that would start a note whose MIDI pitch is not in ``allowed``.

    Note ends (``NoteOff``) are never banned, so notes already sounding can
    always be closed. A BPE id is banned when any note start among its base
    tokens is. Raises ``ValueError`` when no note start of the vocabulary
    survives (sampling would otherwise hit a row of -inf). Two filters combine
    with ``&``, which checks the intersection the same way.
    """

    def __init__(self, tokenizer, allowed, description: str = "the pitch filter"):
        self.tokenizer, self.allowed, self.description = tokenizer, frozenset(int(p) for p in allowed), description
        expanded = base_tokens(tokenizer)
        vocab_pitches = sorted({p for toks in expanded for t in toks if (p := _note_start_pitch(t)) is not None})
        if not vocab_pitches:
            raise ValueError(f"{description}: the tokenizer has no note tokens (Pitch / NoteOn)")
        if not self.allowed.intersection(vocab_pitches):
            raise ValueError(
                f"{description} leaves no pitch to play: the vocabulary's notes span MIDI "
                f"{vocab_pitches[0]}..{vocab_pitches[-1]}"
            )
        self.banned = torch.tensor(
            [any((p := _note_start_pitch(t)) is not None and p not in self.allowed for t in toks) for toks in expanded]
        )

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        self.follow(logits.device)
        return logits.masked_fill(self.banned, float("-inf"))

    def __and__(self, other: PitchFilter) -> PitchFilter:
        if not isinstance(other, PitchFilter):
            return NotImplemented
        return PitchFilter(self.tokenizer, self.allowed & other.allowed, f"{self.description} and {other.description}")


class PitchRange(PitchFilter):
    """Only notes with MIDI pitch in ``[low, high)`` may start."""

    def __init__(self, tokenizer, low: int, high: int):
        if not 0 <= low < high <= 128:
            raise ValueError(f"pitch range needs 0 <= low < high <= 128, got [{low}, {high})")
        super().__init__(tokenizer, range(low, high), f"pitch range [{low}, {high})")
        self.low, self.high = low, high


class AllowedPitchClasses(PitchFilter):
    """Only notes whose pitch class (``pitch % 12``, 0 = C) is in ``pitch_classes`` may start.

    ``pitch_classes`` is an iterable of ints in 0..11 or a scale name such as
    ``"D major"`` (see :func:`scale_pitch_classes`).
    """

    def __init__(self, tokenizer, pitch_classes):
        if isinstance(pitch_classes, str):
            pitch_classes = scale_pitch_classes(pitch_classes)
        pcs = frozenset(int(pc) for pc in pitch_classes)
        if not pcs:
            raise ValueError("allowed pitch classes: the set is empty")
        if not pcs <= set(range(12)):
            raise ValueError(f"pitch classes must be in 0..11 (0 = C), got {sorted(pcs)}")
        names = " ".join(PITCH_CLASS_NAMES[pc] for pc in sorted(pcs))
        super().__init__(tokenizer, (p for p in range(128) if p % 12 in pcs), f"pitch classes {{{names}}}")
        self.pitch_classes = pcs


SCALES = {  # semitones above the tonic
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic minor": (0, 2, 3, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "major pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "chromatic": tuple(range(12)),
}
SCALE_ALIASES = {"ionian": "major", "aeolian": "minor", "natural minor": "minor"}
_TONICS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def scale_pitch_classes(name: str) -> frozenset[int]:
    """The pitch classes (0 = C) of a scale named like ``"D major"``, ``"F# minor"``, ``"Bb dorian"``.

    Tonic: a letter A-G with optional ``#`` or ``b`` (any case). Modes: the
    keys of ``SCALES`` plus ionian / aeolian / natural minor. Raises
    ``ValueError`` on anything else.
    """
    tonic, _, mode = name.strip().partition(" ")
    mode = " ".join(mode.lower().split())
    mode = SCALE_ALIASES.get(mode, mode)
    letter, accidentals = tonic[:1].upper(), tonic[1:].replace("♯", "#").replace("♭", "b")
    if letter not in _TONICS or accidentals not in ("", "#", "b") or mode not in SCALES:
        raise ValueError(
            f"unknown key {name!r}: expected '<tonic> <mode>' with tonic A-G (optionally # or b) "
            f"and mode one of {', '.join([*SCALES, *SCALE_ALIASES])}"
        )
    root = (_TONICS[letter] + {"": 0, "#": 1, "b": -1}[accidentals]) % 12
    return frozenset((root + step) % 12 for step in SCALES[mode])


class _Stateful(Tables):
    """Base of processors that carry a per-row state from one decoding step to the next.

    The state (a dict of batch-first tensors) describes the history it was
    last called with. The next call normally brings that history plus one
    token: the state advances by ``ids[:, -1]`` alone. The decoder's growing
    history buffer is recognised by its storage (no comparison at all);
    another tensor is compared with the remembered history, and when rows
    were reordered or duplicated (beam search) the state rows follow them.
    Anything else (a new run, a shorter history) rebuilds the state by
    replaying the whole history, once. ``reset()`` forgets everything.

    Subclasses define ``_initial(batch) -> dict`` and ``_advance(state, tokens)``
    (in place; ``tokens`` is ``(batch,)``). The tables and the state follow the
    device of the history (:class:`~melodylm.decoding.processors.Tables`).
    """

    def reset(self) -> None:
        self._seen: torch.Tensor | None = None  # the history the state describes, (batch, time)
        self._state: dict[str, torch.Tensor] = {}
        self._start = 0  # history length at the start of the run (BOS + primer)

    def _sync(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        self.follow(ids.device)
        seen = getattr(self, "_seen", None)
        if seen is None:
            return self._rebuild(ids)
        (b, n), (b0, n0) = ids.shape, seen.shape
        if n == n0 + 1 and b == b0 and _grows(ids, seen):
            self._advance(self._state, ids[:, -1])
        elif n == n0 and b == b0 and (_grows(ids, seen) or torch.equal(ids, seen)):
            pass
        elif n > n0 and b == b0 and torch.equal(ids[:, :n0], seen):
            for t in range(n0, n):
                self._advance(self._state, ids[:, t])
        elif n == n0 + 1 and (rows := _matching_rows(ids[:, :-1], seen)) is not None:
            self._state = {k: v[rows] for k, v in self._state.items()}
            self._advance(self._state, ids[:, -1])
        else:
            return self._rebuild(ids)
        self._seen = ids
        return self._state

    def _rebuild(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        self._state = self._initial(ids.size(0))
        for t in range(ids.size(1)):
            self._advance(self._state, ids[:, t])
        self._seen, self._start = ids, ids.size(1)
        return self._state

    def _initial(self, batch: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _advance(self, state: dict[str, torch.Tensor], tokens: torch.Tensor) -> None:
        raise NotImplementedError


def _grows(ids: torch.Tensor, seen: torch.Tensor) -> bool:
    """True when ``ids`` is ``seen`` with more columns of the same buffer (the decoder's history)."""
    return ids.data_ptr() == seen.data_ptr() and ids.stride() == seen.stride()


def _matching_rows(prefix: torch.Tensor, seen: torch.Tensor) -> torch.Tensor | None:
    """For every row of ``prefix``, a row of ``seen`` with the same history, or None."""
    if prefix.size(1) != seen.size(1) or prefix.numel() * seen.size(0) > 20_000_000:
        return None
    same = (prefix.unsqueeze(1) == seen.unsqueeze(0)).all(-1)  # (new rows, old rows)
    if not bool(same.any(1).all()):
        return None
    return same.int().argmax(1)


def _vocabulary(tokenizer, who: str) -> tuple[str, list[str], list[str]]:
    """The tokenizer kind and every id's token type and value; refuses BPE and unknown kinds."""
    kind = type(tokenizer).__name__
    if kind not in ("REMI", "TSD", "MIDILike"):
        raise ValueError(f"{who} supports REMI, TSD and MIDILike tokenizers, not {kind}")
    if tokenizer.is_trained:
        raise ValueError(
            f"{who} needs a tokenizer without BPE: its state follows base tokens one by one "
            "(build the model on an untrained tokenizer, or sample without this constraint)"
        )
    names = [""] * len(tokenizer)
    for token, vid in tokenizer.vocab.items():
        names[vid] = token
    types, values = zip(*(name.partition("_")[::2] for name in names))
    return kind, list(types), list(values)


class Monophonic(_Stateful):
    """At most one note at a time: no note may start before the previous one has ended.

    Guaranteed on the notes miditok decodes from the ids (onsets and
    durations in ticks, computed as its decoder does): every note starts at
    or after the end of every earlier note, so no two notes overlap or share
    an onset.

    - REMI: a ``Pitch`` is banned while the current time (bar start +
      position) is before the end of the last note, and so is every
      ``Position`` that points before that end; ``Bar`` never is, so a long
      note is followed by bars until it is over. Time signatures change bar
      lengths and ticks per position as in miditok.
    - TSD: a ``Pitch`` is banned until enough ``TimeShift`` has passed.
    - MIDILike: a ``NoteOn`` is banned while any note is sounding (started
      and not yet closed by its ``NoteOff``).

    A ``Pitch`` still waiting for its ``Duration`` counts as sounding; drum
    twins (``PitchDrum``, ``DrumOn``) count as notes. Only note starts and
    REMI positions are ever banned, so a grammar-valid continuation always
    remains. Needs a tokenizer without BPE.

    REMI / TSD keep one float64 row of times in ticks per sequence
    (``TIME``); each token maps it to the elementwise max of two affine maps
    (``W[v] @ state + C[v]``, two branches), built once from the vocabulary,
    so a step is one small batched product whatever the token.
    """

    TIME = ("one", "bar", "cur", "end", "bar_len", "unit")  # ticks; "one" is the constant 1

    def __init__(self, tokenizer):
        kind, types, values = _vocabulary(tokenizer, "Monophonic")
        self.kind = kind
        self.starts = torch.tensor([t in NOTE_STARTS for t in types])
        if kind == "MIDILike":
            self.col = torch.tensor([int(v) if t in NOTE_STARTS + NOTE_ENDS else 128 for t, v in zip(types, values)])
            self.delta = torch.tensor([1 if t in NOTE_STARTS else -1 if t in NOTE_ENDS else 0 for t in types])
        else:
            self._build_time_maps(tokenizer, types, values)
        self.reset()

    def _build_time_maps(self, tokenizer, types: list[str], values: list[str]) -> None:
        ix = {name: i for i, name in enumerate(self.TIME)}
        one, bar, cur, end, bar_len, unit = (ix[n] for n in self.TIME)
        n, per_beat = len(self.TIME), tokenizer.config.max_num_pos_per_beat
        tpb0 = tokenizer.time_division  # ticks per beat until a TimeSig says otherwise (4/4)
        w = torch.eye(n).repeat(len(types), 2, 1, 1)  # (vocab, branch, n, n): branch 0 keeps every variable
        c = torch.zeros(len(types), 2, n)
        w[:, 1], c[:, 1] = 0.0, _NEG  # branch 1 never wins unless a rule below sets it

        def units(value: str) -> int:  # a Duration / TimeShift in position units (exact on miditok's grid)
            ticks = tokenizer._tpb_tokens_to_ticks[tpb0][value]
            if (ticks * per_beat) % tpb0:
                raise ValueError(f"Monophonic: {value} is not on the tick grid")
            return ticks * per_beat // tpb0

        for v, (t, value) in enumerate(zip(types, values)):
            if t == "Bar":  # bar' = max(bar + bar_len, 0): the first Bar opens bar 0 at tick 0
                w[v, 0, bar, bar_len] = w[v, 0, cur, bar_len] = 1.0
                w[v, 0, cur, cur] = 0.0
                w[v, 0, cur, bar] = 1.0
                c[v, 1, bar] = c[v, 1, cur] = 0.0
            elif t == "Position":  # cur' = max(bar, 0) + p * unit
                p = int(value)
                w[v, 0, cur, cur], w[v, 0, cur, bar], w[v, 0, cur, unit] = 0.0, 1.0, p
                w[v, 1, cur, unit], c[v, 1, cur] = p, 0.0
                c[v, 1, bar] = 0.0
            elif t == "TimeSig":
                num, den = tokenizer._parse_token_time_signature(value)
                tpb = tokenizer._tpb_per_ts[den]
                w[v, 0, bar_len, bar_len] = w[v, 0, unit, unit] = 0.0
                c[v, 0, bar_len], c[v, 0, unit] = num * tpb, tpb / per_beat
            elif t == "TimeShift":
                w[v, 0, cur, unit] = units(value)
            elif t in NOTE_STARTS:  # sounding until its Duration arrives
                w[v, 1, end, cur], c[v, 1, end] = 1.0, 1.0
            elif t == "Duration":
                w[v, 1, end, cur], w[v, 1, end, unit], c[v, 1, end] = 1.0, units(value), 0.0
        self.w = w.to(torch.float64).flatten(1, 2)  # (vocab, 2n, n)
        self.c = c.to(torch.float64).flatten(1, 2).unsqueeze(-1)  # (vocab, 2n, 1)
        self.position = torch.tensor(  # REMI Position tokens: their value; other tokens are never too early
            [float(value) if t == "Position" else float("inf") for t, value in zip(types, values)], dtype=torch.float64)
        self.cols = (bar, cur, end, unit)
        self.time0 = torch.zeros(n, dtype=torch.float64)
        self.time0[one], self.time0[bar], self.time0[bar_len], self.time0[unit] = 1.0, _NEG, 4 * tpb0, tpb0 / per_beat

    def _initial(self, batch: int) -> dict[str, torch.Tensor]:
        if self.kind == "MIDILike":
            return {"count": torch.zeros(batch, 129, dtype=torch.long, device=self.col.device)}  # per pitch
        return {"time": self.time0.repeat(batch, 1)}

    def _advance(self, s: dict[str, torch.Tensor], tok: torch.Tensor) -> None:
        if self.kind == "MIDILike":
            s["count"].scatter_add_(1, self.col[tok].unsqueeze(1), self.delta[tok].unsqueeze(1)).clamp_(min=0)
            return
        both = torch.baddbmm(self.c[tok], self.w[tok], s["time"].unsqueeze(-1))  # (batch, 2n, 1)
        s["time"] = both.view(tok.size(0), 2, -1).amax(1)

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        s = self._sync(ids)
        if self.kind == "MIDILike":
            busy = s["count"][:, :128].any(1, keepdim=True)
            return logits.masked_fill(busy & self.starts, float("-inf"))
        bar, cur, end, unit = (s["time"][:, i : i + 1] for i in self.cols)  # (batch, 1) views
        too_early = (cur < end) & self.starts
        if self.kind == "REMI":  # Position p starts at max(bar, 0) + p * unit: too early if p < this
            too_early |= self.position < (end - bar.clamp(min=0)) / unit
        return logits.masked_fill(too_early, float("-inf"))
