"""Reading melodylm checkpoints without Lightning, safely.

A checkpoint is Lightning's ``.ckpt`` with one extra block, ``"melodylm"``,
written by the LightningModule: the model config, the tokenizer's miditok
JSON and its fingerprint, and the prepare settings (so ``score`` cleans a file
the way training data was cleaned). It is loaded with
``torch.load(weights_only=True)``: a file that needs arbitrary Python objects
to unpickle is refused, so a checkpoint cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from melodylm.errors import UserError

FORMAT_VERSION = 1


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, or a :class:`UserError` saying why it cannot be used."""
    path = Path(path)
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
    return ckpt


def module_state(ckpt: dict, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The torch module's weights inside the LightningModule's state dict."""
    return {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def check_tokenizer_matches(ckpt: dict, data_fingerprint: str, data_dir: str) -> None:
    """Refuse to resume or evaluate a checkpoint on data tokenized differently."""
    saved = ckpt.get("melodylm", {}).get("tokenizer_fingerprint")
    if saved is not None and saved != data_fingerprint:
        raise UserError(
            f"the checkpoint's tokenizer ({saved}) does not match the tokenizer of {data_dir} "
            f"({data_fingerprint}); prepare the data with the checkpoint's settings or train a new model"
        )
