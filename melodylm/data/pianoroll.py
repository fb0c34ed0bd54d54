"""The piano-roll benchmark (Boulanger-Lewandowski et al. 2012): rolls <-> frame tokens <-> MIDI.

Data: MATLAB files with ``traindata`` / ``validdata`` / ``testdata``, each a
cell array of binary ``(frames, 88)`` rolls, column 0 = MIDI pitch 21.

Three lossless serialisations (:data:`ENCODINGS`), all ending the piece
with ``EOS``:

- ``keys`` (92 tokens: ``PAD, BOS, EOS, FRAME`` + one per key): every frame
  lists its active keys in ascending order;
- ``changes`` (180 tokens: the same + one ``OFF`` per key): every frame lists
  the keys released since the previous frame, then the keys pressed, each in
  ascending order (miditok's MIDILike at the frame grid). A held chord costs
  one ``FRAME`` per frame instead of all its keys again;
- ``hold`` (93 tokens: ``keys`` + ``HOLD``): a frame equal to the previous
  one is the single token ``HOLD`` (the first frame repeats silence); any
  other frame is written as in ``keys``. Every frame stays explicit when it
  changes, and a held chord costs one token per frame.

A piece's NLL per frame is the sum of the NLL of every token that encodes it
(key tokens, every ``FRAME`` or ``HOLD``, the final ``EOS``) divided by its number of
frames: the cost of the whole 88-key frame given all earlier frames, as in
the published tables (which leave out frame 1 and the end of the piece, so
ours can only be pessimistic). ``melodylm bench pianoroll``
(:mod:`melodylm.evaluation.bench_pianoroll`) builds on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from symusic import Note, Score, Track

from melodylm.errors import UserError

LOWEST = 21
KEYS = 88
PAD, BOS, EOS, FRAME = range(4)
FIRST_KEY = 4
VOCAB_SIZE = FIRST_KEY + KEYS  # the ``keys`` encoding
FIRST_OFF = VOCAB_SIZE  # the ``changes`` encoding adds one OFF token per key
CHANGES_VOCAB_SIZE = FIRST_OFF + KEYS
HOLD = VOCAB_SIZE  # the ``hold`` encoding adds one token: "the previous frame again"
HOLD_VOCAB_SIZE = HOLD + 1
SPLITS = {"train": "traindata", "val": "validdata", "test": "testdata"}


def load_mat(path: str | Path) -> dict[str, list[np.ndarray]]:
    """``{"train"|"val"|"test": [bool array (frames, 88), ...]}`` from a Boulanger-Lewandowski .mat file."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        mat = loadmat(path)
    except Exception as err:  # scipy raises several types for non-MAT input
        raise UserError(f"{path} is not a MATLAB v5 file ({type(err).__name__}: {err})") from err
    missing = [key for key in SPLITS.values() if key not in mat]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: not a piano-roll benchmark file")
    splits = {}
    for split, key in SPLITS.items():
        rolls = [np.asarray(r) for r in mat[key].ravel()]
        for i, roll in enumerate(rolls):
            if roll.ndim != 2 or roll.shape[1] != KEYS or not np.isin(roll, (0, 1)).all():
                raise UserError(f"{path}: {key}[{i}] is not a binary (frames, {KEYS}) roll: shape {roll.shape}")
            if len(roll) == 0:
                raise UserError(f"{path}: {key}[{i}] has no frames")
        splits[split] = [r.astype(bool) for r in rolls]
    return splits


def roll_to_ids(roll: np.ndarray) -> list[int]:
    """``(frames, 88)`` binary roll -> token ids (no BOS; ends with EOS)."""
    ids: list[int] = []
    for frame in np.asarray(roll, dtype=bool):
        ids += (np.flatnonzero(frame) + FIRST_KEY).tolist()
        ids.append(FRAME)
    ids.append(EOS)
    return ids


def ids_to_roll(ids: list[int]) -> np.ndarray:
    """Inverse of :func:`roll_to_ids` (stops at EOS; a last frame without FRAME still counts)."""
    frames, current = [], np.zeros(KEYS, dtype=bool)
    for tok in ids:
        if tok == EOS:
            break
        if tok == FRAME:
            frames.append(current)
            current = np.zeros(KEYS, dtype=bool)
        elif FIRST_KEY <= tok < VOCAB_SIZE:
            current[tok - FIRST_KEY] = True
        else:
            raise ValueError(f"token {tok} is not a frame token")
    if current.any():
        frames.append(current)
    return np.array(frames, dtype=bool).reshape(-1, KEYS)


