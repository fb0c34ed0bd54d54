"""LightningDataModule for playlists: titles as character ids, tracks as catalog indices.

``vocab_size`` (the title alphabet) is what the CLI links to the model's
``vocab_size``; the catalog and its song embeddings reach the model through
:attr:`catalog` and :attr:`features` when it is set up.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from melodylm.errors import UserError
from melodylm.playlist.data import TITLE_VOCAB_SIZE, Catalog, catalog_of, read_catalog, read_playlists, split_of
from melodylm.playlist.model import title_batch


class PlaylistDataModule(L.LightningDataModule):
    """Playlists JSONL (+ optional catalog JSONL, + optional song embeddings ``.npz``).

    With ``embeddings``, every catalog track must have a vector (tracks whose
    MIDI could not be embedded are refused, by id). Playlists are split by the
    SHA-256 of their ``pid`` (else title and tracks): ``val_frac``/``test_frac``.
    ``max_tracks`` cuts long playlists for training (the first tracks are kept).
    """

    def __init__(self, playlists: str, catalog: str | None = None, embeddings: str | None = None,
                 batch_size: int = 32, max_tracks: int = 50, val_frac: float = 0.1, test_frac: float = 0.1,
                 limit: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.catalog: Catalog = read_catalog(catalog) if catalog else None
        items = read_playlists(playlists, self.catalog)[:limit]
        if self.catalog is None:
            self.catalog = catalog_of(items)
        self.splits = {s: [p for p in items if split_of(p.key, val_frac, test_frac) == s]
                       for s in ("train", "val", "test")}
        if not self.splits["train"]:
            raise UserError(f"{playlists}: no playlist falls in the training split")
        self.features = None
        if embeddings:
            from melodylm.playlist.embed import read_embeddings

            vectors = read_embeddings(embeddings)
            missing = [t for t in self.catalog.ids if t not in vectors]
            if missing:
                raise UserError(f"{embeddings}: no embedding for track {missing[0]!r} ({len(missing)} missing)")
            self.features = torch.from_numpy(np.stack([vectors[t] for t in self.catalog.ids]))

    @property
    def vocab_size(self) -> int:
        return TITLE_VOCAB_SIZE

    def collate(self, playlists) -> dict[str, torch.Tensor]:
        titles, lengths = title_batch([p.title for p in playlists])
        cut = [[self.catalog.index[t] for t in p.tracks[: self.hparams.max_tracks]] for p in playlists]
        steps = max(len(c) for c in cut)
        targets = torch.full((len(cut), steps), -100, dtype=torch.long)
        previous = torch.full((len(cut), steps), -1, dtype=torch.long)
        for row, seq in enumerate(cut):
            targets[row, : len(seq)] = torch.tensor(seq)
            previous[row, 1: len(seq)] = torch.tensor(seq[:-1])
        return {"titles": titles, "lengths": lengths, "previous": previous, "targets": targets}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.splits[split], batch_size=self.hparams.batch_size, shuffle=shuffle,
                          collate_fn=self.collate)

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)
