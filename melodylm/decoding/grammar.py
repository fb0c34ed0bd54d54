"""The grammar mask: only token ids that keep the sequence well formed may be sampled.

Derived from the tokenizer itself: miditok's token-type graph
(``tokenizer.tokens_types_graph``) and its vocabulary. Every rule that
miditok's ``tokens_errors`` checks for REMI, TSD and MIDILike is mirrored, so
a sequence sampled under the mask scores zero errors:

- type successions follow the graph (REMI: ``Bar -> TimeSig -> Position ->
  Pitch -> Duration``; TSD: ``Pitch -> Duration``, ``TimeShift``; MIDILike:
  ``NoteOff`` only after a ``TimeShift`` or another ``NoteOff``);
- REMI: within a bar ``Position`` strictly increases (never back or in place);
- REMI / TSD: a pitch is not repeated at the same onset (miditok only counts
  this with ``remove_duplicated_notes``; the mask always forbids it);
- MIDILike: a ``NoteOff`` closes a sounding note of that pitch, and ``EOS``
  waits until every note is closed. Stricter than miditok: a pitch that is
  already sounding cannot start again (overlapping notes on one key).

Also, beyond ``tokens_errors``: the first token after BOS is one the encoder
emits first (REMI ``Bar``; TSD / MIDILike a note or ``TimeShift``); REMI
positions stay inside the bar of the current time signature; ``EOS`` never
cuts a note between its ``Pitch`` and its ``Duration``; PAD and BOS are never
allowed; after EOS (or PAD) only EOS is allowed, so no row is ever all -inf.

With ``max_tokens`` (the decoder's token budget, counted from the history of
the first call) the mask also plans the ending: a token is allowed only if
the sequence can still be completed in the tokens left, so a piece cut by the
budget ends complete as well (for MIDILike: every note closed). Without it,
only pieces that end on EOS are guaranteed complete for MIDILike. Stops on
bars or seconds cut wherever they fall and are not planned for.

How: the next token's ban is the OR of a row chosen by the last token
(``after[last]``, from the type graph) and a per-row ``blocked`` vector over
the vocabulary that every token updates the same way,
``blocked' = clamp(blocked * keep[token] + put[token], low, high)``:
a Pitch blocks itself (and its drum twin) until time moves; a Position
blocks itself and every earlier one until the next Bar; a TimeSig blocks the
positions past its bar; in MIDILike the blocked value of ``NoteOn_p`` counts
the sounding notes of pitch p and that of ``NoteOff_p`` is one minus it.
One table lookup and three elementwise ops per step, whatever the token.

Supported: REMI, TSD and MIDILike without BPE, programs, rests, chords,
tempos, pedals, pitch intervals or bar-end tokens (``ValueError`` otherwise,
with the reason). BPE is refused because the state follows base tokens one by
one; a merged id would need the whole automaton replayed inside it.
"""

from __future__ import annotations

import torch

from melodylm.decoding.constraints import NOTE_ENDS, NOTE_STARTS, _Stateful, _vocabulary

SPECIAL = {"PAD", "BOS", "EOS"}
SUPPORTED_TYPES = {*SPECIAL, *NOTE_STARTS, *NOTE_ENDS, "Velocity", "Duration", "TimeShift", "Bar", "Position",
                   "TimeSig"}
FIRST = {  # what miditok's encoders put first
    "REMI": {"Bar"},
    "TSD": {"Pitch", "PitchDrum", "TimeShift", "TimeSig"},
    "MIDILike": {"NoteOn", "DrumOn", "TimeShift", "TimeSig"},
}
NOTE_BODY = {"Velocity", "Duration"}  # tokens that complete a note after its Pitch
ONSET_RESETS = {"Bar", "Position", "TimeShift"}  # tokens after which time has moved (REMI, TSD)
MANY = 2**14  # "unbounded" for the int16 counters