def roll_to_change_ids(roll: np.ndarray) -> list[int]:
    """``(frames, 88)`` binary roll -> ``changes`` token ids: per frame OFF keys, ON keys, FRAME; then EOS."""
    roll = np.asarray(roll, dtype=bool)
    before = np.vstack([np.zeros((1, KEYS), bool), roll[:-1]])
    ids: list[int] = []
    for prev, now in zip(before, roll):
        ids += (np.flatnonzero(prev & ~now) + FIRST_OFF).tolist()
        ids += (np.flatnonzero(now & ~prev) + FIRST_KEY).tolist()
        ids.append(FRAME)
    ids.append(EOS)
    return ids


def change_ids_to_roll(ids: list[int]) -> np.ndarray:
    """Inverse of :func:`roll_to_change_ids` (stops at EOS; releasing a key that is up changes nothing)."""
    frames, current, pending = [], np.zeros(KEYS, dtype=bool), False
    for tok in ids:
        if tok == EOS:
            break
        if tok == FRAME:
            frames.append(current.copy())
            pending = False
        elif FIRST_KEY <= tok < CHANGES_VOCAB_SIZE:
            on = tok < FIRST_OFF
            current[tok - (FIRST_KEY if on else FIRST_OFF)] = on
            pending = True
        else:
            raise ValueError(f"token {tok} is not a change token")
    if pending:
        frames.append(current)
    return np.array(frames, dtype=bool).reshape(-1, KEYS)


def roll_to_hold_ids(roll: np.ndarray) -> list[int]:
    """``(frames, 88)`` binary roll -> ``hold`` token ids: HOLD for a repeated frame, else its keys and FRAME; EOS."""
    roll = np.asarray(roll, dtype=bool)
    before = np.vstack([np.zeros((1, KEYS), bool), roll[:-1]])
    ids: list[int] = []
    for prev, now in zip(before, roll):
        if (prev == now).all():
            ids.append(HOLD)
        else:
            ids += (np.flatnonzero(now) + FIRST_KEY).tolist()
            ids.append(FRAME)
    ids.append(EOS)
    return ids


def hold_ids_to_roll(ids: list[int]) -> np.ndarray:
    """Inverse of :func:`roll_to_hold_ids` (stops at EOS; keys pending before a HOLD are dropped, as in a sample)."""
    frames, current = [], np.zeros(KEYS, dtype=bool)
    previous = current.copy()
    for tok in ids:
        if tok == EOS:
            break
        if tok == HOLD:
            frames.append(previous.copy())
            current[:] = False
        elif tok == FRAME:
            frames.append(current)
            previous, current = current, np.zeros(KEYS, dtype=bool)
        elif FIRST_KEY <= tok < VOCAB_SIZE:
            current[tok - FIRST_KEY] = True
        else:
            raise ValueError(f"token {tok} is not a hold-encoding token")
    if current.any():
        frames.append(current)
    return np.array(frames, dtype=bool).reshape(-1, KEYS)


@dataclass(frozen=True)
class Encoding:
    """A lossless roll <-> token serialisation.

    Tokens ``FIRST_KEY <= id < key_end`` name keys (ON, or OFF, in blocks 88 wide): transposition adds the shift
    to them and to nothing else. Each frame ends with exactly one of ``frame_ends``.
    """

    name: str
    vocab_size: int
    key_end: int
    frame_ends: tuple[int, ...]
    encode: Callable[[np.ndarray], list[int]]
    decode: Callable[[list[int]], np.ndarray]
    description: str


ENCODINGS = {
    "keys": Encoding("keys", VOCAB_SIZE, VOCAB_SIZE, (FRAME,), roll_to_ids, ids_to_roll,
                     "PAD BOS EOS FRAME + one per key (MIDI 21-108); per frame: its active keys ascending, then FRAME; "
                     "EOS after the last frame"),
    "changes": Encoding("changes", CHANGES_VOCAB_SIZE, CHANGES_VOCAB_SIZE, (FRAME,),
                        roll_to_change_ids, change_ids_to_roll,
                        "PAD BOS EOS FRAME + ON and OFF per key (MIDI 21-108); per frame: keys released, then keys "
                        "pressed since the previous frame, each ascending, then FRAME; EOS after the last frame"),
    "hold": Encoding("hold", HOLD_VOCAB_SIZE, VOCAB_SIZE, (FRAME, HOLD), roll_to_hold_ids, hold_ids_to_roll,
                     "PAD BOS EOS FRAME + one per key (MIDI 21-108) + HOLD; per frame: HOLD if it repeats the "
                     "previous frame, else its active keys ascending, then FRAME; EOS after the last frame"),
}


FINGERPRINT = "pianoroll-frame-tokens-v1"  # + the encoding name


