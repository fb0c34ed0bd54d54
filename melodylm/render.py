"""Outputs a person can open: MIDI files, piano-roll PNGs, and a sample's MIDI + PNG + WAV + JSON set."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from symusic import Score  # noqa: E402

from melodylm.audio import render_wav, synthesizer  # noqa: E402


def write_midi(score: Score, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return path


def concatenate(pieces: list[tuple[str, Path]], gap: float = 1.0, tpq: int = 480) -> Score:
    """One score playing ``(title, MIDI path)`` pieces in order, ``gap`` seconds apart.

    Each piece keeps its own tempo (times are carried over in seconds); parts
    with the same program share a track, and a marker names each piece.
    """
    from symusic import Tempo, TextMeta, Track

    merged = Score(tpq, ttype="second")
    merged.tempos.append(Tempo(0.0, qpm=120.0, ttype="second"))
    tracks: dict[tuple[int, bool], Track] = {}
    start = 0.0
    for title, path in pieces:
        piece = Score(str(path)).to("second")
        piece.shift_time(start, inplace=True)
        merged.markers.append(TextMeta(start, title, ttype="second"))
        for track in piece.tracks:
            key = (track.program, track.is_drum)
            if key not in tracks:
                tracks[key] = Track(name=f"program {track.program}", program=track.program, is_drum=track.is_drum,
                                    ttype="second")
            tracks[key].notes.extend(track.notes)
        start = max(start, piece.end()) + gap
    for track in tracks.values():
        track.notes.sort()
        merged.tracks.append(track)
    return merged.to("tick")


TRACK_COLOURS = ("0.6", "tab:blue", "tab:orange", "tab:green")  # with several tracks: the first (a condition) grey


def pianoroll_png(score: Score, path: Path, title: str = "") -> Path:
    """Draw every note as a bar: x in beats (quarter notes), y in MIDI pitch; one colour per track, with a
    legend, when there are several."""
    tpq = score.ticks_per_quarter
    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=100)
    several = len(score.tracks) > 1
    pitches = []
    for k, track in enumerate(score.tracks):
        colour = TRACK_COLOURS[k % len(TRACK_COLOURS)] if several else "tab:blue"
        arr = track.notes.numpy()
        pitches += arr["pitch"].tolist()
        for t, d, p in zip(arr["time"] / tpq, arr["duration"] / tpq, arr["pitch"]):
            ax.add_patch(plt.Rectangle((t, p - 0.4), d, 0.8, facecolor=colour, edgecolor="white", lw=0.5))
        if several:
            ax.plot([], [], color=colour, lw=6, label=track.name)
    if several:
        ax.legend(loc="upper right", fontsize=7)
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


def write_samples(lm, out: Path, samples, settings: dict, primer: list[int] = (),
                  keep_primer: bool = True, wav: bool = True, prefix: str = "sample") -> list[dict]:
    """Write every sample of a language model (``lm``: a MusicLM or PianoRollLM) as MIDI + piano-roll PNG
    (+ WAV) + a JSON sidecar; returns the sidecars."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, s in enumerate(samples):
        score = lm.to_score(s.ids, primer=primer, keep_primer=keep_primer)
        stem = out / f"{prefix}-{i:03d}"
        write_midi(score, stem.with_suffix(".mid"))
        pianoroll_png(score, stem.with_suffix(".png"), title=f"{stem.name}  seed={settings.get('seed')}")
        row = {
            "midi": stem.with_suffix(".mid").name, "png": stem.with_suffix(".png").name,
            "index": i, "settings": settings, "primer_tokens": len(primer), "tokens": len(s.ids),
            "notes": score.note_num(), "seconds": float(score.to("second").end()),
            "logprob": s.logprob, "stop_reason": s.stop_reason,
            "invalid_token_rate": lm.invalid_token_rate(list(primer) + s.ids),
        }
        if wav:
            render_wav(score, stem.with_suffix(".wav"))
            row.update(wav=stem.with_suffix(".wav").name, synthesizer=synthesizer())
        stem.with_suffix(".json").write_text(json.dumps(row, indent=1))
        rows.append(row)
    return rows
