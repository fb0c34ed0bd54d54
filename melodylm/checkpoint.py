"""melodylm checkpoints: one registry of kinds, how they are written, found and loaded (no Lightning needed).

A checkpoint is Lightning's ``.ckpt`` with one extra block, ``"melodylm"``,
written by the LightningModule (:func:`block`): the format version, the
checkpoint's ``kind``, the torch module's config and what the kind needs to be
used alone (a language model's tokenizer JSON, fingerprint and prepare
settings, a tagger's labels, a playlist model's catalog). :func:`load` reads
any kind and returns the object of :data:`KINDS` for it. Files are read with
``torch.load(weights_only=True)``: a file that needs arbitrary Python objects
to unpickle is refused, so a checkpoint cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from melodylm.api.lm import MusicLM
from melodylm.api.pianoroll import PianoRollLM
from melodylm.api.playlist import Playlister
from melodylm.api.seq2seq import ConditionalGenerator
from melodylm.api.tagger import ChordTagger
from melodylm.errors import UserError

FORMAT_VERSION = 1

# kind -> (the class load returns, what a user calls it, the preset that trains one)
KINDS = {
    "language_model": (MusicLM, "a language model", "configs/quickstart.yaml"),
    "pianoroll_language_model": (PianoRollLM, "a piano-roll language model", "configs/pianoroll/jsb.yaml"),
    "seq2seq": (ConditionalGenerator, "a seq2seq generator", "configs/seq2seq/chords2melody.yaml"),
    "chord_tagger": (ChordTagger, "a chord tagger", "configs/seq2seq/tagger.yaml"),
    "playlist": (Playlister, "a playlist generator", "configs/playlist/music21-ids.yaml"),
}
LANGUAGE_MODELS = ("language_model", "pianoroll_language_model")  # what sample, score and bench melody take


def block(kind: str, model_config: dict, **fields) -> dict:
    """The ``"melodylm"`` block a LightningModule writes into its checkpoint."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r} (known: {', '.join(KINDS)})")
    return {"format": FORMAT_VERSION, "kind": kind, "model": dict(model_config), **fields}


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run folder: its newest ``best*.ckpt``, else ``last.ckpt``."""
    path = Path(path)
    if path.is_dir():
        best = sorted(path.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
        if best:
            return best[-1]
        if (path / "last.ckpt").is_file():
            return path / "last.ckpt"
        raise UserError(f"no checkpoint (best*.ckpt or last.ckpt) in {path}")
    return path


def read(path: str | Path) -> dict:
    """The checkpoint dict of a file or run folder, or a :class:`UserError` saying why it cannot be used."""
    path = resolve(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"refusing to load {path}: it holds objects beyond plain weights ({first})") from err
    except Exception as err:  # zip, EOF and unpickler errors: whatever it is, it is not a checkpoint
        raise UserError(f"{path} is not a PyTorch checkpoint ({type(err).__name__})") from err
    if not isinstance(ckpt, dict) or "melodylm" not in ckpt or "state_dict" not in ckpt:
        raise UserError(f"{path} is not a melodylm checkpoint (no 'melodylm' block)")
    version = ckpt["melodylm"].get("format")
    if version != FORMAT_VERSION:
        raise UserError(f"{path} has checkpoint format {version}; this melodylm reads format {FORMAT_VERSION}")
    if ckpt["melodylm"].get("kind") not in KINDS:
        raise UserError(f"{path} holds an unknown kind of model ({ckpt['melodylm'].get('kind')!r})")
    return ckpt


def kind_of(path: str | Path) -> str:
    return read(path)["melodylm"]["kind"]


def module_state(ckpt: dict, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The torch module's weights inside the LightningModule's state dict."""
    return {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def load(path: str | Path, kinds: tuple[str, ...] | None = None):
    """The object for the checkpoint at ``path`` (a file or run folder): a :class:`MusicLM`,
    :class:`PianoRollLM`, :class:`ConditionalGenerator`, :class:`ChordTagger` or :class:`Playlister`.

    ``kinds`` limits what is accepted: any other kind is a :class:`UserError` that names the preset to train.
    """
    ckpt = read(path)
    meta = ckpt["melodylm"]
    kind = meta["kind"]
    if kinds is not None and kind not in kinds:
        wanted = " or ".join(KINDS[k][1] for k in kinds)
        raise UserError(f"{path} holds {KINDS[kind][1]}, not {wanted} "
                        f"(train one with `melodylm fit --config {KINDS[kinds[0]][2]}`)")
    cls = KINDS[kind][0]
    return cls.from_checkpoint(meta, module_state(ckpt))


def check_tokenizer_matches(ckpt: dict, data_fingerprint: str, data_dir: str) -> None:
    """Refuse to resume or evaluate a checkpoint on data tokenized differently."""
    saved = ckpt.get("melodylm", {}).get("tokenizer_fingerprint")
    if saved is not None and saved != data_fingerprint:
        raise UserError(
            f"the checkpoint's tokenizer ({saved}) does not match the tokenizer of {data_dir} "
            f"({data_fingerprint}); prepare the data with the checkpoint's settings or train a new model"
        )
