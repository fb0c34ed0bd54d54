"""Token arrays -> batches: windows, whole pieces and the samplers that order them (plain torch).

Every piece is framed as ``[BOS] piece [EOS]``. Training serves fixed-length
windows over each framed piece (the last window of a piece is padded; padding
targets are ``IGNORE`` so they never reach the loss). Validation and test
serve whole pieces, so ``val/nll_token`` is the exact per-token NLL of the
held-out pieces, the same number ``melodylm score`` reports.

With :class:`PieceStreams` as the batch sampler, training instead walks every
piece window by window in one batch row, the model carrying its state from
one window to the next (truncated backpropagation through time), so it learns
from contexts as long as the pieces it is scored on.

Training loaders are :class:`ResumableLoader`s over :class:`ShuffledBatches` or
:class:`PieceStreams`: a run killed mid-epoch and resumed from its checkpoint
is served the batches the killed run would have been served next.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from melodylm.data import pianoroll as PR
from melodylm.data.store import Pieces
from melodylm.data.tokenizer import SpecialIds

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
    ``ceil(windows / batch_size)`` batches, about one round, and the rows carry on across epochs. With
    ``world`` processes (DDP) every rank deals its own share of each round (the pieces ``rank::world`` of one
    shuffled order) to its ``batch_size`` rows, and an epoch is ``ceil(windows / (batch_size * world))``
    batches on every rank. The windows (built with ``carry``) say which rows start a piece: there the model
    starts from the zero state, as it does when scoring a piece whole. ``windows.visits[p]`` counts the times piece ``p`` was dealt, so
    per-piece randomness (a transposition) stays fixed while a row walks it.
    """

    def __init__(self, windows: WindowDataset, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1):
        if not windows.carry:
            raise ValueError("PieceStreams needs a WindowDataset built with carry=True")
        self.windows, self.seed, self.rank, self.world = windows, seed, rank, world
        self.by_piece: dict[int, list[int]] = {}
        for i, (p, _) in enumerate(windows.index):
            self.by_piece.setdefault(p, []).append(i)
        if len(self.by_piece) < world:
            raise ValueError(f"{len(self.by_piece)} training pieces cannot be shared by {world} processes")
        self.rows: list[list[int]] = [[] for _ in range(batch_size)]  # windows still to come, per row
        self.round: list[int] = []  # pieces not dealt yet in this round
        self.rounds = 0

    def __len__(self) -> int:
        return -(-len(self.windows) // (len(self.rows) * self.world))

    def _deal(self) -> int:
        if not self.round:  # every rank draws the same order and deals its own share of it
            order = np.random.default_rng((self.seed, self.rounds)).permutation(sorted(self.by_piece))
            self.round = order[self.rank :: self.world].tolist()
            self.rounds += 1
        p = self.round.pop()
        self.windows.visits[p] = self.windows.visits.get(p, 0) + 1
        return p

    def _next(self) -> list[int]:
        for row in self.rows:
            if not row:
                row.extend(self.by_piece[self._deal()])
        return [row.pop(0) for row in self.rows]

    def replay(self, batches: int) -> None:
        """Deal ``batches`` batches and drop them (no data is loaded): from a new sampler, the rows, round and
        visits a run had after serving that many batches, over all its epochs."""
        for _ in range(batches):
            self._next()

    def __iter__(self):
        for _ in range(len(self)):
            yield self._next()


class ShuffledBatches(torch.utils.data.Sampler):
    """Batches of ``batch_size`` items of ``dataset`` in a shuffled order drawn from ``(seed, epoch)``.

    ``sampler`` is the ``DistributedSampler`` that draws the order, over every item at ``world`` 1 and over this
    rank's share under DDP (the last items repeated to even the shares, as Lightning's own sampler does); the
    trainer sets its epoch (``sampler.set_epoch``) before each epoch. The first ``skip`` batches of the next pass
    are left out, their indices only drawn: a run resumed mid-epoch is served the rest of the epoch.
    """

    def __init__(self, dataset, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1):
        self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.batch_size, self.skip = batch_size, 0

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self):
        order, skip, self.skip = list(self.sampler), self.skip, 0
        for start in range(skip * self.batch_size, len(order), self.batch_size):
            yield order[start : start + self.batch_size]


