"""``melodylm bench pianoroll``: the LSTM LM on a Boulanger-Lewandowski piano-roll file, in nats per frame.

Each split is serialised to frame tokens (:mod:`melodylm.pianoroll`; the
recipe's ``data.encoding`` picks ``keys``, ``changes`` or ``hold``), the
round trip roll -> tokens -> roll and roll -> MIDI -> roll is checked for
every piece (any mismatch stops the run), the recipe's LSTM is trained on the
training split (windows in a random key within ``data.transpose``; with
``data.carry_state`` each piece is walked window by window, the state
carried), the epoch with the best validation NLL per frame is kept, and
validation and test pieces are scored whole by the decoding core.
``results.json`` holds the numbers, the recipe, and how long it took;
``samples/`` holds MIDI + PNG drawn from the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import timedelta
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from torch.utils.data import DataLoader
from torchmetrics import SumMetric

from melodylm import pianoroll as PR
from melodylm.batches import LengthSortedBatches, PieceDataset, PieceStreams, WindowDataset, pad_pieces
from melodylm.benchmarks.recipe import DataRecipe, Recipe
from melodylm.decoding.core import Decoder, StopAt
from melodylm.errors import UserError
from melodylm.models.lm_module import LanguageModelModule
from melodylm.progress import progress_bar

log = logging.getLogger("melodylm")

FINGERPRINT = "pianoroll-frame-tokens-v1"  # + the encoding name
SCHEDULE_SHARE = 0.95  # the learning rate reaches its floor by this share of --max-minutes at the latest


class _Special:
    pad, bos, eos = PR.PAD, PR.BOS, PR.EOS


class RollPieces:
    """Frame-token pieces in memory, with the interface of :class:`melodylm.store.Pieces` (no EOS: framing adds it)."""

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
        super().__init__(pieces, seq_len, _Special, carry)
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


class RollDataModule(L.LightningDataModule):
    """Serves the three splits of a piano-roll file as frame tokens."""

    def __init__(self, splits: dict[str, list[np.ndarray]], data: DataRecipe, source: str, seed: int = 0):
        super().__init__()
        self.seed = seed
        self.encoding = PR.encoding(data.encoding)
        self.pieces = {name: RollPieces(rolls, self.encoding) for name, rolls in splits.items()}
        self.recipe = data
        self.tokenizer_json = json.dumps({"kind": "frame-tokens", "encoding": self.encoding.name,
                                          "vocab_size": self.encoding.vocab_size,
                                          "tokens": self.encoding.description, "keys": PR.KEYS,
                                          "lowest_pitch": PR.LOWEST})
        self.tokenizer_fingerprint = f"{FINGERPRINT}-{self.encoding.name}"
        self.prepare_settings = {"source": source}

    def train_dataloader(self) -> DataLoader:
        windows = TransposedWindows(self.pieces["train"], self.recipe.seq_len, self.recipe.transpose,
                                    carry=self.recipe.carry_state)
        if self.recipe.carry_state:
            return DataLoader(windows, batch_sampler=PieceStreams(windows, self.recipe.batch_size, self.seed))
        return DataLoader(windows, batch_size=self.recipe.batch_size, shuffle=True)

    def _eval(self, split: str) -> DataLoader:
        pieces = self.pieces[split]
        return DataLoader(PieceDataset(pieces, _Special),
                          batch_sampler=LengthSortedBatches(pieces.lengths(), self.recipe.eval_batch_size),
                          collate_fn=partial(pad_pieces, pad_id=PR.PAD))

    def val_dataloader(self) -> DataLoader:
        return self._eval("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval("test")


class FrameLanguageModel(LanguageModelModule):
    """The language model, also logging ``{stage}/nll_frame``: summed token NLL over the frames (``frame_ends``)."""

    checkpoint_kind = "pianoroll_language_model"

    def __init__(self, *args, frame_ends: tuple[int, ...] = (PR.FRAME,), **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("frame_ends", torch.tensor(frame_ends), persistent=False)
        self.eval_sum, self.eval_frames = SumMetric(), SumMetric()

    def _eval_step(self, batch) -> None:
        loss, count = self.model_step(batch)
        self.eval_nll.update(loss, weight=count)
        self.eval_sum.update(loss * count)
        self.eval_frames.update(torch.isin(batch[1], self.frame_ends).sum())

    def _eval_epoch_end(self, stage: str) -> None:
        nll_frame = self.eval_sum.compute() / self.eval_frames.compute()
        self.log(f"{stage}/nll_frame", nll_frame, prog_bar=True)
        if stage == "val" and not self.trainer.sanity_checking:  # a line per epoch, readable in a log file too
            log.info("epoch %d: validation %.3f nats/frame", self.current_epoch, float(nll_frame))
        self.eval_sum.reset()
        self.eval_frames.reset()
        super()._eval_epoch_end(stage)


def check_round_trip(splits: dict[str, list[np.ndarray]], path: str,
                     encoding: PR.Encoding = PR.ENCODINGS["keys"]) -> None:
    """Every roll must survive roll -> tokens -> roll and roll -> MIDI -> roll exactly, or the run stops."""
    bad = []
    for split, rolls in splits.items():
        for i, roll in enumerate(rolls):
            via_tokens = encoding.decode(encoding.encode(roll))
            via_midi = PR.score_to_roll(PR.roll_to_score(roll), len(roll))
            if via_tokens.shape != roll.shape or not (via_tokens == roll).all():
                bad.append(f"{split}[{i}] (tokens)")
            elif not (via_midi == roll).all():
                bad.append(f"{split}[{i}] (MIDI)")
    if bad:
        raise UserError(f"{path}: {len(bad)} piece(s) do not convert losslessly: {', '.join(bad[:10])}")


def score_split(model: torch.nn.Module, pieces: RollPieces, batch_size: int = 16, label: str = "") -> dict:
    """Exact NLL of every piece (all its tokens, EOS included) by the decoding core."""
    decoder = Decoder(model, bos=PR.BOS, eos=PR.EOS, pad=PR.PAD)
    order = np.argsort(pieces.lengths(), kind="stable")
    nll = np.zeros(len(pieces))
    with progress_bar() as bar:
        task = bar.add_task(f"scoring {label}", total=len(pieces))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, lp in zip(chunk, decoder.token_logprobs([pieces[i].tolist() for i in chunk])):
                nll[i] = -float(lp.sum())
            bar.advance(task, len(chunk))
    tokens = int(pieces.lengths().sum() + len(pieces))  # + EOS per piece
    frames = int(pieces.frames.sum())
    per_piece = nll / pieces.frames
    return {
        "pieces": len(pieces), "frames": frames, "tokens": tokens,
        "nll_frame": float(nll.sum() / frames),  # mean over the frames of the split
        "nll_frame_piece_mean": float(per_piece.mean()),  # mean over pieces of each piece's NLL per frame
        "nll_token": float(nll.sum() / tokens),
        "bits_token": float(nll.sum() / tokens / np.log(2)),
    }


def write_samples(model: torch.nn.Module, out: Path, encoding: PR.Encoding, num: int = 4, frames: int = 64,
                  seed: int = 0) -> list[str]:
    """A few pieces drawn from the model (up to ``frames`` frames, one frame = one beat) as MIDI + PNG."""
    from melodylm.render import pianoroll_png, write_midi

    decoder = Decoder(model, bos=PR.BOS, eos=PR.EOS, pad=PR.PAD)
    written = []
    for k, sample in enumerate(decoder.sample(num, StopAt(max_tokens=frames * 8), seed=seed)):
        roll = encoding.decode(sample.ids)[:frames]
        score = PR.roll_to_score(roll)
        midi = write_midi(score, out / f"sample-{k:02d}.mid")
        pianoroll_png(score, midi.with_suffix(".png"), title=f"sample {k}, seed {seed}, {len(roll)} frames")
        written.append(str(midi))
    return written


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run(data: str | Path, out: str | Path, recipe: Recipe, max_minutes: float = 60.0,
        max_pieces: int | None = None, epochs: int | None = None, recipe_path: str | None = None) -> dict:
    """Convert, check, train, evaluate; write ``out/results.json`` and return its contents."""
    data, out = Path(data), Path(out)
    started = time.monotonic()
    splits = PR.load_mat(data)
    if max_pieces:
        splits = {name: rolls[:max_pieces] for name, rolls in splits.items()}
    for name, rolls in splits.items():
        if not rolls:
            raise UserError(f"{data}: the {name} split is empty")
    enc = PR.encoding(recipe.data.encoding)
    check_round_trip(splits, str(data), enc)
    log.info("%s: %s pieces train/val/test, every one converts losslessly",
             data.name, "/".join(str(len(r)) for r in splits.values()))

    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(recipe.train.seed, verbose=False)
    dm = RollDataModule(splits, recipe.data, source=data.name, seed=recipe.train.seed)
    module = FrameLanguageModel(vocab_size=enc.vocab_size, frame_ends=enc.frame_ends, **recipe.model)
    module.schedule_seconds = max_minutes * 60 * SCHEDULE_SHARE
    best = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/nll_frame", mode="min",
                           save_last=True)
    callbacks = [best, RichProgressBar()]
    if recipe.train.patience:
        callbacks.append(EarlyStopping(monitor="val/nll_frame", mode="min", patience=recipe.train.patience))
    from lightning.pytorch.loggers import WandbLogger

    trainer = L.Trainer(
        max_epochs=epochs or recipe.train.max_epochs, max_time=timedelta(minutes=max_minutes),
        gradient_clip_val=recipe.train.gradient_clip_val, callbacks=callbacks, default_root_dir=out,
        logger=WandbLogger(project="melodylm", name=f"pianoroll-{data.stem}", save_dir=str(out)),
        log_every_n_steps=20, num_sanity_val_steps=0, enable_model_summary=False,
    )
    trainer.fit(module, dm)
    train_minutes = (time.monotonic() - started) / 60
    if not best.best_model_path:
        raise UserError(f"training stopped before the first validation: raise --max-minutes (was {max_minutes})")
    state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    model = module.model.eval()
    results = {
        "data": {"file": data.name, "sha256_16": _sha(data), "max_pieces": max_pieces},
        "vocabulary": {"encoding": enc.name, "size": enc.vocab_size, "tokens": enc.description},
        "valid": score_split(model, dm.pieces["val"], label="validation"),
        "test": score_split(model, dm.pieces["test"], label="test"),
        "epochs": trainer.current_epoch, "steps": trainer.global_step,
        "best_epoch_val_nll_frame": float(best.best_model_score),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_minutes": round(train_minutes, 2), "torch_threads": torch.get_num_threads(),
        "config": {"recipe": recipe_path, **recipe.to_dict(), "max_minutes": max_minutes,
                   "epochs_override": epochs, "schedule_minutes": round(module.schedule_seconds / 60, 2)},
    }
    results.update({
        "test_nll_frame": results["test"]["nll_frame"], "test_nll_token": results["test"]["nll_token"],
        "valid_nll_frame": results["valid"]["nll_frame"], "frames": results["test"]["frames"],
        "pieces": results["test"]["pieces"],
    })
    results["samples"] = write_samples(model, out / "samples", enc, seed=recipe.train.seed)
    results["minutes"] = round((time.monotonic() - started) / 60, 2)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log.info("test NLL %.3f nats/frame (%.3f nats/token) over %d frames of %d pieces; valid %.3f nats/frame; "
             "%.1f min; wrote %s", results["test_nll_frame"], results["test_nll_token"], results["frames"],
             results["pieces"], results["valid_nll_frame"], results["minutes"], out / "results.json")
    return results
