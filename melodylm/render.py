"""Outputs a person can open: MIDI files and piano-roll PNGs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from symusic import Score  # noqa: E402


def write_midi(score: Score, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return path


def pianoroll_png(score: Score, path: Path, title: str = "") -> Path:
    """Draw every note as a bar: x in beats (quarter notes), y in MIDI pitch."""
    tpq = score.ticks_per_quarter
    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=100)
    pitches = []
    for track in score.tracks:
        arr = track.notes.numpy()
        pitches += arr["pitch"].tolist()
        for t, d, p in zip(arr["time"] / tpq, arr["duration"] / tpq, arr["pitch"]):
            ax.add_patch(plt.Rectangle((t, p - 0.4), d, 0.8, facecolor="tab:blue", edgecolor="white", lw=0.5))
    end = max(score.end() / tpq, 1)
    if len(score.time_signatures):
        for bar in score.get_downbeats() / tpq:
            ax.axvline(bar, color="0.85", lw=0.6, zorder=0)
    low, high = (min(pitches) - 2, max(pitches) + 2) if pitches else (55, 80)
    ax.set_xlim(0, end)
    ax.set_ylim(low, high)
    ax.set_xlabel("beats (quarter notes)")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
