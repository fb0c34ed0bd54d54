"""The piano-roll benchmark's numbers: a trained frame-token LM scored on whole pieces, in nats per frame.

``melodylm bench pianoroll`` (:mod:`melodylm.commands.bench`) trains a preset
(``configs/pianoroll/*.yaml``: :class:`~melodylm.data.datamodules.RollDataModule`
+ :class:`~melodylm.models.frame_lm_module.FrameLanguageModel`), keeps the epoch
with the best validation NLL per frame and hands its checkpoint here:
:func:`evaluate` scores every validation and test piece whole with the
decoding core (every token, EOS included) and draws a few samples (MIDI + PNG).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from melodylm.api.pianoroll import PianoRollLM
from melodylm.data.windows import RollPieces
from melodylm.progress import progress_bar
from melodylm.render import write_samples


def score_split(lm: PianoRollLM, pieces: RollPieces, batch_size: int = 16, label: str = "") -> dict:
    """Exact NLL of every piece (all its tokens, EOS included) by the decoding core."""
    order = np.argsort(pieces.lengths(), kind="stable")
    nll = np.zeros(len(pieces))
    with progress_bar() as bar:
        task = bar.add_task(f"scoring {label}", total=len(pieces))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, lp in zip(chunk, lm.decoder.token_logprobs([pieces[i].tolist() for i in chunk])):
                nll[i] = -float(lp.sum())
            bar.advance(task, len(chunk))
    tokens = int(pieces.lengths().sum() + len(pieces))  # + EOS per piece
    frames = int(pieces.frames.sum())
    return {
        "pieces": len(pieces), "frames": frames, "tokens": tokens,
        "nll_frame": float(nll.sum() / frames),  # mean over the frames of the split
        "nll_frame_piece_mean": float((nll / pieces.frames).mean()),  # mean over pieces of each piece's NLL per frame
        "nll_token": float(nll.sum() / tokens),
        "bits_token": float(nll.sum() / tokens / np.log(2)),
    }


def evaluate(lm: PianoRollLM, pieces: dict[str, RollPieces], out: Path, seed: int = 0, samples: int = 4,
             max_tokens: int = 512) -> dict:
    """Validation and test NLL of ``lm``, and ``samples`` pieces of up to ``max_tokens`` tokens in
    ``out/samples`` (MIDI + piano-roll PNG + JSON)."""
    results = {
        "vocabulary": {"encoding": lm.encoding.name, "size": lm.encoding.vocab_size, "tokens": lm.encoding.description,
                       "frames_per_beat": lm.frames_per_beat},
        "valid": score_split(lm, pieces["val"], label="validation"),
        "test": score_split(lm, pieces["test"], label="test"),
        "parameters": sum(p.numel() for p in lm.model.parameters()),
    }
    settings = {"num": samples, "max_tokens": max_tokens, "seed": seed}
    rows = write_samples(lm, out / "samples", lm.sample(**settings), settings, wav=False)
    results["samples"] = [str(out / "samples" / r["midi"]) for r in rows]
    return results


def file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
