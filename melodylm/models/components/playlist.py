"""The playlist network (plain torch).

:class:`PlaylistNet`: title characters ``(batch, chars)`` -> LSTM encoder ->
its final ``(h, c)`` starts an LSTM decoder whose input at step t is the
vector of track t-1 (a learned start vector at t = 0). Each decoder output is
projected to a query ``(batch, steps, dim)`` and scored against every
catalog track's vector ``(tracks, dim)``: logits ``(batch, steps, tracks)``,
trained with softmax cross-entropy over the catalog. Track vectors are a
linear map of fixed song embeddings ``features`` ``(tracks, feature_dim)``
when given, else learned id embeddings. Decoding takes, at each step, the
nearest (highest inner product) track not yet in the playlist.
"""

from __future__ import annotations

import torch
from torch import nn


class PlaylistNet(nn.Module):
    def __init__(self, vocab_size: int, num_tracks: int, feature_dim: int = 0, embedding_dim: int = 32,
                 hidden_size: int = 128, dim: int = 64, dropout: float = 0.1):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, num_tracks=num_tracks, feature_dim=feature_dim,
                           embedding_dim=embedding_dim, hidden_size=hidden_size, dim=dim, dropout=dropout)
        self.chars = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.encoder = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.decoder = nn.LSTM(dim, hidden_size, batch_first=True)
        self.query = nn.Linear(hidden_size, dim)
        self.start = nn.Parameter(torch.zeros(dim))
        self.dropout = nn.Dropout(dropout)
        if feature_dim:
            self.register_buffer("features", torch.zeros(num_tracks, feature_dim))
            self.feature_proj = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, dim))
        else:
            self.id_embedding = nn.Embedding(num_tracks, dim)

    def track_vectors(self) -> torch.Tensor:
        """``(tracks, dim)``: what each catalog track looks like to the decoder."""
        if self.config["feature_dim"]:
            return self.feature_proj(self.features)
        return self.id_embedding.weight

    def encode(self, titles: torch.Tensor, lengths: torch.Tensor):
        """Title ids ``(batch, chars)`` (0-padded) and lengths ``(batch,)`` -> decoder state ``(h, c)``."""
        x = self.dropout(self.chars(titles))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.encoder(packed)
        return state

    def forward(self, titles, lengths, previous: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: ``previous`` ``(batch, steps)`` holds track t-1 at step t (-1: start or padding).

        Returns logits ``(batch, steps, tracks)``.
        """
        vectors = self.track_vectors()
        inputs = vectors[previous.clamp(min=0)]
        inputs = torch.where((previous < 0).unsqueeze(-1), self.start.expand_as(inputs), inputs)
        y, _ = self.decoder(self.dropout(inputs), self.encode(titles, lengths))
        return self.query(self.dropout(y)) @ vectors.T

    @torch.inference_mode()
    def generate(self, titles, lengths, n: int, banned: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` distinct tracks ``(batch, n)``: at each step the nearest unused track to the emitted query."""
        vectors = self.track_vectors()
        batch = titles.shape[0]
        used = torch.zeros(batch, vectors.shape[0], dtype=torch.bool) if banned is None else banned.clone()
        n = min(n, int((~used).sum(1).min()))
        state = self.encode(titles, lengths)
        x = self.start.expand(batch, 1, -1)
        out = []
        for _ in range(n):
            y, state = self.decoder(x, state)
            scores = (self.query(y[:, 0]) @ vectors.T).masked_fill(used, float("-inf"))
            pick = scores.argmax(-1)
            used[torch.arange(batch), pick] = True
            out.append(pick)
            x = vectors[pick].unsqueeze(1)
        return torch.stack(out, 1) if out else torch.zeros(batch, 0, dtype=torch.long)


def repeat_mask(previous: torch.Tensor, num_tracks: int) -> torch.Tensor:
    """``(batch, steps, tracks)`` True where a track already appeared before step t (for the loss)."""
    onehot = torch.zeros(*previous.shape, num_tracks, dtype=torch.bool)
    valid = previous >= 0
    onehot[valid] = nn.functional.one_hot(previous[valid], num_tracks).bool()
    return onehot.cumsum(1) > 0
