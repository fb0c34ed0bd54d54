"""(condition, target) pairs of token sequences from multitrack MIDI, their dataset and collate functions.

Two layouts of a source folder (or ``music21:bach``, music21's Bach chorales
exported once into the cache in the ``folders`` layout, :mod:`melodylm.data.chorales`):

- ``folders`` (the default, the Nottingham layout): ``ROOT/<source>/X.mid`` and
  ``ROOT/<target>/X.mid`` are two parts of the same tune ``X``, e.g.
  ``nottingham/MIDI/chords/ashover1.mid`` and ``nottingham/MIDI/melody/ashover1.mid``;
- ``tracks``: every MIDI file under ``ROOT`` holds both parts, picked by a track
  spec: ``program:N`` (General MIDI program, 0-based), a track index, or a
  case-insensitive substring of the track name.

Both sides are tokenized with the project's one REMI tokenizer
(:func:`melodylm.data.tokenizer.build_tokenizer`, :func:`score_to_ids`), so
condition and target share one vocabulary. The side named by ``melody`` is
reduced to one monophonic line (the highest note per onset), as
``melodylm prepare --melody`` does.

The split is fixed by the tune's name: :func:`melodylm.data.prepare.split_of` over
the SHA-256 of the file's stem, so the melody -> chords and chords -> melody
models hold out the same tunes, and adding tunes never moves others.
Every tune ends up in exactly one of the pairs or ``unpaired.json`` (name and
reason: ``no <side> file``, ``no <side> track``, ``unreadable``, ...).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from symusic import Score
from torch.utils.data import Dataset

from melodylm.data.alignment import FEATURES, TokenClock, aligned_features, condition_frames, input_times, now_index
from melodylm.data.chorales import resolve_root
from melodylm.data.midi import MIDI_SUFFIXES, CleanOptions, Rejected, clean_score, read_score
from melodylm.data.prepare import split_of
from melodylm.data.tokenizer import SpecialIds, build_tokenizer, fingerprint, score_to_ids
from melodylm.data.windows import IGNORE
from melodylm.errors import UserError
from melodylm.progress import progress_bar

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
SPLITS = ("train", "val", "test")


@dataclass
class PairSettings:
    """Where pairs come from and how they are tokenized (everything that fixes the cached arrays)."""

    root: str = "../shared/data/nottingham/MIDI"
    layout: str = "folders"  # folders | tracks
    source: str = "chords"  # a folder name (folders) or a track spec (tracks)
    target: str = "melody"
    melody: str = "target"  # which side becomes one monophonic line: source | target | none
    pitch_range: tuple[int, int] = (21, 109)
    val_frac: float = 0.1
    test_frac: float = 0.1
    limit: int | None = None  # only the first N tunes by name (quick checks and tests)

    def check(self) -> None:
        if self.layout not in ("folders", "tracks"):
            raise UserError(f"layout must be 'folders' or 'tracks', not {self.layout!r}")
        if self.melody not in ("source", "target", "none"):
            raise UserError(f"melody must be 'source', 'target' or 'none', not {self.melody!r}")
        if not is_embedded(self.root) and not Path(self.root).is_dir():
            raise UserError(f"pair source folder {self.root} does not exist")

    def clean(self, side: str) -> CleanOptions:
        return CleanOptions(min_notes=1, max_seconds=float("inf"), melody=self.melody == side,
                            pitch_range=tuple(self.pitch_range))

    def key(self) -> str:
        blob = {**asdict(self), "root": stable_root(self.root), "format": CACHE_FORMAT,
                "vocabulary": fingerprint(build_tokenizer("REMI", tuple(self.pitch_range)))}
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=list).encode()).hexdigest()[:16]


@dataclass
class Pair:
    name: str
    split: str
    source: np.ndarray  # token ids, no BOS/EOS
    target: np.ndarray
    meta: dict = field(default_factory=dict)


def is_embedded(root: str) -> bool:
    """A pair source that ships with a package (``music21:bach``, see :mod:`melodylm.data.chorales`)."""
    return str(root).startswith("music21:")


def stable_root(root: str) -> str:
    """``root`` as settings record it: an embedded source by name, a folder by its absolute path."""
    return str(root) if is_embedded(root) else str(Path(root).resolve())


def tune_split(name: str, val_frac: float, test_frac: float) -> str:
    """The fixed split of a tune: :func:`split_of` over the SHA-256 of its name."""
    return split_of(hashlib.sha256(name.encode()).hexdigest(), val_frac, test_frac)


def pick_track(score: Score, spec: str) -> Score | None:
    """``score`` reduced to the one track ``spec`` names (``program:N``, an index, a name substring), or None."""
    spec = spec.strip()
    for i, track in enumerate(score.tracks):
        if track.is_drum or track.note_num() == 0:
            continue
        if spec.lower().startswith("program:"):
            hit = track.program == int(spec.split(":", 1)[1])
        elif spec.isdigit():
            hit = i == int(spec)
        else:
            hit = spec.lower() in track.name.lower()
        if hit:
            out = score.copy()
            out.tracks = [track.copy()]
            return out
    return None


def find_tunes(settings: PairSettings) -> tuple[list[tuple[str, Path, Path]], list[dict]]:
    """``(name, source file, target file)`` for every tune with both parts, and the unpaired ones with reasons."""
    root = Path(settings.root)
    unpaired = []
    if settings.layout == "folders":
        def stems(side: str) -> dict[str, Path]:
            folder = root / side
            if not folder.is_dir():
                raise UserError(f"no {side}/ folder under {root} (layout 'folders' pairs {root}/<source>/X.mid "
                                f"with {root}/<target>/X.mid)")
            return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in MIDI_SUFFIXES}

        src, tgt = stems(settings.source), stems(settings.target)
        names = sorted(set(src) | set(tgt))
        if settings.limit:
            names = names[: settings.limit]
        tunes = []
        for n in names:
            if n not in src:
                unpaired.append({"name": n, "reason": f"no {settings.source} file", "path": str(tgt[n])})
            elif n not in tgt:
                unpaired.append({"name": n, "reason": f"no {settings.target} file", "path": str(src[n])})
            else:
                tunes.append((n, src[n], tgt[n]))
        return tunes, unpaired
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES)
    if settings.limit:
        files = files[: settings.limit]
    return [(str(p.relative_to(root).with_suffix("")), p, p) for p in files], unpaired


def encode_pair(name: str, src_path: Path, tgt_path: Path, settings: PairSettings, tokenizer) -> Pair:
    """Read, select, clean and tokenize both parts of one tune; :class:`Rejected` says why it cannot pair."""
    parts = []
    for side, path, spec in (("source", src_path, settings.source), ("target", tgt_path, settings.target)):
        score = read_score(path.read_bytes())
        if settings.layout == "tracks":
            score = pick_track(score, spec)
            if score is None:
                raise Rejected("no_track", f"no {side} track {spec!r}")
        try:
            score, _ = clean_score(score, settings.clean(side))
        except Rejected as rej:
            raise Rejected(rej.code, f"{side}: {rej}") from rej
        ids = score_to_ids(tokenizer, score)
        if not ids:
            raise Rejected("no_tokens", f"{side} gives no tokens")
        parts.append(np.asarray(ids, dtype=np.int32))
    return Pair(name, tune_split(name, settings.val_frac, settings.test_frac), parts[0], parts[1])


def build_pairs(settings: PairSettings, cache_root: Path | str = "datasets/seq2seq") -> tuple[list[Pair], list[dict]]:
    """All pairs of ``settings`` (tokenized once, then read from ``cache_root/<key>/``) and the unpaired tunes.

    Writes ``pairs.npz``, ``unpaired.json`` and ``settings.json`` in the cache folder.
    """
    settings.check()
    folder = Path(cache_root) / settings.key()
    if (folder / "pairs.npz").is_file() and (folder / "unpaired.json").is_file():
        return _read_cache(folder), json.loads((folder / "unpaired.json").read_text())
    tokenizer = build_tokenizer("REMI", tuple(settings.pitch_range))
    tunes, unpaired = find_tunes(replace(settings, root=resolve_root(settings.root, cache_root)))
    pairs = []
    with progress_bar() as bar:
        task = bar.add_task(f"pairing {settings.source} -> {settings.target}", total=len(tunes))
        for name, src, tgt in tunes:
            try:
                pairs.append(encode_pair(name, src, tgt, settings, tokenizer))
            except Rejected as rej:
                unpaired.append({"name": name, "reason": str(rej), "code": rej.code, "path": str(src)})
            bar.advance(task)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "pairs.npz",
             names=np.array([p.name for p in pairs]), splits=np.array([p.split for p in pairs]),
             source=np.concatenate([p.source for p in pairs]) if pairs else np.zeros(0, np.int32),
             target=np.concatenate([p.target for p in pairs]) if pairs else np.zeros(0, np.int32),
             source_len=np.array([len(p.source) for p in pairs], dtype=np.int64),
             target_len=np.array([len(p.target) for p in pairs], dtype=np.int64))
    (folder / "unpaired.json").write_text(json.dumps(sorted(unpaired, key=lambda u: u["name"]), indent=1))
    (folder / "settings.json").write_text(json.dumps(asdict(settings), indent=1, default=list))
    if unpaired:
        log.warning("%d tunes without a pair (listed in %s)", len(unpaired), folder / "unpaired.json")
    return pairs, unpaired


def _read_cache(folder: Path) -> list[Pair]:
    with np.load(folder / "pairs.npz") as z:  # every z[key] reads the file again: read each array once
        z = {k: z[k] for k in z.files}
    src_off = np.concatenate([[0], np.cumsum(z["source_len"])])
    tgt_off = np.concatenate([[0], np.cumsum(z["target_len"])])
    source, target = z["source"], z["target"]
    return [Pair(str(n), str(s), source[src_off[i]:src_off[i + 1]], target[tgt_off[i]:tgt_off[i + 1]])
            for i, (n, s) in enumerate(zip(z["names"], z["splits"]))]


# --- batches -------------------------------------------------------------------------------------------


class PairDataset(Dataset):
    """Pairs as ``(source ids, [BOS] target [EOS])`` tensors, and the aligned features of the decoder inputs.

    With ``max_len`` (training), a pair longer than that is cropped to an
    aligned window: both sides start at the same bar ``k`` (drawn uniformly
    from the torch RNG; ``bar_id`` is the tokenizer's ``Bar_None``) and end
    at the same later bar, as many whole bars as fit ``max_len`` tokens on both
    sides, so training sees every part of a tune at a fixed cost while
    condition and target cover the same music. Without it: whole pieces.

    With ``tokenizer`` (an aligned model), each item also holds
    ``(target_time, FEATURES)`` features: what the condition sounds at the time
    each decoder input has reached (:mod:`melodylm.data.alignment`), and the
    index of the condition token sounding then (:func:`now_index`). With
    ``transpose``, both sides are moved together by a random number of
    semitones in [-5, 6] (torch RNG) that keeps every pitch in the vocabulary.
    """

    def __init__(self, pairs: list[Pair], ids: SpecialIds, max_len: int | None = None, bar_id: int | None = None,
                 tokenizer=None, transpose: bool = False):
        self.pairs, self.ids, self.max_len, self.bar_id = pairs, ids, max_len, bar_id
        self.tokenizer, self.clock = tokenizer, TokenClock(tokenizer) if tokenizer is not None else None
        self.pitches = pitch_table(tokenizer) if transpose else None

    def __len__(self) -> int:
        return len(self.pairs)

    def _window(self, source: np.ndarray, target: np.ndarray) -> tuple[slice, slice]:
        """Both sides from bar ``k`` (random) to the same later bar: as many whole bars as fit ``max_len`` on
        both sides, so the window's condition and target cover the same music (the aligned features never
        run out before the target does). Without two bars to cut at, the sides are cut by tokens."""
        whole = slice(0, len(source)), slice(0, len(target))
        if self.bar_id is None:
            return whole
        src_bars, tgt_bars = np.flatnonzero(source == self.bar_id), np.flatnonzero(target == self.bar_id)
        bars = min(len(src_bars), len(tgt_bars))
        if bars < 2:
            return whole
        k = int(torch.randint(bars, ()))
        s0, t0 = int(src_bars[k]), int(tgt_bars[k])
        if max(len(source) - s0, len(target) - t0) <= self.max_len:
            return slice(s0, len(source)), slice(t0, len(target))
        src_at, tgt_at = src_bars[k:bars] - s0, tgt_bars[k:bars] - t0  # bar starts both sides still have
        cuts = np.flatnonzero((src_at <= self.max_len) & (tgt_at <= self.max_len))[1:]  # keep bars [0, j)
        if not len(cuts):
            return slice(s0, len(source)), slice(t0, len(target))
        j = int(cuts[-1])
        return slice(s0, s0 + int(src_at[j])), slice(t0, t0 + int(tgt_at[j]))

    def __getitem__(self, i: int):
        p = self.pairs[i]
        src_cut, tgt_cut = slice(0, len(p.source)), slice(0, len(p.target))
        if self.max_len and max(len(p.source), len(p.target)) > self.max_len:
            src_cut, tgt_cut = self._window(p.source, p.target)
        if self.max_len:  # at most max_len tokens a side
            src_cut = slice(src_cut.start, min(src_cut.stop, src_cut.start + self.max_len))
            tgt_cut = slice(tgt_cut.start, min(tgt_cut.stop, tgt_cut.start + self.max_len))
        source, target = p.source[src_cut], p.target[tgt_cut]
        tail = [self.ids.eos] if tgt_cut.stop == len(p.target) else []  # EOS only where the tune ends
        if self.pitches is not None:
            source, target = transpose_ids(self.pitches, [source, target], int(torch.randint(12, ())) - 5)
        src = torch.as_tensor(np.asarray(source), dtype=torch.long)
        tgt = torch.as_tensor(np.concatenate([[self.ids.bos], target, tail]), dtype=torch.long)
        if self.tokenizer is None:
            return src, tgt
        times = input_times(target, self.clock)[: len(tgt) - 1]  # the inputs: BOS, then every target token
        feats = aligned_features(condition_frames(source, self.tokenizer), times)
        return src, tgt, torch.from_numpy(feats), torch.from_numpy(now_index(source, times, self.clock))


def pitch_table(tokenizer) -> np.ndarray:
    """``table[id]`` = the MIDI pitch of a ``Pitch_*`` token, -1 for other tokens."""
    table = np.full(len(tokenizer), -1, dtype=np.int64)
    for name, i in tokenizer.vocab.items():
        if name.startswith("Pitch_"):
            table[i] = int(name.split("_")[1])
    return table


def transpose_ids(pitches: np.ndarray, parts: list[np.ndarray], shift: int) -> list[np.ndarray]:
    """``parts`` with every Pitch token moved by ``shift`` semitones, or the nearest shift toward 0 that keeps
    every pitch in the vocabulary (Pitch ids are consecutive in pitch order)."""
    inside = pitches[pitches >= 0]
    notes = np.concatenate([pitches[np.asarray(q, dtype=np.int64)] for q in parts])
    notes = notes[notes >= 0]
    if len(notes):
        shift = int(np.clip(shift, inside.min() - notes.min(), inside.max() - notes.max()))
    out = []
    for q in parts:
        q = np.asarray(q, dtype=np.int64)
        out.append(np.where(pitches[q] >= 0, q + shift, q))
    return out


def collate_pairs(batch, pad_id: int) -> dict[str, torch.Tensor]:
    """Pairs -> ``source`` ``(batch, src_time)`` padded with ``pad_id``, ``source_mask`` (True on tokens),
    decoder ``inputs`` ``(batch, tgt_time)``, next-token ``targets`` (padding = IGNORE) and, for aligned
    items, ``features`` ``(batch, tgt_time, FEATURES)`` and ``now`` ``(batch, tgt_time)`` (zeros on padding)."""
    src_w = max(max(len(item[0]) for item in batch), 1)
    tgt_w = max(len(item[1]) for item in batch) - 1
    source = torch.full((len(batch), src_w), pad_id, dtype=torch.long)
    inputs = torch.full((len(batch), tgt_w), pad_id, dtype=torch.long)
    targets = torch.full((len(batch), tgt_w), IGNORE, dtype=torch.long)
    mask = torch.zeros_like(source, dtype=torch.bool)
    for i, (s, t, *_) in enumerate(batch):
        source[i, : len(s)] = s
        mask[i, : len(s)] = True
        inputs[i, : len(t) - 1] = t[:-1]
        targets[i, : len(t) - 1] = t[1:]
    out = {"source": source, "source_mask": mask, "inputs": inputs, "targets": targets}
    if len(batch[0]) == 4:
        features = torch.zeros(len(batch), tgt_w, FEATURES)
        now = torch.zeros(len(batch), tgt_w, dtype=torch.long)
        for i, (_, t, f, n) in enumerate(batch):
            features[i, : len(t) - 1] = f
            now[i, : len(t) - 1] = n
        out["features"], out["now"] = features, now
    return out


def collate_targets(batch, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets only, as the language model's ``(inputs, targets)`` batches (the unconditional baseline)."""
    out = collate_pairs(batch, pad_id)
    return out["inputs"], out["targets"]


