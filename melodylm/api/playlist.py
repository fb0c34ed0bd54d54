"""A trained playlist generator with its catalog, from a checkpoint: a title in, catalog track ids out.

    gen = melodylm.load("checkpoints/playlist-music21-ids")
    gen.generate("lively jigs", n=20)   # 20 distinct track ids, in order
"""

from __future__ import annotations

from dataclasses import dataclass

from melodylm.data.playlists import Catalog, title_batch
from melodylm.models.components.playlist import PlaylistNet


@dataclass
class Playlister:
    """A trained playlist generator with its catalog (from a checkpoint)."""

    net: PlaylistNet
    catalog: Catalog

    @classmethod
    def from_checkpoint(cls, meta: dict, weights: dict) -> "Playlister":
        """From a checkpoint's ``melodylm`` block and its module weights (:func:`melodylm.checkpoint.load`)."""
        net = PlaylistNet(**meta["model"])
        net.load_state_dict(weights)
        return cls(net.eval(), Catalog.from_json(meta["catalog"]))

    def generate(self, title: str, n: int = 20) -> list[str]:
        """An ordered list of ``n`` distinct track ids (fewer when the catalog is smaller)."""
        titles, lengths = title_batch([title])
        return [self.catalog.ids[i] for i in self.net.generate(titles, lengths, n)[0].tolist()]