class ResumableLoader(DataLoader):
    """A training DataLoader over a :class:`ShuffledBatches` or :class:`PieceStreams` batch sampler whose
    position Lightning checkpoints, so that a run resumed mid-epoch is served what the killed run would have been.

    Lightning saves ``state_dict()`` in every checkpoint (``loops.fit_loop.state_dict.combined_loader``) and gives
    it to ``load_state_dict`` on resume. The position counts the batches handed to the training loop (not the
    ones dealt ahead for worker processes): ``served`` over all epochs, ``epoch_start`` (``served`` when the
    epoch began) and the sampler's ``epoch``. The next pass after a load then starts where the killed run was:
    shuffled batches skip the part of the epoch already served (a new epoch, when the trainer has moved on,
    starts at its beginning); carried streams deal again, without loading data, as many batches as were served,
    so their rows, rounds and ``visits`` are the killed run's. That is exact with ``num_workers`` 0, and with
    workers unless ``limit_train_batches`` cuts epochs short (the workers of a cut epoch have dealt batches that
    are never served).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = 0  # batches handed to the training loop, over all epochs
        self.epoch_start = 0  # ``served`` when this epoch's pass began
        self._loaded: dict | None = None

    def state_dict(self) -> dict:
        return {"served": self.served, "epoch_start": self.epoch_start,
                "epoch": getattr(self.batch_sampler, "epoch", None)}

    def load_state_dict(self, state: dict) -> None:
        self._loaded = dict(state)

    def _resume(self, state: dict) -> None:
        """Set the batch sampler at the position ``state`` describes (run at the first batch, once the trainer has
        set the epoch)."""
        batches = self.batch_sampler
        self.served, self.epoch_start = state["served"], state["epoch_start"]
        if isinstance(batches, PieceStreams):
            batches.replay(self.served)
        elif getattr(batches, "epoch", None) == state["epoch"]:
            batches.skip = self.served - self.epoch_start
        else:
            self.epoch_start = self.served

    def __iter__(self):
        state, self._loaded = self._loaded, None
        if state is None:
            self.epoch_start = self.served
        else:
            self._resume(state)
        for batch in super().__iter__():
            self.served += 1
            yield batch


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
    """Batches of pieces of similar length (less padding), in a fixed order.

    With ``world`` processes (DDP), process ``rank`` batches every ``world``-th piece of that order from the
    ``rank``-th on: the shards are disjoint, together they hold every piece exactly once, and no piece is
    repeated to even them out (a held-out NLL summed over the ranks is the whole split's).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, rank: int = 0, world: int = 1):
        order = np.argsort(lengths, kind="stable")[rank::world]
        self.batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


# --- piano-roll frame tokens -------------------------------------------------------------------------


class RollSpecial:
    """The special token ids of the frame-token encodings (as :class:`SpecialIds` names them)."""

    pad, bos, eos = PR.PAD, PR.BOS, PR.EOS


class RollPieces:
    """Frame-token pieces in memory, with the interface of :class:`melodylm.data.store.Pieces` (no EOS: framing adds it)."""

    def __init__(self, rolls: list[np.ndarray], encoding: PR.Encoding = PR.ENCODINGS["keys"]):
        self.encoding = encoding
        self.ids = [np.asarray(encoding.encode(r)[:-1], dtype=np.int64) for r in rolls]
        self.frames = np.array([len(r) for r in rolls], dtype=np.int64)
        active = [np.flatnonzero(r.any(0)) for r in rolls]
        self.low = np.array([a.min() if len(a) else 0 for a in active])  # lowest / highest key used
        self.high = np.array([a.max() if len(a) else PR.KEYS - 1 for a in active])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[i]

    def lengths(self) -> np.ndarray:
        return np.array([len(p) for p in self.ids], dtype=np.int64)


class TransposedWindows(WindowDataset):
    """Training windows, each moved by a random shift in ``shifts`` that keeps its piece on the 88 keys.

    The encoding's key tokens (ON, or OFF in the ``changes`` encoding, each block 88 wide) move by the shift to
    the same kind of token on the shifted key; the others (``FRAME``, ``HOLD``) stay. With ``carry`` (training
    with a carried state) the windows of a piece share one shift each time it is dealt.
    """

    def __init__(self, pieces: RollPieces, seq_len: int, shifts: tuple[int, int], carry: bool = False):
        super().__init__(pieces, seq_len, RollSpecial, carry)
        self.shifts = shifts

    def window(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = super().window(i)
        p = self.index[i][0]
        low = max(self.shifts[0], -int(self.pieces.low[p]))
        high = min(self.shifts[1], PR.KEYS - 1 - int(self.pieces.high[p]))
        if high <= low:
            shift = 0
        elif self.carry:  # one shift per visit of the piece: its windows continue each other
            shift = int(np.random.default_rng((p, self.visits.get(p, 0))).integers(low, high + 1))
        else:
            shift = int(torch.randint(low, high + 1, ()))
        if shift:
            key_end = self.pieces.encoding.key_end
            x = torch.where((x >= PR.FIRST_KEY) & (x < key_end), x + shift, x)
            y = torch.where((y >= PR.FIRST_KEY) & (y < key_end), y + shift, y)
        return x, y
