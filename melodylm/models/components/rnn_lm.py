"""The recurrent musical language model: P(next token | previous tokens)."""

from __future__ import annotations

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class RecurrentLM(nn.Module):
    """embedding -> rnn / gru / lstm (``num_layers``) -> dropout -> logits.

    ``forward(ids, state)`` takes ids ``(batch, time)`` and an optional carried
    state (``h`` of shape ``(num_layers, batch, hidden_size)``, or ``(h, c)``
    for LSTM) and returns logits ``(batch, time, vocab_size)`` and the new
    state. Feeding a sequence in one call or one token at a time with the
    carried state gives the same logits: decoding never re-runs a prefix.

    With ``tie_weights`` the output layer shares the embedding matrix (a
    projection maps the hidden size to the embedding size when they differ).
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
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, not {cell!r}")
        self.config = dict(
            vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size,
            num_layers=num_layers, cell=cell, dropout=dropout, tie_weights=tie_weights,
        )
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

    @property
    def vocab_size(self) -> int:
        return self.config["vocab_size"]

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        x = self.dropout(self.embedding(ids))
        y, state = self.rnn(x, state)
        y = self.dropout(y)
        if self.projection is not None:
            y = self.projection(y)
        return self.head(y), state

    def step(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One decoding step: ids ``(batch,)`` -> logits ``(batch, vocab_size)`` and the new state."""
        logits, state = self.forward(ids.unsqueeze(1), state)
        return logits[:, 0], state

    def initial_state(self, batch_size: int) -> State:
        """Zero state for ``batch_size`` sequences, on the model's device and dtype."""
        w = self.head.weight
        h = w.new_zeros(self.config["num_layers"], batch_size, self.config["hidden_size"])
        return (h, h.clone()) if self.cell == "lstm" else h
