"""Argument types the subcommands share: one-line errors for values argparse cannot read."""

from __future__ import annotations

import argparse
from pathlib import Path

from melodylm.errors import UserError


def pitch_range(text: str) -> tuple[int, int]:
    """``LOW:HIGH`` integers."""
    try:
        low, high = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH integers, got {text!r}") from None
    return low, high


def shifts(text: str) -> tuple[int, int]:
    """``N`` means every shift from -N to +N; ``LOW:HIGH`` is explicit (write ``--transpose=-5:6``)."""
    if ":" in text:
        return pitch_range(text)
    try:
        n = abs(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LOW:HIGH semitones, got {text!r}") from None
    return -n, n


def output_folder(path) -> Path:
    """``path`` as a folder to write into (its writers make it): a file there already is a user's mistake."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file, not a folder")
    return path


def at_least(value: int, minimum: int, flag: str) -> int:
    if value < minimum:
        raise UserError(f"{flag} must be >= {minimum}, got {value}")
    return value


# What makes the run folders the documented commands read: a missing --ckpt names it.
MADE_BY = {"checkpoints/quickstart": "make demo", "checkpoints/nottingham-melody": "make melody-lm",
           "checkpoints/playlist-music21-ids": "make playlist-music21"}
CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # the checkout's presets (absent in a wheel install)
SHARED_HINT = "../shared/data is not part of a clone: put the shared data beside the checkout"


def existing_checkpoint(path: str | Path, flag: str = "--ckpt") -> None:
    """Nothing when ``path`` exists; else a :class:`UserError` naming the make target or preset that writes it."""
    path = Path(path)
    if path.exists():
        return
    run = path.parent if path.suffix == ".ckpt" else path
    made_by = MADE_BY.get(run.as_posix())
    if made_by is None:
        made_by = next((f"melodylm fit --config {c.relative_to(CONFIGS.parent)}" for c in sorted(CONFIGS.rglob("*.yaml"))
                        if f"default_root_dir: {run.as_posix()}\n" in c.read_text()), None) if CONFIGS.is_dir() else None
    raise UserError(f"checkpoint {path} does not exist" + (f": run `{made_by}` first" if made_by else ""))


def existing_input(path: str | Path, what: str) -> Path:
    """``path`` when it exists; else a :class:`UserError` (saying where ../shared/data comes from if it is there)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} {path} does not exist" + (f" ({SHARED_HINT})" if "shared/data" in path.as_posix()
                                                           else ""))
    return path
