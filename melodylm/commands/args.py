"""Argument types the subcommands share: one-line errors for values argparse cannot read."""

from __future__ import annotations

import argparse


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
