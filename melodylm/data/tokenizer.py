"""miditok tokenizers: build one from prepare settings, save, load and fingerprint it.

A tokenizer is fully described by its JSON file (miditok's own format, which
also carries the BPE model when one was trained). The checkpoint embeds that
JSON text, so a checkpoint alone can decode samples.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import miditok
import numpy as np

from melodylm.errors import UserError

TOKENIZERS = {"REMI": miditok.REMI, "TSD": miditok.TSD, "MIDILike": miditok.MIDILike}
SPECIAL_TOKENS = ["PAD", "BOS", "EOS"]


class SpecialIds:
    """The special token ids of a tokenizer: PAD, BOS, EOS."""

    def __init__(self, tokenizer: miditok.MusicTokenizer):
        vocab = tokenizer.vocab
        self.pad, self.bos, self.eos = vocab["PAD_None"], vocab["BOS_None"], vocab["EOS_None"]


def build_tokenizer(
    kind: str = "REMI",
    pitch_range: tuple[int, int] = (21, 109),
    velocities: int = 0,
    beat_res: dict[tuple[int, int], int] | None = None,
) -> miditok.MusicTokenizer:
    """A fresh (untrained) tokenizer.

    ``pitch_range`` is half-open, in MIDI note numbers. ``velocities`` is the
    number of velocity bins; 0 leaves velocity out of the vocabulary (notes
    decode at velocity 100), which suits melodies from scores.
    """
    if kind not in TOKENIZERS:
        raise UserError(f"unknown tokenizer {kind!r}; choose one of {', '.join(TOKENIZERS)}")
    config = miditok.TokenizerConfig(
        pitch_range=(pitch_range[0], pitch_range[1] - 1),  # miditok's range is inclusive
        beat_res=beat_res or {(0, 4): 24, (4, 12): 4},  # 24 per beat: 32nds and triplets exact
        num_velocities=max(velocities, 1),
        use_velocities=velocities > 0,
        special_tokens=list(SPECIAL_TOKENS),
        use_time_signatures=kind == "REMI",
        use_programs=False,
    )
    return TOKENIZERS[kind](config)


def score_to_ids(tokenizer: miditok.MusicTokenizer, score) -> list[int]:
    """One score -> one stream of token ids (miditok returns a list of one sequence without programs)."""
    seq = tokenizer.encode(score)
    return (seq[0] if isinstance(seq, list) else seq).ids


def tokenizer_to_json(tokenizer: miditok.MusicTokenizer) -> str:
    """miditok's JSON description of ``tokenizer`` (config, and BPE model if trained)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(Path(tmp), filename="tokenizer.json")
        return (Path(tmp) / "tokenizer.json").read_text()


def tokenizer_from_json(text: str) -> miditok.MusicTokenizer:
    """Inverse of :func:`tokenizer_to_json`."""
    try:
        kind = json.loads(text)["tokenization"]
    except (ValueError, KeyError) as err:
        raise UserError("tokenizer description is not miditok JSON") from err
    if kind not in TOKENIZERS:
        raise UserError(f"tokenizer kind {kind!r} is not supported by melodylm")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(text)
        return TOKENIZERS[kind](params=path)


def load_tokenizer(path: str | Path) -> miditok.MusicTokenizer:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no tokenizer at {path}")
    return tokenizer_from_json(path.read_text())


def fingerprint(tokenizer: miditok.MusicTokenizer) -> str:
    """A short hash of everything that fixes the meaning of token ids."""
    vocab = tokenizer.vocab_model if tokenizer.is_trained else tokenizer.vocab
    blob = json.dumps(
        {"kind": type(tokenizer).__name__, "vocab": sorted(vocab.items()) if isinstance(vocab, dict) else vocab},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def base_tokens(tokenizer: miditok.MusicTokenizer) -> list[list[str]]:
    """For every token id, the base tokens it stands for (one, or several for a BPE merge)."""
    if not tokenizer.is_trained:
        inverse = {i: t for t, i in tokenizer.vocab.items()}
        return [[inverse[i]] for i in range(len(tokenizer))]
    out: list[list[str]] = [[] for _ in range(len(tokenizer))]
    for byte_str, vid in tokenizer.vocab_model.items():
        out[vid] = list(tokenizer._vocab_learned_bytes_to_tokens[byte_str])
    return out


def note_counts(tokenizer: miditok.MusicTokenizer) -> np.ndarray:
    """``counts[v]`` = number of notes (Pitch / NoteOn tokens) that token id ``v`` encodes.

    1 for a plain note token, 0 for time/duration/special tokens, and the
    number of note tokens inside a BPE merge.
    """
    return np.array([sum(t.startswith(("Pitch_", "NoteOn_")) for t in toks) for toks in base_tokens(tokenizer)],
                    dtype=np.int64)
