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
