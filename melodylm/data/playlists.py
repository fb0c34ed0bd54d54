"""Playlists and catalogs on disk: validated JSONL, titles as character ids, a fixed split.

Playlists: one JSON object per line, ``{"title": str, "tracks": [id, ...]}``
(optional ``"pid"``: a stable key for the split). Catalog (optional): one JSON
object per line, ``{"id": str, "path": MIDI path or null, "title": str}``.
Without a catalog the tracks are the ids the playlists use.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from melodylm.errors import UserError

# Titles are read as lower-case characters: 0 pads, 1 is any other character.
PAD, UNK = 0, 1
ALPHABET = " abcdefghijklmnopqrstuvwxyz0123456789-'/&,.!?"
TITLE_VOCAB = {ch: i + 2 for i, ch in enumerate(ALPHABET)}
TITLE_VOCAB_SIZE = len(ALPHABET) + 2
MAX_TITLE_CHARS = 64


def title_ids(title: str) -> list[int]:
    """A title -> character ids (lower-cased, spaces collapsed, at most 64), never empty."""
    text = " ".join(title.lower().split())[:MAX_TITLE_CHARS]
    if not text:
        raise UserError("empty playlist title")
    return [TITLE_VOCAB.get(ch, UNK) for ch in text]


def title_words(title: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", title.lower()))


@dataclass
class Playlist:
    title: str
    tracks: list[str]
    pid: str = ""

    @property
    def key(self) -> str:
        return self.pid or json.dumps([self.title, self.tracks])


@dataclass
class Catalog:
    """Track ids in a fixed order (the index is the model's class), with optional MIDI paths and titles."""

    ids: list[str]
    paths: dict[str, str | None] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.index = {t: i for i, t in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def to_json(self) -> list[dict]:
        return [{"id": t, "path": self.paths.get(t), "title": self.titles.get(t, t)} for t in self.ids]

    @classmethod
    def from_json(cls, rows: list[dict]) -> "Catalog":
        return cls([r["id"] for r in rows], {r["id"]: r.get("path") for r in rows},
                   {r["id"]: r.get("title") or r["id"] for r in rows})


def _jsonl(path: Path):
    if not Path(path).is_file():
        raise UserError(f"{path} does not exist")
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{n}: not valid JSON ({err.msg})") from None


def read_catalog(path: str | Path) -> Catalog:
    ids, paths, titles = [], {}, {}
    for n, row in _jsonl(Path(path)):
        if not isinstance(row, dict) or not isinstance(row.get("id"), (str, int)):
            raise UserError(f"{path}:{n}: a catalog line needs an \"id\"")
        tid = str(row["id"])
        if tid in paths:
            raise UserError(f"{path}:{n}: duplicate track id {tid!r}")
        ids.append(tid)
        paths[tid] = row.get("path")
        titles[tid] = row.get("title") or tid
    if not ids:
        raise UserError(f"{path}: empty catalog")
    return Catalog(ids, paths, titles)


def read_playlists(path: str | Path, catalog: Catalog | None = None) -> list[Playlist]:
    """Validated playlists: a non-empty title, at least one track, every id in the catalog (when given)."""
    out = []
    for n, row in _jsonl(Path(path)):
        where = f"{path}:{n}"
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected an object with \"title\" and \"tracks\"")
        title = row.get("title")
        if not isinstance(title, str) or not title.strip():
            raise UserError(f"{where}: empty or missing title")
        tracks = row.get("tracks")
        if not isinstance(tracks, list) or not tracks:
            raise UserError(f"{where}: \"tracks\" must be a non-empty list of track ids")
        tracks = [str(t) for t in tracks]
        if catalog is not None:
            unknown = [t for t in tracks if t not in catalog.index]
            if unknown:
                raise UserError(f"{where}: unknown track id {unknown[0]!r} (not in the catalog)")
        if len(set(tracks)) != len(tracks):
            raise UserError(f"{where}: a track appears twice in playlist {title!r}")
        out.append(Playlist(title.strip(), tracks, str(row.get("pid", ""))))
    if not out:
        raise UserError(f"{path}: no playlists")
    return out


def catalog_of(playlists: list[Playlist]) -> Catalog:
    """The catalog of bare ids the playlists use (first-seen order)."""
    seen: dict[str, None] = {}
    for p in playlists:
        for t in p.tracks:
            seen.setdefault(t, None)
    return Catalog(list(seen))


def split_of(key: str, val_frac: float = 0.1, test_frac: float = 0.1) -> str:
    """``train``/``val``/``test`` from the SHA-256 of ``key``: stable as playlists are added."""
    u = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12
    return "test" if u < test_frac else "val" if u < test_frac + val_frac else "train"


def write_jsonl(path: str | Path, rows) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def title_batch(titles: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Titles -> 0-padded ids ``(batch, chars)`` and lengths ``(batch,)``."""
    ids = [title_ids(t) for t in titles]
    lengths = torch.tensor([len(i) for i in ids])
    out = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = torch.tensor(seq)
    return out, lengths


def read_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """``{track id: vector}`` from an embeddings ``.npz``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"embeddings file {path} does not exist (write it with `melodylm embed`)")
    data = np.load(path, allow_pickle=False)
    return {str(t): v for t, v in zip(data["ids"], data["vectors"])}