class GrammarMask(_Stateful):
    """Ban every id that would make the sequence invalid for ``tokenizer``.

    ``max_tokens``: the number of tokens the decoder will sample after the
    history of the first call (``None``: unknown; then a MIDILike piece cut
    by the budget may leave notes open). Make a fresh mask per run, or call
    ``reset()``.
    """

    def __init__(self, tokenizer, max_tokens: int | None = None):
        kind, types, values = _vocabulary(tokenizer, "the grammar mask")
        unsupported = sorted(set(types) - SUPPORTED_TYPES)
        extras = tokenizer.config.additional_params
        if unsupported:
            raise ValueError(f"the grammar mask does not support {', '.join(unsupported)} tokens")
        if extras.get("use_bar_end_tokens") or extras.get("max_duration") is not None:
            raise ValueError("the grammar mask does not support bar-end tokens or a MIDILike max_duration")
        if not {"BOS", "EOS"} <= set(types):
            raise ValueError("the grammar mask needs BOS and EOS special tokens")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.kind, self.max_tokens = kind, max_tokens
        self.eos = types.index("EOS")
        vocab_size = len(types)

        # --- what may follow what: the type graph ---------------------------------------
        names = sorted(set(types))
        graph = {a: {s.partition("_")[0] for s in tokenizer.tokens_types_graph.get(a, ())} for a in names}
        follows = {a: graph[a] & set(names) - SPECIAL for a in names}
        mid_note = {a for a in names if follows[a] and follows[a] <= NOTE_BODY}
        end_ok = {a for a in names if "EOS" in graph[a] and a not in mid_note and a not in ("EOS", "PAD")}
        follows["BOS"] &= FIRST[kind]
        follows["EOS"] = follows["PAD"] = set()
        for a in names:
            if a not in ("EOS", "PAD") and not follows[a]:
                raise ValueError(f"the grammar mask found no token allowed after {a} in {kind}'s type graph")
        by_type = {a: torch.tensor([t not in follows[a] for t in types]) for a in names}
        for a in names:
            by_type[a][self.eos] = not (a in end_ok or a in ("EOS", "PAD"))  # after EOS / PAD: EOS again
        self.after = torch.stack([by_type[t] for t in types])  # (vocab, vocab): banned right after token v

        # --- planning the ending: reach[k] holds the types after which a complete ending takes
        # exactly k more tokens (EOS not counted: another processor may ban it) -------------
        reach = _reach(names, follows, end_ok)
        self.unfinishable = torch.tensor([[t not in r and t != "EOS" for t in types] for r in reach])
        # MIDILike: closing the sounding notes takes one NoteOff each, plus a TimeShift after a NoteOn
        self.note_cost = torch.tensor([2 if t in NOTE_STARTS else -1 if t in NOTE_ENDS else 0 for t in types])

        # --- the per-row state: blocked' = clamp(blocked * keep[v] + put[v], low, high) ------
        ids_of: dict[tuple[str, int], list[int]] = {}
        for v, (t, value) in enumerate(zip(types, values)):
            if t in NOTE_STARTS + NOTE_ENDS + ("Position",):
                ids_of.setdefault((_role(t), int(value)), []).append(v)
        keep = torch.ones(vocab_size, vocab_size, dtype=torch.int16)
        put = torch.zeros(vocab_size, vocab_size, dtype=torch.int16)
        self.low = torch.zeros(vocab_size, dtype=torch.int16)
        self.high = torch.ones(vocab_size, dtype=torch.int16)
        self.blocked0 = torch.zeros(vocab_size, dtype=torch.int16)
        if kind == "MIDILike":
            on = [v for v, t in enumerate(types) if t in NOTE_STARTS]
            off = [v for v, t in enumerate(types) if t in NOTE_ENDS]
            self.high[on], self.low[off] = MANY, -MANY
            self.blocked0[off] = 1  # nothing sounds yet: every NoteOff is blocked
            for v, (t, value) in enumerate(zip(types, values)):
                if t in NOTE_STARTS + NOTE_ENDS:
                    sign = 1 if t in NOTE_STARTS else -1
                    put[v, ids_of.get(("on", int(value)), [])] = sign
                    put[v, ids_of.get(("off", int(value)), [])] = -sign
            # one NoteOn column per pitch holds its count of sounding notes
            self.count_runs = _runs([int(values[v]) if types[v] == "NoteOn" else None for v in range(vocab_size)])
        else:
            pitch_cols = [v for v, t in enumerate(types) if t in NOTE_STARTS]
            positions = [v for v, t in enumerate(types) if t == "Position"]
            per_bar = _positions_per_bar(tokenizer, types, values)
            for v, (t, value) in enumerate(zip(types, values)):
                if t in ONSET_RESETS:
                    keep[v, pitch_cols] = 0
                if t in NOTE_STARTS:
                    put[v, ids_of[("on", int(value))]] = 1
                if t in ("Bar", "TimeSig"):  # a new bar: every position inside it is free again
                    keep[v, positions] = 0
                    put[v, [w for w in positions if int(values[w]) >= per_bar[v]]] = 1
                elif t == "Position":
                    put[v, [w for w in positions if int(values[w]) <= int(value)]] = 1
            self.blocked0[[w for w in positions if int(values[w]) >= per_bar[-1]]] = 1  # 4/4 before any Bar
        self.keep = None if bool((keep == 1).all()) else keep
        self.put = put
        self.reset()

    # --- state -------------------------------------------------------------------

    def _initial(self, batch: int) -> dict[str, torch.Tensor]:
        return {"blocked": self.blocked0.repeat(batch, 1)}

    def _advance(self, s: dict[str, torch.Tensor], tok: torch.Tensor) -> None:
        blocked = s["blocked"] if self.keep is None else s["blocked"] * self.keep.index_select(0, tok)
        s["blocked"] = torch.clamp(blocked + self.put.index_select(0, tok), self.low, self.high)

    def _rebuild(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check_budget = True  # a new run (maybe with a primer): verify it can still finish in time
        return super()._rebuild(ids)

    # --- mask --------------------------------------------------------------------

    def banned(self, ids: torch.Tensor) -> torch.Tensor:
        """``(batch, vocab)`` bool: the ids the grammar forbids next after ``ids`` ``(batch, time)``."""
        blocked = self._sync(ids)["blocked"]
        banned = self.after.index_select(0, ids[:, -1]) | (blocked > 0)
        if self.kind == "MIDILike":
            playing = sum(blocked[:, lo:hi].sum(1, keepdim=True) for lo, hi, _ in self.count_runs)
            banned[:, self.eos] |= playing[:, 0] > 0  # EOS once every note is closed
        left = None if self.max_tokens is None else self.max_tokens - (ids.size(1) - self._start)
        if left is None or left < 1:  # no budget given, or sampling past it: nothing left to plan
            return banned
        # left: tokens still to sample, this one included
        planned = banned | self.unfinishable[min(left - 1, len(self.unfinishable) - 1)]
        if self.kind == "MIDILike":
            planned |= playing > left - 1 - self.note_cost
        if self._check_budget:  # only a primer can start a run that cannot finish in time
            stuck = planned.all(1, keepdim=True)
            if bool(stuck.any()):  # those rows keep the plain grammar (and the check stays on)
                return torch.where(stuck, banned, planned)
            self._check_budget = False
        return planned

    def allowed(self, ids: torch.Tensor) -> torch.Tensor:
        """``(batch, vocab)`` bool: the ids the grammar allows next (``~banned(ids)``)."""
        return ~self.banned(ids)

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(self.banned(ids), float("-inf"))


def _role(token_type: str) -> str:
    return "on" if token_type in NOTE_STARTS else "off" if token_type in NOTE_ENDS else "position"


def _positions_per_bar(tokenizer, types: list[str], values: list[str]) -> list[int]:
    """Per token: the positions in the bar a Bar (4/4 until its TimeSig) or TimeSig opens; last entry: 4/4."""
    per_beat = tokenizer.config.max_num_pos_per_beat
    four_four = 4 * per_beat
    out = [
        tokenizer._parse_token_time_signature(v)[0] * per_beat if t == "TimeSig" else four_four
        for t, v in zip(types, values)
    ]
    return [*out, four_four]


def _reach(names: list[str], follows: dict[str, set[str]], complete: set[str]) -> list[set[str]]:
    """``reach[k]``: types from which a complete state is reachable in exactly ``k`` tokens.

    Computed until the sets stop changing; the last entry holds for every larger ``k``.
    """
    reach = [set(complete)]
    while len(reach) < 2 or reach[-1] != reach[-2]:
        if len(reach) > 4 * len(names) + 8:
            raise ValueError("the grammar mask cannot plan endings: the type graph is periodic")
        reach.append({a for a in names if follows[a] & reach[-1]})
    return reach[:-1]


def _runs(values: list[int | None]) -> list[tuple[int, int, int]]:
    """Maximal stretches of consecutive ids with consecutive values: ``(first id, end id, first value)``."""
    runs: list[tuple[int, int, int]] = []
    for vid, value in enumerate(values):
        if value is None:
            continue
        if runs and runs[-1][1] == vid and runs[-1][2] + vid - runs[-1][0] == value:
            runs[-1] = (runs[-1][0], vid + 1, runs[-1][2])
        else:
            runs.append((vid, vid + 1, value))
    return runs
