"""The recurrent musical language model: P(next token | previous tokens)."""

from __future__ import annotations

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

State = torch.Tensor | tuple[torch.Tensor, ...]


def map_state(fn, state: State) -> State:
    """``fn`` applied to every tensor of a recurrent state: ``h``, the LSTM pair ``(h, c)``, or with a bar clock
    ``(h, c, bars)``."""
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


class RecurrentLM(nn.Module):
    """embedding -> rnn / gru / lstm (``num_layers``) -> dropout -> logits.

    ``forward(ids, state)`` takes ids ``(batch, time)`` and an optional carried
    state (``h`` of shape ``(num_layers, batch, hidden_size)``, or ``(h, c)``
    for LSTM) and returns logits ``(batch, time, vocab_size)`` and the new
    state. Feeding a sequence in one call or one token at a time with the
    carried state gives the same logits: decoding never re-runs a prefix.

    With ``tie_weights`` the output layer shares the embedding matrix (a
    projection maps the hidden size to the embedding size when they differ).

    With ``bar_clock`` N (LSTM only), every input also gets a learned embedding
    of the number of bars begun so far (bar tokens up to and including it,
    counted from the piece's start, capped at N): the model knows where in the
    tune it is, which a tune's ending depends on (without it an LSTM trained
    for minutes gives the end token about the same probability at every bar
    line). The count is carried in the state, as a third tensor ``bars`` of
    shape ``(1, batch, 1)`` beside ``(h, c)``, so carried windows, sampling,
    beam search and the priors keep it without knowing it is there. Which ids
    are bar tokens is a buffer set by :meth:`set_bar_tokens` (saved with the
    weights).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 256,
        hidden_size: int = 512,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.2,
        tie_weights: bool = False,
        bar_clock: int = 0,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, not {cell!r}")
        if bar_clock and cell != "lstm":
            raise ValueError(f"bar_clock needs cell lstm, not {cell!r}")
        self.config = dict(
            vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size,
            num_layers=num_layers, cell=cell, dropout=dropout, tie_weights=tie_weights,
        )
        if bar_clock:  # absent from older checkpoints' configs, which load as they were
            self.config["bar_clock"] = bar_clock
        self.bar_clock = bar_clock
        self.bar_embedding = nn.Embedding(bar_clock + 1, embedding_dim) if bar_clock else None
        # which ids are bar tokens: saved with the weights; no buffer without the clock (older checkpoints)
        self.register_buffer("is_bar", torch.zeros(vocab_size, dtype=torch.bool) if bar_clock else None)
        self.cell = cell
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = CELLS[cell](
            embedding_dim, hidden_size, num_layers, batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        out_dim = hidden_size
        self.projection = None
        if tie_weights and hidden_size != embedding_dim:
            self.projection = nn.Linear(hidden_size, embedding_dim)
        if tie_weights:
            out_dim = embedding_dim
        self.head = nn.Linear(out_dim, vocab_size)
        if tie_weights:
            self.head.weight = self.embedding.weight
        self._fast = None  # FastStep: weights laid out for step(), built on first use  # weights laid out for step(), built on first use

    @property
    def vocab_size(self) -> int:
        return self.config["vocab_size"]

    def set_bar_tokens(self, ids: list[int]) -> None:
        """The ids that open a bar (the tokenizer's ``Bar_*``), which the bar clock counts."""
        if not self.bar_clock:
            return
        if not ids:
            raise ValueError("bar_clock needs a vocabulary with bar tokens")
        self.is_bar.zero_()
        self.is_bar[torch.as_tensor(ids, dtype=torch.long)] = True

    def bar_counts(self, ids: torch.Tensor, bars: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Bars begun at every input ``(batch, time)`` (capped at ``bar_clock``), and the uncapped count after the
        last input as the state's ``(1, batch, 1)`` tensor; ``bars`` is that count before ``ids`` (None: 0)."""
        start = 0 if bars is None else bars[0, :, 0:1].round().long()
        counts = start + torch.cumsum(self.is_bar[ids].long(), dim=1)
        return counts.clamp(max=self.bar_clock), counts[:, -1:].to(self.head.weight.dtype)[None]

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        x = self.embedding(ids)
        if self.bar_clock:
            counts, bars = self.bar_counts(ids, None if state is None else state[2])
            x = x + self.bar_embedding(counts)
            state = None if state is None else state[:2]
        y, state = self.rnn(self.dropout(x), state)
        if self.bar_clock:
            state = (*state, bars)
        y = self.dropout(y)
        if self.projection is not None:
            y = self.projection(y)
        return self.head(y), state

    def step(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One decoding step: ids ``(batch,)`` -> logits ``(batch, vocab_size)`` and the new state.

        The state has the layout ``forward`` uses, so the two can be mixed
        freely (score a primer with ``forward``, continue with ``step``).

        In eval mode with autograd off (``torch.inference_mode()`` or
        ``torch.no_grad()``, as the decoder runs it) this is the fast path: the
        cell equations written out over weights cached in the layout the CPU
        multiplies fastest, built on first use and rebuilt whenever a parameter
        changes (``load_state_dict``, an optimizer step, ``.to()``). In-place
        writes through ``param.data`` bypass the version counters that detect
        this; call ``model.eval()`` afterwards, which drops the cache. The
        cache holds about one more copy of the weights, two once a batch of 2
        or more has been stepped (see ``_Affine``). In train mode, or with
        autograd on, ``step`` runs ``forward`` on a length-1 sequence, so
        dropout and gradients behave as in training.
        """
        if self.training or torch.is_grad_enabled():
            logits, state = self.forward(ids.unsqueeze(1), state)
            return logits[:, 0], state
        return self._step_cache().step(ids, state if state is not None else self.initial_state(ids.shape[0]))

    def initial_state(self, batch_size: int) -> State:
        """Zero state for ``batch_size`` sequences, on the model's device and dtype."""
        w = self.head.weight
        h = w.new_zeros(self.config["num_layers"], batch_size, self.config["hidden_size"])
        if self.bar_clock:
            return h, h.clone(), w.new_zeros(1, batch_size, 1)
        return (h, h.clone()) if self.cell == "lstm" else h

    def train(self, mode: bool = True) -> "RecurrentLM":
        self._fast = None  # switching mode (model.eval() too) drops the step cache; it is rebuilt on demand
        return super().train(mode)

    def __getstate__(self):
        return {**super().__getstate__(), "_fast": None}  # oneDNN-packed weights neither pickle nor deepcopy

    def _step_cache(self):
        modules = (self.embedding, self.bar_embedding, self.rnn, self.projection, self.head)  # all step reads
        params = [p for m in modules if m is not None for p in m._parameters.values()]
        try:
            key = tuple((p.data_ptr(), p._version) for p in params)
        except RuntimeError:  # parameters created under inference_mode have no version counter
            key = tuple(p.data_ptr() for p in params)
        if self._fast is None or self._fast.key != key:
            from melodylm.models.components.fast_step import FastStep

            with torch.no_grad():
                self._fast = FastStep(self, key)
        return self._fast
