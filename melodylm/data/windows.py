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
        self.epoch = 0

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

    @property
    def sampler(self) -> "PieceStreams":
        """Itself: the trainer sets the epoch of ``batch_sampler.sampler`` (the rows do not depend on it, the
        :class:`ResumableLoader` does)."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        for _ in range(len(self)):
            yield self._next()


class ShuffledBatches(torch.utils.data.Sampler):
    """Batches of ``batch_size`` items of ``dataset``, in a new shuffled order at every pass.

    On one process the order is the one ``DataLoader(shuffle=True)`` serves (torch's ``RandomSampler``: a
    permutation seeded by one draw from torch's global generator, ``draw``), so a run repeats batch for batch
    what it trained on before; under DDP it is this rank's share of ``DistributedSampler``'s order for
    ``(seed, epoch)`` (the last items repeated to even the shares). ``sampler`` is that ``DistributedSampler``:
    the trainer sets its epoch before each epoch. ``resume(draw, skip)``: the next pass takes the order of
    ``draw`` (none: a new one) and leaves out its first ``skip`` batches, their indices only drawn.
    """

    def __init__(self, dataset, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1):
        self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.batch_size, self.world = batch_size, world
        self.draw: int | None = None  # the seed of this pass's order (one process)
        self._resume: tuple[int | None, int] = (None, 0)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def resume(self, draw: int | None, skip: int) -> None:
        self._resume = (draw, skip)

    def _order(self, draw: int | None) -> list[int]:
        if self.world > 1:
            return list(self.sampler)
        self.draw = int(torch.empty((), dtype=torch.int64).random_().item()) if draw is None else draw
        return torch.randperm(len(self.sampler), generator=torch.Generator().manual_seed(self.draw)).tolist()

    def __iter__(self):
        (draw, skip), self._resume = self._resume, (None, 0)
        order = self._order(draw)
        for start in range(skip * self.batch_size, len(order), self.batch_size):
            yield order[start : start + self.batch_size]


class ResumableLoader(DataLoader):
    """A training DataLoader over a :class:`ShuffledBatches` or :class:`PieceStreams` batch sampler whose
    position Lightning checkpoints, so that a run resumed mid-epoch is served what the killed run would have been.

    Lightning saves ``state_dict()`` in every checkpoint (``loops.fit_loop.state_dict.combined_loader``) and gives
    it to ``load_state_dict`` on resume. The position counts the batches handed to the training loop (not the
    ones dealt ahead for worker processes): ``served`` over all epochs and ``epoch_start`` (``served`` when the
    epoch began), with the sampler's ``epoch``, the order's ``draw`` and torch's random state at the save. The
    first pass after a load starts where the killed run was: in the same epoch, shuffled batches take the
    saved order and skip the batches already served; carried streams deal again, without loading data, as many
    batches as were served, so their rows, rounds and ``visits`` are the killed run's. torch's random state is
    set back just before the first batch is fetched, after what the pass draws from it itself, so dropout and
    random transpositions continue as in the killed run. Uninterrupted, it serves what a plain ``DataLoader``
    over the same sampler serves, with the same draws from torch's generator.

    Exact with ``num_workers`` 0; with workers, unless ``limit_train_batches`` cuts epochs short (their workers
    have dealt carried batches that are never served) or the dataset draws random numbers in the workers.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = 0  # batches handed to the training loop, over all epochs
        self.epoch_start = 0  # ``served`` when this epoch's pass began
        self._loaded: dict | None = None

    def state_dict(self) -> dict:
        batches = self.batch_sampler
        return {"served": self.served, "epoch_start": self.epoch_start, "epoch": getattr(batches, "epoch", None),
                "draw": getattr(batches, "draw", None), "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self._loaded = dict(state)

    def __iter__(self):
        state, self._loaded = self._loaded, None
        if state is None:
            self.epoch_start = self.served
            batches = super().__iter__()
        else:
            batches = self._resumed(state)
        for batch in batches:
            self.served += 1
            yield batch

    def _resumed(self, state: dict):
        """The first pass after a load (run at its first batch, once the trainer has set the epoch)."""
        sampler = self.batch_sampler
        self.served = state["served"]
        same_epoch = getattr(sampler, "epoch", None) == state["epoch"]
        self.epoch_start = state["epoch_start"] if same_epoch else self.served
        if isinstance(sampler, PieceStreams):
            sampler.replay(self.served)
        else:
            sampler.resume(state["draw"] if same_epoch else None, self.served - self.epoch_start)
        if not same_epoch:  # the killed run would have begun this epoch after its save: draw what it drew
            set_rng_state(state["rng"])
            return super().__iter__()
        generator, self.generator = self.generator, torch.Generator()  # the killed run drew the pass's seed
        try:
            batches = super().__iter__()
        finally:
            self.generator = generator
        set_rng_state(state["rng"])
        return batches


def rng_state() -> dict:
    """torch's random state, CPU and (when initialised) CUDA, as tensors a ``weights_only`` load accepts.
    numpy's and Python's global states are not kept: the samplers and datasets seed their own."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Set torch's random state back to one :func:`rng_state` took."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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
