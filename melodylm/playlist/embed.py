"""Song embeddings from the music LM (many-to-one): one vector per MIDI track, cached per catalog.

A track's vector is the mean of the LM's last-layer hidden states over its
tokens (BOS included, EOS not), shape ``(hidden_size,)``. The cache is an
``.npz`` with ``ids`` (file stems), ``vectors`` ``(tracks, hidden_size)`` and
the checkpoint's SHA-256, so a second run with the same checkpoint and files
only embeds files it has not seen.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from melodylm.checkpoint import load, resolve
from melodylm.errors import UserError
from melodylm.progress import progress_bar

log = logging.getLogger(__name__)


@torch.inference_mode()
def track_vector(lm, ids: list[int]) -> np.ndarray:
    """Mean-pooled last-layer LSTM output ``(hidden_size,)`` of one token sequence."""
    model = lm.model
    x = torch.tensor([[lm.special.bos, *ids]])
    y, _ = model.rnn(model.embedding(x))
    return y[0].mean(0).numpy().astype(np.float32)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def embed_folder(ckpt: str | Path, folder: str | Path, out: str | Path, limit: int | None = None) -> dict:
    """Embed every ``*.mid`` under ``folder`` (ids: file stems) into ``out``; returns a summary."""
    ckpt, folder, out = resolve(ckpt), Path(folder), Path(out)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))[:limit]
    if not files:
        raise UserError(f"no MIDI files in {folder}")
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        raise UserError(f"{folder}: two MIDI files share a name; track ids are file names")
    fingerprint = _sha256(ckpt)
    cached: dict[str, np.ndarray] = {}
    if out.is_file():
        data = np.load(out, allow_pickle=False)
        if str(data["checkpoint_sha256"]) == fingerprint:
            cached = {str(t): v for t, v in zip(data["ids"], data["vectors"])}
    lm = load(ckpt, kinds=("language_model",))
    vectors, skipped = {}, {}
    with progress_bar() as bar:
        task = bar.add_task("embedding", total=len(files))
        for path in files:
            if path.stem in cached:
                vectors[path.stem] = cached[path.stem]
            else:
                try:
                    ids, _ = lm.encode(path)
                    vectors[path.stem] = track_vector(lm, ids)
                except UserError as err:
                    skipped[path.stem] = str(err)
            bar.advance(task)
    if not vectors:
        raise UserError(f"no usable MIDI file in {folder}")
    out.parent.mkdir(parents=True, exist_ok=True)
    ids = sorted(vectors)
    np.savez(out, ids=np.array(ids), vectors=np.stack([vectors[t] for t in ids]),
             checkpoint_sha256=np.array(fingerprint), checkpoint=np.array(str(ckpt)))
    return {"tracks": len(ids), "reused": len(cached.keys() & vectors.keys()), "skipped": skipped,
            "dim": int(vectors[ids[0]].shape[0]), "out": str(out)}
