"""Encoder-decoder with attention, and the beat tagger: plain torch modules (no Lightning).

:class:`Seq2Seq` is an LSTM encoder (optionally bi-directional) over the
condition tokens and an LSTM decoder over the target tokens with Luong
"general" attention (Luong et al. 2015, without input feeding): at every
target step the decoder output ``h_t`` scores every encoder state ``s_j`` as
``h_t . W s_j``, the softmax over the non-padded source positions gives
weights that sum to 1, and ``h_t + tanh(W_c [h_t; context_t])`` predicts the
next token. (Luong's plain ``tanh(W_c [h_t; context_t])`` bottleneck learned
far more slowly than an LM on the same targets: 3.0 against 2.1 nats after
50 steps on Nottingham; with the residual the decoder starts as a language
model and the attention only adds to it.) Without input feeding the decoder LSTM runs over a whole target in one
call for training and scoring, and one token at a time, with its carried
state, for generation: both give the same logits.

:class:`ConditionedLM` binds a Seq2Seq to one (or a batch of) encoded
conditions and exposes the language-model interface of
:class:`~melodylm.models.components.rnn_lm.RecurrentLM` (``forward(ids,
state)``, ``step(ids, state)``), so :class:`melodylm.decoding.core.Decoder`
samples, beam-searches and scores it unchanged. Its state,
:class:`DecoderState`, carries the encoder memory with the recurrent
``(h, c)`` and reorders both along the batch in ``select``.

:class:`BeatTagger` is the aligned baseline: a bi-directional LSTM over
per-beat melody features with one chord label per beat.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from melodylm.data.alignment import FEATURES, FRAMES_PER_BEAT, TokenClock, condition_frames, token_times
from melodylm.decoding.timeline import Timeline

ATTENTION_CHUNK = 256  # target steps per attention block: bounds memory at (batch, 256, source_time)


class Encoder(nn.Module):
    """Token ids ``(batch, src_time)`` -> states ``(batch, src_time, hidden_size)`` and a summary ``(batch, hidden)``."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int, num_layers: int, bidirectional: bool,
                 dropout: float):
        super().__init__()
        self.embedding = embedding
        self.rnn = nn.LSTM(embedding.embedding_dim, hidden_size, num_layers, batch_first=True,
                           bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.proj = nn.Linear(hidden_size * (2 if bidirectional else 1), hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = mask.sum(1).clamp_min(1).cpu()
        x = self.dropout(self.embedding(ids))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, _ = self.rnn(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=ids.size(1))
        states = self.proj(self.dropout(y))
        m = mask.unsqueeze(-1).to(states.dtype)
        summary = (states * m).sum(1) / m.sum(1).clamp_min(1.0)  # mean over the real source tokens
        return states, summary


class LuongAttention(nn.Module):
    """Luong "general" attention: ``score(h_t, s_j) = h_t . W s_j``, softmax over non-padded ``j``."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.w = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor):
        """queries ``(batch, tgt_time, hidden)``, keys ``(batch, src_time, hidden)``, mask ``(batch, src_time)``
        (True on real tokens) -> context ``(batch, tgt_time, hidden)`` and weights ``(batch, tgt_time, src_time)``."""
        scores = torch.bmm(queries, self.w(keys).transpose(1, 2))
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = scores.softmax(-1)
        return torch.bmm(weights, keys), weights


@dataclass
class Memory:
    """The encoded condition: ``states`` ``(batch, src_time, hidden)``, ``mask`` ``(batch, src_time)``, ``summary``."""

    states: torch.Tensor
    mask: torch.Tensor
    summary: torch.Tensor
    frames: torch.Tensor | None = None  # aligned models: (batch, frames, FEATURES), see melodylm.data.alignment
    times: torch.Tensor | None = None  # aligned memory: (batch, src_time) time after each token, inf on padding

    def select(self, idx: torch.Tensor) -> "Memory":
        frames = None if self.frames is None else self.frames[idx]
        times = None if self.times is None else self.times[idx]
        return Memory(self.states[idx], self.mask[idx], self.summary[idx], frames, times)


@dataclass
class DecoderState:
    """What the decoder carries between steps: LSTM ``(h, c)`` (each ``(layers, batch, hidden)``) and the memory.

    ``select(idx)`` reorders (or repeats) rows of both, the protocol
    :func:`melodylm.decoding.core.select_state` uses for beam search and for
    copying one primed state to a batch.
    """

    h: torch.Tensor
    c: torch.Tensor
    memory: Memory
    clock: Timeline | None = None  # aligned models: the time each row has reached

    def select(self, idx: torch.Tensor) -> "DecoderState":
        clock = None if self.clock is None else self.clock.select(idx)
        return DecoderState(self.h[:, idx], self.c[:, idx], self.memory.select(idx), clock)


class Seq2Seq(nn.Module):
    """Condition tokens -> target tokens (one shared vocabulary and embedding).

    ``forward(source, source_mask, inputs, features)`` returns logits ``(batch, tgt_time, vocab_size)``.
    With ``aligned``, every decoder input also carries what the condition
    sounds at the time reached (``features`` ``(batch, tgt_time, FEATURES)``,
    :mod:`melodylm.data.alignment`), next to the attention over its tokens.
    ``aligned_memory`` adds the encoder's state of the condition token
    sounding at that time (``now`` ``(batch, tgt_time)`` indexes the source):
    its context in the whole condition, read where the decoder is, rather
    than found by the attention.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 128, hidden_size: int = 256, num_layers: int = 1,
                 bidirectional: bool = True, dropout: float = 0.1, aligned: bool = False,
                 aligned_memory: bool = False):
        super().__init__()
        if aligned_memory and not aligned:
            raise ValueError("aligned_memory needs aligned: true")
        self.config = dict(vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size,
                           num_layers=num_layers, bidirectional=bidirectional, dropout=dropout, aligned=aligned,
                           aligned_memory=aligned_memory)
        self.num_layers, self.hidden_size, self.aligned = num_layers, hidden_size, aligned
        self.aligned_memory = aligned_memory
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.encoder = Encoder(self.embedding, hidden_size, num_layers, bidirectional, dropout)
        self.bridge = nn.Linear(hidden_size, 2 * num_layers * hidden_size)  # summary -> initial (h, c)
        width = embedding_dim + (FEATURES if aligned else 0) + (hidden_size if aligned_memory else 0)
        self.decoder = nn.LSTM(width, hidden_size, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.attention = LuongAttention(hidden_size)
        self.combine = nn.Linear(2 * hidden_size, hidden_size)
        self.head = nn.Linear(hidden_size, vocab_size)
        self.dropout = nn.Dropout(dropout)

    @property
    def vocab_size(self) -> int:
        return self.config["vocab_size"]

    def encode(self, source: torch.Tensor, source_mask: torch.Tensor) -> Memory:
        states, summary = self.encoder(source, source_mask)
        return Memory(states, source_mask, summary)

    def initial_state(self, memory: Memory) -> DecoderState:
        hc = torch.tanh(self.bridge(memory.summary))  # (batch, 2 * layers * hidden)
        hc = hc.view(-1, 2, self.num_layers, self.hidden_size).permute(1, 2, 0, 3).contiguous()
        return DecoderState(hc[0], hc[1], memory)

    def decode(self, inputs: torch.Tensor, state: DecoderState, features: torch.Tensor | None = None,
               now: torch.Tensor | None = None, return_attention: bool = False):
        """Decoder ids ``(batch, time)`` (with their aligned ``features``, and ``now`` for an aligned memory)
        from ``state`` -> logits ``(batch, time, vocab)``, the new state (and the attention weights
        ``(batch, time, src_time)`` when asked)."""
        x = self.dropout(self.embedding(inputs))
        mem = state.memory
        if self.aligned:
            if features is None:
                raise ValueError("an aligned Seq2Seq needs the condition's features at every input")
            x = torch.cat([x, features.to(x.dtype)], -1)
        if self.aligned_memory:
            if now is None:
                raise ValueError("an aligned-memory Seq2Seq needs the condition token sounding at every input")
            here = torch.gather(mem.states, 1, now.unsqueeze(-1).expand(-1, -1, mem.states.size(-1)))
            x = torch.cat([x, here], -1)
        y, (h, c) = self.decoder(x, (state.h, state.c))
        logits, weights = [], []
        for t0 in range(0, y.size(1), ATTENTION_CHUNK):
            q = y[:, t0 : t0 + ATTENTION_CHUNK]
            context, w = self.attention(q, mem.states, mem.mask)
            out = q + torch.tanh(self.combine(torch.cat([q, context], -1)))  # residual: see the module docstring
            logits.append(self.head(self.dropout(out)))
            if return_attention:
                weights.append(w)
        new = DecoderState(h, c, mem, state.clock)
        logits = torch.cat(logits, 1)
        return (logits, new, torch.cat(weights, 1)) if return_attention else (logits, new)

    def forward(self, source: torch.Tensor, source_mask: torch.Tensor, inputs: torch.Tensor,
                features: torch.Tensor | None = None, now: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(inputs, self.initial_state(self.encode(source, source_mask)), features, now)[0]


class ConditionedLM(nn.Module):
    """A Seq2Seq bound to encoded conditions, with the language-model interface the decoding core drives.

    ``memory`` holds one condition (it is repeated to the batch of any call)
    or as many as the batch of the calls (row ``i`` of ids is conditioned on
    row ``i`` of the memory), so one ``Decoder.sample`` call can generate for
    many conditions at once. An aligned model also carries a
    :class:`~melodylm.decoding.timeline.Timeline` per row in its state, and
    feeds each input the condition's frame at the time that row has reached.
    """

    def __init__(self, model: Seq2Seq, memory: Memory, tokenizer=None):
        super().__init__()
        self.model, self.memory = model, memory
        if model.aligned and (tokenizer is None or memory.frames is None):
            raise ValueError("an aligned Seq2Seq needs the tokenizer and the condition's frames")
        self.clock = Timeline(tokenizer, 1, memory.states.device) if model.aligned else None

    @classmethod
    def from_ids(cls, model: Seq2Seq, sources: list[list[int]], pad: int, tokenizer=None) -> "ConditionedLM":
        """Encode ``sources`` (token ids; an aligned model also needs the ``tokenizer`` to read their time)."""
        device = next(model.parameters()).device
        width = max(max(len(s) for s in sources), 1)
        src = torch.full((len(sources), width), pad, dtype=torch.long)
        mask = torch.zeros(len(sources), width, dtype=torch.bool)
        for i, s in enumerate(sources):
            src[i, : len(s)] = torch.as_tensor(s)
            mask[i, : len(s)] = True
        frames = None
        if model.aligned:
            if tokenizer is None:
                raise ValueError("an aligned Seq2Seq needs the tokenizer to read the condition's time")
            grids = [condition_frames(s, tokenizer) for s in sources]
            frames = np.zeros((len(grids), max(len(g) for g in grids), FEATURES), dtype=np.float32)
            for i, g in enumerate(grids):
                frames[i, : len(g)] = g
            frames = torch.from_numpy(frames).to(device)
        times = None
        if model.aligned_memory:
            clock = TokenClock(tokenizer)
            times = torch.full((len(sources), width), float("inf"), dtype=torch.float64)
            for i, s in enumerate(sources):
                times[i, : len(s)] = torch.from_numpy(token_times(s, clock))
            times = times.to(device)
        with torch.no_grad():
            memory = model.eval().encode(src.to(device), mask.to(device))
        memory.frames, memory.times = frames, times
        return cls(model, memory, tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    def _start(self, batch: int) -> DecoderState:
        memory = self.memory
        if memory.states.size(0) != batch:
            if memory.states.size(0) != 1:
                raise ValueError(f"memory holds {memory.states.size(0)} conditions, the call {batch} rows")
            memory = memory.select(torch.zeros(batch, dtype=torch.long, device=memory.states.device))
        state = self.model.initial_state(memory)
        if self.clock is not None:
            state.clock = self.clock.select(torch.zeros(batch, dtype=torch.long, device=memory.states.device))
        return state

    def _aligned(self, ids: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Advance the row clocks over ``ids`` ``(batch, time)``; the condition's frames at each time reached,
        and (aligned memory) the index of its token sounding then, as :func:`~melodylm.data.alignment.now_index`."""
        clock = copy.copy(state.clock)  # states are reused (beams); Timeline.update rebinds, never writes in place
        times = torch.empty(ids.shape, device=ids.device)
        for t in range(ids.size(1)):
            clock.update(ids[:, t])
            times[:, t] = clock.beats()
        state.clock = clock
        frames = state.memory.frames
        idx = torch.floor(times * FRAMES_PER_BEAT + 1e-6).long()
        inside = (idx >= 0) & (idx < frames.size(1))
        out = torch.gather(frames, 1, idx.clamp(0, frames.size(1) - 1).unsqueeze(-1).expand(-1, -1, FEATURES))
        now = None
        if state.memory.times is not None:
            sought = times.to(torch.float64) + 1e-6
            now = (torch.searchsorted(state.memory.times.contiguous(), sought.contiguous(), right=True) - 1).clamp_min(0)
        return out * inside.unsqueeze(-1), now

    def forward(self, ids: torch.Tensor, state: DecoderState | None = None):
        """ids ``(batch, time)`` -> logits ``(batch, time, vocab)`` and the state after them.

        A one-row call without state on a memory of several conditions is
        answered for every condition (how the decoding core primes a batch:
        row ``i`` of ``Decoder.sample(num=len(conditions))`` follows condition ``i``).
        """
        rows = self.memory.states.size(0)
        if state is None and ids.size(0) == 1 and rows > 1:
            ids = ids.expand(rows, -1)
        if state is None:
            state = self._start(ids.size(0))
        else:
            state = DecoderState(state.h, state.c, state.memory, state.clock)
        features, now = self._aligned(ids, state) if self.model.aligned else (None, None)
        return self.model.decode(ids, state, features, now)

    def step(self, ids: torch.Tensor, state: DecoderState | None = None):
        """ids ``(batch,)`` -> logits ``(batch, vocab)`` and the new state."""
        logits, state = self.forward(ids.unsqueeze(1), state)
        return logits[:, 0], state


class BeatTagger(nn.Module):
    """Bi-directional LSTM tagger: per-beat features ``(batch, beats, features)`` -> logits ``(batch, beats, labels)``."""

    def __init__(self, num_labels: int, num_features: int, hidden_size: int = 128, num_layers: int = 2,
                 dropout: float = 0.2):
        super().__init__()
        self.config = dict(num_labels=num_labels, num_features=num_features, hidden_size=hidden_size,
                           num_layers=num_layers, dropout=dropout)
        self.inp = nn.Linear(num_features, hidden_size)
        self.rnn = nn.LSTM(hidden_size, hidden_size, num_layers, batch_first=True, bidirectional=True,
                           dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden_size, num_labels)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``lengths`` ``(batch,)`` in beats keeps the backward direction off the padding."""
        x = self.dropout(torch.relu(self.inp(features)))
        if lengths is None:
            y, _ = self.rnn(x)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True,
                                                       enforce_sorted=False)
            y, _ = self.rnn(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=features.size(1))
        return self.head(self.dropout(y))
