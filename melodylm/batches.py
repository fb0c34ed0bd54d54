"""Token arrays -> batches: the LightningDataModule for language modelling.

Every piece is framed as ``[BOS] piece [EOS]``. Training serves fixed-length
windows over each framed piece (the last window of a piece is padded; padding
targets are ``IGNORE`` so they never reach the loss). Validation and test
serve whole pieces, so ``val/nll_token`` is the exact per-token NLL of the
held-out pieces, the same number ``melodylm score`` reports.

With :class:`PieceStreams` as the batch sampler, training instead walks every
piece window by window in one batch row, the model carrying its state from
one window to the next (truncated backpropagation through time), so it learns
from contexts as long as the pieces it is scored on.
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
    """Windows of ``seq_len`` input tokens (and their next-token targets) over framed pieces.

    Window ``i`` is ``index[i] = (piece, start)``; a piece's windows follow each other without gap or
    overlap, so feeding them in order with the state carried is feeding the whole piece. With ``carry``
    an item is ``(x, y, fresh)``, ``fresh`` true on a piece's first window (the state starts from zero
    there), for :class:`PieceStreams`.
    """

    def __init__(self, pieces: Pieces, seq_len: int, ids: SpecialIds, carry: bool = False):
        self.pieces, self.seq_len, self.ids, self.carry = pieces, seq_len, ids, carry
        framed = pieces.lengths() + 2
        self.index = [(p, start) for p, n in enumerate(framed) for start in range(0, max(n - 1, 1), seq_len)]
        self.visits: dict[int, int] = {}  # piece -> times PieceStreams has dealt it

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        x, y = self.window(i)
        return (x, y, torch.tensor(self.index[i][1] == 0)) if self.carry else (x, y)

    def window(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of window ``i``."""
        p, start = self.index[i]
        framed = np.concatenate([[self.ids.bos], self.pieces[p], [self.ids.eos]])
        chunk = framed[start : start + self.seq_len + 1]
        x = np.full(self.seq_len, self.ids.pad, dtype=np.int64)
        y = np.full(self.seq_len, IGNORE, dtype=np.int64)
        x[: len(chunk) - 1] = chunk[:-1]
        y[: len(chunk) - 1] = chunk[1:]
        return torch.from_numpy(x), torch.from_numpy(y)


class PieceStreams(torch.utils.data.Sampler):
    """Batches for training with a carried state: row ``b`` of each batch continues row ``b`` of the one before.

    Each of the ``batch_size`` rows walks one piece window by window; when its piece ends it takes the next
    piece from a shuffled round of all pieces (a new round is shuffled when one runs out). An epoch is
    ``ceil(windows / batch_size)`` batches, about one round, and the rows carry on across epochs. The
    windows (built with ``carry``) say which rows start a piece: there the model starts from the zero state,
    as it does when scoring a piece whole. ``windows.visits[p]`` counts the times piece ``p`` was dealt, so
    per-piece randomness (a transposition) stays fixed while a row walks it.
    """

    def __init__(self, windows: WindowDataset, batch_size: int, seed: int = 0):
        if not windows.carry:
            raise ValueError("PieceStreams needs a WindowDataset built with carry=True")
        self.windows, self.seed = windows, seed
        self.by_piece: dict[int, list[int]] = {}
        for i, (p, _) in enumerate(windows.index):
            self.by_piece.setdefault(p, []).append(i)
        self.rows: list[list[int]] = [[] for _ in range(batch_size)]  # windows still to come, per row
        self.round: list[int] = []  # pieces not dealt yet in this round
        self.rounds = 0

    def __len__(self) -> int:
        return -(-len(self.windows) // len(self.rows))

    def _deal(self) -> int:
        if not self.round:
            self.round = np.random.default_rng((self.seed, self.rounds)).permutation(sorted(self.by_piece)).tolist()
            self.rounds += 1
        p = self.round.pop()
        self.windows.visits[p] = self.windows.visits.get(p, 0) + 1
        return p

    def __iter__(self):
        for _ in range(len(self)):
            for row in self.rows:
                if not row:
                    row.extend(self.by_piece[self._deal()])
            yield [row.pop(0) for row in self.rows]


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
