"""Every LightningDataModule of melodylm: token arrays, piano rolls, seq2seq pairs, beats and playlists.

Each serves one data folder or file as batches for its LightningModule and
says what the CLI links into the model (``vocab_size``) and what a checkpoint
needs to describe its data (``tokenizer_json``, ``tokenizer_fingerprint``,
``prepare_settings``). The datasets, samplers and collate functions they use
are plain torch, in :mod:`melodylm.data.windows`, :mod:`melodylm.data.pairs`,
:mod:`melodylm.data.beats` and :mod:`melodylm.data.playlists`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from melodylm.data import pianoroll as PR
from melodylm.data.beats import TransposedBeats, collate_beats, label_ids, melody_beat_features, num_beats
from melodylm.data.chords import LABELS, beat_labels
from melodylm.data.pairs import (
    SPLITS,
    PairDataset,
    PairSettings,
    build_pairs,
    collate_pairs,
    collate_targets,
    stable_root,
)
from melodylm.data.playlists import (
    TITLE_VOCAB_SIZE,
    Catalog,
    catalog_of,
    read_catalog,
    read_embeddings,
    read_playlists,
    split_of,
    title_batch,
)
from melodylm.data.store import Pieces
from melodylm.data.tokenizer import SpecialIds, build_tokenizer, fingerprint, load_tokenizer, tokenizer_to_json
from melodylm.data.windows import (
    LengthSortedBatches,
    PieceDataset,
    PieceStreams,
    ResumableLoader,
    RollPieces,
    RollSpecial,
    ShuffledBatches,
    TransposedWindows,
    WindowDataset,
    pad_pieces,
)
from melodylm.errors import UserError


class HeldOutSplits(L.LightningDataModule):
    """What every data module shares: validation and test loaders through its ``_eval_loader(split)``, and
    its share of the data under DDP.

    Each process (``rank`` of ``world``) loads a disjoint shard: shuffled training items through a
    ``DistributedSampler``, the carried streams and the length-sorted held-out batches by rank, with no item
    repeated, so a held-out NLL summed over the ranks is the single-process figure. The CLI turns Lightning's
    own sampler injection off (``trainer.use_distributed_sampler: false``) for this.

    Training loaders are :class:`~melodylm.data.windows.ResumableLoader`s: their position is in every
    checkpoint, and a run resumed mid-epoch is served the batches the killed run would have been served next.
    """

    def _eval_loader(self, split: str) -> DataLoader:
        raise NotImplementedError

    def shard(self) -> tuple[int, int]:
        """(this process's rank, the number of processes): (0, 1) without a trainer or without DDP."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def shuffled(self, dataset, batch_size: int, seed: int = 0, **kwargs) -> ResumableLoader:
        """Shuffled training batches of ``dataset`` (:class:`~melodylm.data.windows.ShuffledBatches`; ``seed``
        orders them under DDP): this rank's shard under DDP. ``kwargs`` go to the DataLoader."""
        return ResumableLoader(dataset, batch_sampler=ShuffledBatches(dataset, batch_size, seed, *self.shard()),
                               **kwargs)

    def sorted_batches(self, lengths, batch_size: int) -> LengthSortedBatches:
        """Held-out items in batches of similar length: this rank's batches under DDP."""
        return LengthSortedBatches(np.asarray(lengths), batch_size, *self.shard())

    def streams(self, windows: WindowDataset, batch_size: int, seed: int, **kwargs) -> ResumableLoader:
        """Carried-state streams over ``windows``: this rank's rows under DDP. ``kwargs`` go to the DataLoader."""
        return ResumableLoader(windows, batch_sampler=PieceStreams(windows, batch_size, seed, *self.shard()),
                               **kwargs)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class TokenDataModule(HeldOutSplits):
    """Serves a folder written by ``melodylm prepare``.

    Args:
        data_dir: the folder given to ``melodylm prepare --out``.
        seq_len: training window length in tokens.
        batch_size: training windows per batch.
        eval_batch_size: whole pieces per validation/test batch.
        num_workers: DataLoader worker processes (0 = load in the main process).
        carry_state: walk each training piece window by window in one batch row, the LSTM state carried from
            window to window (:class:`~melodylm.data.windows.PieceStreams`), so training sees the contexts
            whole pieces are scored and sampled with; off: shuffled windows, each from the zero state.
        seed: the shuffling seed of the carried streams' rounds (and of the shuffled batches under DDP).
    """

    def __init__(
        self,
        data_dir: str = "datasets/prepared/quickstart",
        seq_len: int = 256,
        batch_size: int = 32,
        eval_batch_size: int = 16,
        num_workers: int = 0,
        carry_state: bool = False,
        seed: int = 0,
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
        hp = self.hparams
        windows = WindowDataset(self.splits["train"], hp.seq_len, self.special, carry=hp.carry_state)
        workers = dict(num_workers=hp.num_workers, persistent_workers=hp.num_workers > 0)
        if hp.carry_state:
            return self.streams(windows, hp.batch_size, hp.seed, **workers)
        return self.shuffled(windows, hp.batch_size, hp.seed, **workers)

    def _eval_loader(self, split: str) -> DataLoader:
        pieces = self.splits[split]
        if len(pieces) == 0:
            raise UserError(f"{self.root} has no {split} pieces (raise --val-frac/--test-frac in prepare)")
        return DataLoader(
            PieceDataset(pieces, self.special),
            batch_sampler=self.sorted_batches(pieces.lengths(), self.hparams.eval_batch_size),
            collate_fn=partial(pad_pieces, pad_id=self.special.pad),
            num_workers=self.hparams.num_workers,
        )



class PairDataModule(HeldOutSplits):
    """Serves (condition, target) pairs for a seq2seq model, or only the targets for an LM baseline.

    Args:
        root, layout, source, target, melody, val_frac, test_frac, limit: see :class:`PairSettings`.
        mode: ``pairs`` (batches of dicts for :class:`~melodylm.models.seq2seq_module.Seq2SeqModule`)
            or ``targets`` (``(inputs, targets)`` batches of the target side alone for
            :class:`~melodylm.models.lm_module.LanguageModelModule`: the unconditional LM on the same targets).
        max_len: training pairs are cropped to bar-aligned windows of this many tokens per side
            (validation/test: whole pieces).
        aligned: also serve, for every decoder input, what the condition sounds at the time it has reached
            (for a model with ``aligned: true``; :mod:`melodylm.data.alignment`).
        transpose: move each training pair by a random number of semitones in [-5, 6] (both sides together).
        cache_dir: where tokenized pairs are cached.
    """

    def __init__(
        self,
        root: str = "../shared/data/nottingham/MIDI",
        layout: str = "folders",
        source: str = "chords",
        target: str = "melody",
        melody: str = "target",
        val_frac: float = 0.1,
        test_frac: float = 0.1,
        limit: int | None = None,
        mode: str = "pairs",
        max_len: int | None = 768,
        aligned: bool = False,
        transpose: bool = False,
        batch_size: int = 16,
        eval_batch_size: int = 16,
        cache_dir: str = "datasets/seq2seq",
    ):
        super().__init__()
        self.save_hyperparameters()
        if aligned and mode != "pairs":
            raise UserError("aligned features are for seq2seq pairs (mode: pairs)")
        if mode not in ("pairs", "targets"):
            raise UserError(f"mode must be 'pairs' or 'targets', not {mode!r}")
        self.settings = PairSettings(root=root, layout=layout, source=source, target=target, melody=melody,
                                     val_frac=val_frac, test_frac=test_frac, limit=limit)
        self.settings.check()
        self.tokenizer = build_tokenizer("REMI", tuple(self.settings.pitch_range))
        self.tokenizer_json = tokenizer_to_json(self.tokenizer)
        self.special = SpecialIds(self.tokenizer)
        self.root = Path(root)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def tokenizer_fingerprint(self) -> str:
        return fingerprint(self.tokenizer)

    @property
    def prepare_settings(self) -> dict:
        """What a checkpoint needs to clean new inputs as training data was (``clean`` is the target side's)."""
        pairs = {**asdict(self.settings), "root": stable_root(self.settings.root)}
        return {"pairs": pairs, "clean": self.settings.clean("target").to_dict(),
                "source_clean": self.settings.clean("source").to_dict()}

    def setup(self, stage: str | None = None) -> None:
        pairs, self.unpaired = build_pairs(self.settings, self.hparams.cache_dir)
        self.splits = {s: [p for p in pairs if p.split == s] for s in SPLITS}
        if not self.splits["train"]:
            raise UserError(f"no training pairs in {self.settings.root}")

    def _collate(self):
        fn = collate_pairs if self.hparams.mode == "pairs" else collate_targets
        return partial(fn, pad_id=self.special.pad)

    def train_dataloader(self) -> DataLoader:
        bar = self.tokenizer.vocab.get("Bar_None")
        train = PairDataset(self.splits["train"], self.special, self.hparams.max_len, bar, self._aligned_tokenizer,
                            self.hparams.transpose)
        return self.shuffled(train, self.hparams.batch_size, collate_fn=self._collate())

    @property
    def _aligned_tokenizer(self):
        return self.tokenizer if self.hparams.aligned else None

    def _eval_loader(self, split: str) -> DataLoader:
        pairs = self.splits[split]
        if not pairs:
            raise UserError(f"no {split} pairs (raise val_frac/test_frac)")
        lengths = np.array([len(p.target) + len(p.source) for p in pairs])
        return DataLoader(PairDataset(pairs, self.special, tokenizer=self._aligned_tokenizer), collate_fn=self._collate(),
                          batch_sampler=self.sorted_batches(lengths, self.hparams.eval_batch_size))



class BeatDataModule(HeldOutSplits):
    """Melody features and chord labels per beat, from the same pairs (and split) as the seq2seq models.

    ``source``/``target`` name the melody and chord parts (folders or track
    specs, see :class:`~melodylm.data.pairs.PairSettings`). ``vocab_size``
    is the number of chord labels (:data:`~melodylm.data.chords.LABELS`). ``transpose``: each training tune
    is moved by a random shift in [-5, 6] semitones, melody and chords together, at every visit.
    """

    def __init__(
        self,
        root: str = "../shared/data/nottingham/MIDI",
        layout: str = "folders",
        melody_part: str = "melody",
        chord_part: str = "chords",
        val_frac: float = 0.1,
        test_frac: float = 0.1,
        limit: int | None = None,
        transpose: bool = False,
        batch_size: int = 16,
        eval_batch_size: int = 32,
        cache_dir: str = "datasets/seq2seq",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.settings = PairSettings(root=root, layout=layout, source=melody_part, target=chord_part,
                                     melody="source", val_frac=val_frac, test_frac=test_frac, limit=limit)
        self.settings.check()
        self.root = root

    @property
    def vocab_size(self) -> int:
        return len(LABELS)

    def setup(self, stage: str | None = None) -> None:
        tokenizer = build_tokenizer("REMI", tuple(self.settings.pitch_range))
        pairs, _ = build_pairs(self.settings, self.hparams.cache_dir)
        self.splits = {s: [] for s in SPLITS}
        for p in pairs:
            melody, chords = tokenizer.decode([p.source.tolist()]), tokenizer.decode([p.target.tolist()])
            beats = num_beats(melody, chords)
            self.splits[p.split].append((melody_beat_features(melody, beats), label_ids(beat_labels(chords, beats))))
        if not self.splits["train"]:
            raise UserError(f"no training pairs in {self.settings.root}")

    def train_dataloader(self) -> DataLoader:
        train = TransposedBeats(self.splits["train"]) if self.hparams.transpose else self.splits["train"]
        return self.shuffled(train, self.hparams.batch_size, collate_fn=collate_beats)

    def _eval_loader(self, split: str) -> DataLoader:
        items = self.splits[split]
        if not items:
            raise UserError(f"no {split} pairs (raise val_frac/test_frac)")
        return DataLoader(items, collate_fn=collate_beats,
                          batch_sampler=self.sorted_batches([len(f) for f, _ in items], self.hparams.eval_batch_size))


class RollDataModule(HeldOutSplits):
    """Serves the three splits of a Boulanger-Lewandowski piano-roll ``.mat`` file as frame tokens.

    Args:
        path: the ``.mat`` file (``traindata``/``validdata``/``testdata``, binary ``(frames, 88)`` rolls).
        encoding: the frame serialisation, ``keys``, ``changes`` or ``hold`` (:mod:`melodylm.data.pianoroll`).
        seq_len: training window in tokens.
        batch_size: training windows per batch.
        eval_batch_size: whole pieces per validation/test batch.
        transpose: ``[low, high]`` semitones: each training window (each piece visit, when carried) is moved
            by a random shift in that range that keeps it on the 88 keys; ``[0, 0]``: the data's own key.
        carry_state: walk each training piece window by window in one batch row, the LSTM state carried
            (:class:`~melodylm.data.windows.PieceStreams`).
        frames_per_beat: the grid of the data (JSB 1: quarter notes; Nottingham 2: eighth notes); it sets
            the tempo of the MIDI that sampling writes.
        max_pieces: use only the first N pieces of each split (quick checks).
        seed: the shuffling seed of the carried streams' rounds (and of the shuffled batches under DDP).

    Every piece is checked to convert losslessly (roll -> tokens -> roll, roll -> MIDI -> roll) on load.
    """

    def __init__(
        self,
        path: str,
        encoding: str = "keys",
        seq_len: int = 512,
        batch_size: int = 32,
        eval_batch_size: int = 32,
        transpose: tuple[int, int] = (-6, 5),
        carry_state: bool = False,
        frames_per_beat: int = 1,
        max_pieces: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        low, high = transpose
        if low > 0 or high < 0:
            raise UserError(f"data.transpose must include 0, got {list(transpose)}")
        if frames_per_beat < 1:
            raise UserError(f"data.frames_per_beat must be >= 1, got {frames_per_beat}")
        self.encoding = PR.encoding(encoding)
        self.path = Path(path)
        splits = PR.load_mat(self.path)
        if max_pieces:
            splits = {name: rolls[:max_pieces] for name, rolls in splits.items()}
        for name, rolls in splits.items():
            if not rolls:
                raise UserError(f"{self.path}: the {name} split is empty")
        PR.check_round_trip(splits, str(self.path), self.encoding)
        self.pieces = {name: RollPieces(rolls, self.encoding) for name, rolls in splits.items()}
        self.tokenizer_json = PR.describe(self.encoding, frames_per_beat)
        self.tokenizer_fingerprint = PR.fingerprint(self.encoding)
        self.prepare_settings = {"source": self.path.name}

    @property
    def vocab_size(self) -> int:
        return self.encoding.vocab_size

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        windows = TransposedWindows(self.pieces["train"], hp.seq_len, tuple(hp.transpose), carry=hp.carry_state)
        if hp.carry_state:
            return self.streams(windows, hp.batch_size, hp.seed)
        return self.shuffled(windows, hp.batch_size, hp.seed)

    def _eval_loader(self, split: str) -> DataLoader:
        pieces = self.pieces[split]
        return DataLoader(PieceDataset(pieces, RollSpecial),
                          batch_sampler=self.sorted_batches(pieces.lengths(), self.hparams.eval_batch_size),
                          collate_fn=partial(pad_pieces, pad_id=PR.PAD))



class PlaylistDataModule(HeldOutSplits):
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

    def train_dataloader(self):
        train = self.splits["train"]
        return self.shuffled(train, self.hparams.batch_size, collate_fn=self.collate)

    def _eval_loader(self, split: str) -> DataLoader:
        items = self.splits[split]  # in file order (equal keys), this rank's batches under DDP
        return DataLoader(items, collate_fn=self.collate,
                          batch_sampler=self.sorted_batches(np.zeros(len(items)), self.hparams.batch_size))
