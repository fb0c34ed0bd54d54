"""What every benchmark report states: the machine it ran on, and its rows as a Markdown table."""

from __future__ import annotations

import os
import platform

import torch


def machine() -> str:
    return (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table, ready to paste into docs/."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
