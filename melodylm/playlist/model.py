"""The playlist network (plain torch) and the generator loaded from a checkpoint.

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

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from melodylm.playlist.data import Catalog, title_ids


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


def title_batch(titles: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Titles -> 0-padded ids ``(batch, chars)`` and lengths ``(batch,)``."""
    ids = [title_ids(t) for t in titles]
    lengths = torch.tensor([len(i) for i in ids])
    out = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = torch.tensor(seq)
    return out, lengths


@dataclass
class Playlister:
    """A trained playlist generator with its catalog (from a checkpoint)."""

    net: PlaylistNet
    catalog: Catalog

    def generate(self, title: str, n: int = 20) -> list[str]:
        """An ordered list of ``n`` distinct track ids (fewer when the catalog is smaller)."""
        titles, lengths = title_batch([title])
        return [self.catalog.ids[i] for i in self.net.generate(titles, lengths, n)[0].tolist()]


def load(path: str | Path) -> Playlister:
    """A playlist checkpoint (file or run folder) -> :class:`Playlister`; no Lightning needed."""
    from melodylm.checkpoint import module_state, read_checkpoint
    from melodylm.errors import UserError
    from melodylm.sample import resolve_checkpoint

    path = resolve_checkpoint(path)
    ckpt = read_checkpoint(path)
    meta = ckpt["melodylm"]
    if meta.get("kind") != "playlist":
        raise UserError(f"{path} holds a {meta.get('kind')!r} model, not a playlist generator")
    net = PlaylistNet(**meta["model"])
    net.load_state_dict(module_state(ckpt))
    return Playlister(net.eval(), Catalog.from_json(meta["catalog"]))
