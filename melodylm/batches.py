"""Token arrays -> batches: the LightningDataModule for language modelling.

Every piece is framed as ``[BOS] piece [EOS]``. Training serves fixed-length
windows over each framed piece (the last window of a piece is padded; padding
targets are ``IGNORE`` so they never reach the loss). Validation and test
serve whole pieces, so ``val/nll_token`` is the exact per-token NLL of the
held-out pieces, the same number ``melodylm score`` reports.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from melodylm.errors import UserError
from melodylm.store import Pieces
from melodylm.tokenizer import SpecialIds, fingerprint, load_tokenizer

IGNORE = -100


class WindowDataset(Dataset):
    """Windows of ``seq_len`` input tokens (and their next-token targets) over framed pieces."""

    def __init__(self, pieces: Pieces, seq_len: int, ids: SpecialIds):
        self.pieces, self.seq_len, self.ids = pieces, seq_len, ids
        framed = pieces.lengths() + 2
        self.index = [(p, start) for p, n in enumerate(framed) for start in range(0, max(n - 1, 1), seq_len)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        p, start = self.index[i]
        framed = np.concatenate([[self.ids.bos], self.pieces[p], [self.ids.eos]])
        chunk = framed[start : start + self.seq_len + 1]
        x = np.full(self.seq_len, self.ids.pad, dtype=np.int64)
        y = np.full(self.seq_len, IGNORE, dtype=np.int64)
        x[: len(chunk) - 1] = chunk[:-1]
        y[: len(chunk) - 1] = chunk[1:]
        return torch.from_numpy(x), torch.from_numpy(y)


class PieceDataset(Dataset):
    """Whole framed pieces, for exact held-out likelihoods."""

    def __init__(self, pieces: Pieces, ids: SpecialIds):
        self.pieces, self.ids = pieces, ids

    def __len__(self) -> int:
        return len(self.pieces)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([[self.ids.bos], self.pieces[i], [self.ids.eos]]).astype(np.int64))


def pad_pieces(batch: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Framed pieces -> inputs ``(batch, time)`` padded with ``pad_id``, targets padded with IGNORE."""
    width = max(len(s) for s in batch) - 1
    x = torch.full((len(batch), width), pad_id, dtype=torch.long)
    y = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for i, s in enumerate(batch):
        x[i, : len(s) - 1] = s[:-1]
        y[i, : len(s) - 1] = s[1:]
    return x, y


class LengthSortedBatches(torch.utils.data.Sampler):
    """Batches of pieces of similar length (less padding), in a fixed order."""

    def __init__(self, lengths: np.ndarray, batch_size: int):
        order = np.argsort(lengths, kind="stable")
        self.batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class TokenDataModule(L.LightningDataModule):
    """Serves a folder written by ``melodylm prepare``.

    Args:
        data_dir: the folder given to ``melodylm prepare --out``.
        seq_len: training window length in tokens.
        batch_size: training windows per batch.
        eval_batch_size: whole pieces per validation/test batch.
        num_workers: DataLoader worker processes (0 = load in the main process).
    """

    def __init__(
        self,
        data_dir: str = "datasets/prepared/quickstart",
        seq_len: int = 256,
        batch_size: int = 32,
        eval_batch_size: int = 16,
        num_workers: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(data_dir)
        if not (self.root / "prepare.json").is_file():
            raise UserError(f"{self.root} is not a prepared data folder; run `melodylm prepare ... --out {self.root}`")
        self.tokenizer = load_tokenizer(self.root / "tokenizer.json")
        self.tokenizer_json = (self.root / "tokenizer.json").read_text()
        self.prepare_settings = json.loads((self.root / "prepare.json").read_text())["settings"]
        self.special = SpecialIds(self.tokenizer)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def tokenizer_fingerprint(self) -> str:
        return fingerprint(self.tokenizer)

    def setup(self, stage: str | None = None) -> None:
        self.splits = {s: Pieces(self.root, s) for s in ("train", "val", "test")}
        if len(self.splits["train"]) == 0:
            raise UserError(f"{self.root} has no training pieces")

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            WindowDataset(self.splits["train"], self.hparams.seq_len, self.special),
            batch_size=self.hparams.batch_size, shuffle=True, drop_last=False,
            num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0,
        )

    def _eval_loader(self, split: str) -> DataLoader:
        pieces = self.splits[split]
        if len(pieces) == 0:
            raise UserError(f"{self.root} has no {split} pieces (raise --val-frac/--test-frac in prepare)")
        return DataLoader(
            PieceDataset(pieces, self.special),
            batch_sampler=LengthSortedBatches(pieces.lengths(), self.hparams.eval_batch_size),
            collate_fn=partial(pad_pieces, pad_id=self.special.pad),
            num_workers=self.hparams.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