def fingerprint(enc: Encoding) -> str:
    """What a checkpoint records as its "tokenizer" fingerprint."""
    return f"{FINGERPRINT}-{enc.name}"


def describe(enc: Encoding, frames_per_beat: int = 1) -> str:
    """The JSON a piano-roll checkpoint keeps in place of a miditok tokenizer: enough to decode its tokens."""
    return json.dumps({"kind": "frame-tokens", "encoding": enc.name, "vocab_size": enc.vocab_size,
                       "tokens": enc.description, "keys": KEYS, "lowest_pitch": LOWEST,
                       "frames_per_beat": frames_per_beat})


def encoding(name: str) -> Encoding:
    if name not in ENCODINGS:
        raise UserError(f"unknown piano-roll encoding {name!r} (known: {', '.join(ENCODINGS)})")
    return ENCODINGS[name]


def roll_to_score(roll: np.ndarray, ticks_per_frame: int = 480, tpq: int = 480) -> Score:
    """A roll as MIDI: consecutive active frames of a key form one held note (one frame = ``ticks_per_frame``)."""
    roll = np.asarray(roll, dtype=bool)
    padded = np.vstack([np.zeros((1, KEYS), bool), roll, np.zeros((1, KEYS), bool)]).astype(np.int8)
    change = np.diff(padded, axis=0)
    starts, ends = np.nonzero(change == 1), np.nonzero(change == -1)
    order_s, order_e = np.lexsort((starts[0], starts[1])), np.lexsort((ends[0], ends[1]))
    onset, key = starts[0][order_s], starts[1][order_s]
    offset = ends[0][order_e]
    time = (onset * ticks_per_frame).astype(np.int32)
    score = Score(tpq)
    track = Track(name="roll", program=0)
    track.notes = Note.from_numpy(time=time, duration=((offset - onset) * ticks_per_frame).astype(np.int32),
                                  pitch=(key + LOWEST).astype(np.int8), velocity=np.full(len(time), 80, np.int8))
    track.notes.sort()
    score.tracks.append(track)
    return score


def score_to_roll(score: Score, frames: int, ticks_per_frame: int = 480) -> np.ndarray:
    """Inverse of :func:`roll_to_score` for scores on the frame grid."""
    roll = np.zeros((frames, KEYS), dtype=bool)
    for track in score.tracks:
        a = track.notes.numpy()
        for t, d, p in zip(a["time"] // ticks_per_frame, a["duration"] // ticks_per_frame, a["pitch"]):
            roll[t : t + d, int(p) - LOWEST] = True
    return roll


def score_to_grid(score: Score, frames_per_beat: int = 1) -> np.ndarray:
    """Any MIDI score -> a binary ``(frames, 88)`` roll on a grid of ``frames_per_beat`` frames per quarter note.

    A note covers the frames from its rounded onset to its rounded end (at least one frame); every track counts.
    Notes outside the 88 keys (MIDI 21-108) are refused, not dropped.
    """
    per_frame = score.ticks_per_quarter / frames_per_beat
    starts, ends, keys = [], [], []
    for track in score.tracks:
        a = track.notes.numpy()
        start = np.rint(a["time"] / per_frame).astype(np.int64)
        starts.append(start)
        ends.append(np.maximum(np.rint((a["time"] + a["duration"]) / per_frame).astype(np.int64), start + 1))
        keys.append(a["pitch"].astype(np.int64) - LOWEST)
    start, end, key = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (starts, ends, keys))
    outside = (key < 0) | (key >= KEYS)
    if outside.any():
        raise UserError(f"{int(outside.sum())} note(s) lie outside the 88 piano keys (MIDI {LOWEST}-{LOWEST + KEYS - 1})")
    roll = np.zeros((int(end.max()) if len(end) else 0, KEYS), dtype=bool)
    for s, e, k in zip(start, end, key):
        roll[s:e, k] = True
    return roll


def check_round_trip(splits: dict[str, list[np.ndarray]], path: str,
                     encoding: Encoding = ENCODINGS["keys"]) -> None:
    """Every roll must survive roll -> tokens -> roll and roll -> MIDI -> roll exactly, or the run stops."""
    bad = []
    for split, rolls in splits.items():
        for i, roll in enumerate(rolls):
            via_tokens = encoding.decode(encoding.encode(roll))
            via_midi = score_to_roll(roll_to_score(roll), len(roll))
            if via_tokens.shape != roll.shape or not (via_tokens == roll).all():
                bad.append(f"{split}[{i}] (tokens)")
            elif not (via_midi == roll).all():
                bad.append(f"{split}[{i}] (MIDI)")
    if bad:
        raise UserError(f"{path}: {len(bad)} piece(s) do not convert losslessly: {', '.join(bad[:10])}")
