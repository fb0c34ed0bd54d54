"""Token arrays on disk: one flat int32 array per split plus piece offsets.

``DIR/tokens/<split>.npy`` holds every piece of the split back to back (no
BOS/EOS; the data module adds them) and ``DIR/tokens/<split>.offsets.npy``
holds ``n_pieces + 1`` start indices, so piece ``i`` is
``flat[offsets[i]:offsets[i + 1]]``. Files are memory-mapped on read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")


def save_split(root: Path, split: str, pieces: list[np.ndarray]) -> None:
    folder = Path(root) / "tokens"
    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
    np.save(folder / f"{split}.npy", flat)
    np.save(folder / f"{split}.offsets.npy", offsets)


class Pieces:
    """Read-only view of one split: ``len(pieces)``, ``pieces[i] -> int array``."""

    def __init__(self, root: Path, split: str):
        folder = Path(root) / "tokens"
        self.flat = np.load(folder / f"{split}.npy", mmap_mode="r")
        self.offsets = np.load(folder / f"{split}.offsets.npy")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.flat[self.offsets[i] : self.offsets[i + 1]])

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)
