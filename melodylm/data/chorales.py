"""(chords, melody) pairs from music21's Bach chorales: a pair source that ships with an installed package.

:func:`export_chorales` writes every four-part (SATB) chorale of music21's
``bach`` corpus in the ``folders`` layout of :mod:`melodylm.data.pairs`:

- ``OUT/melody/<name>.mid``: the soprano, one monophonic track (ties merged,
  rests left as gaps);
- ``OUT/chords/<name>.mid``: block chords. On every beat of the bar (a quarter
  in x/4, and in 3/2, which is written as 6/4; a dotted quarter in 6/8, 9/8
  and 12/8) the pitch classes sounding at the beat's start in all four voices,
  with the bass voice's as ``bass``, are named by
  :func:`melodylm.data.chords.chord_label`. Consecutive beats with the same
  label become one chord, except across a bar line: every bar starts with a
  chord of its own, so a window cut at a ``Bar`` token (as
  :class:`melodylm.data.pairs.PairDataset` cuts) always sees its chord, as
  text chords from :func:`melodylm.data.chords.chords_to_score` do. Each chord
  is voiced ``parse_chord_symbol(label).pitches()``, the voicing text chords
  get at generation time; ``N`` (all voices rest) writes nothing. The soprano
  counts: alto, tenor and bass alone leave the third out on 46% of beats (the
  soprano has it), and ``chord_label`` would call those open fifths major
  chords (27% of the labels change).

Both files: 480 ticks per quarter, 120 bpm, the chorale's time signatures
(3/2 written as 6/4: the same bar, and one the REMI tokenizer knows; it reads
3/2 as 4/4). A pickup is padded with rest so that it fills the end of bar 0 and
the first full bar starts on a MIDI bar line: REMI ``Bar`` tokens fall on the
music's bar lines, on both sides. Repeats are not expanded; fermatas ignored.

Parsing is slow (~0.25 s a chorale), so the export runs once:
:func:`resolve_root` turns the pair source ``music21:bach`` into its exported
folder under the cache, exporting only when the folder's ``.complete`` marker
is missing.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
from symusic import Note, Score, Tempo, TimeSignature, Track

from melodylm.data.chords import chord_label, parse_chord_symbol
from melodylm.errors import UserError
from melodylm.progress import progress_bar

log = logging.getLogger(__name__)
PREFIX = "music21:"
SOURCES = {"bach": "music21-bach"}  # music21:<name> -> folder under <cache_root>/sources/
TPQ = 480  # ticks per quarter: 2^5 * 3 * 5, so triplets and 32nds are exact
BPM = 120.0
VELOCITY = 80  # as chords_to_score
SCORE_SUFFIXES = (".mxl", ".xml", ".krn")  # in order of preference when a chorale ships in two formats
MARKER = ".complete"


class Skipped(Exception):
    """A chorale that is not exported; ``reason`` groups them in the summary."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


def chorale_name(path: Path) -> str:
    """A filesystem-safe stem: ``bwv66.6.mxl`` -> ``bwv66.6``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)


def chorale_files() -> tuple[dict[str, Path], list[Path]]:
    """name -> score file of every Bach chorale in music21's corpus (sorted by name), and the duplicates left out.

    music21's ``bach`` folder also holds Roman-numeral analyses (``.rntxt``, not
    scores, skipped silently); a chorale there in two formats keeps its MusicXML.
    """
    import music21

    paths = [Path(p) for p in music21.corpus.getComposer("bach") if Path(p).suffix in SCORE_SUFFIXES]
    files: dict[str, Path] = {}
    duplicates = []
    for p in sorted(paths, key=lambda p: (SCORE_SUFFIXES.index(p.suffix), p.name)):
        if chorale_name(p) in files:
            duplicates.append(p)
        else:
            files[chorale_name(p)] = p
    return dict(sorted(files.items())), duplicates


def beat_quarters(numerator: int, denominator: int) -> float:
    """The beat of a bar in quarter notes: 1 in x/4, 1.5 in 6/8, 9/8, 12/8, else the denominator's note."""
    if denominator == 8 and numerator % 3 == 0 and numerator > 3:
        return 1.5
    return 4 / denominator


def _ticks(quarters) -> int:
    return int(round(float(quarters) * TPQ))


def part_notes(part, shift: float) -> np.ndarray:
    """The notes of a music21 part as rows ``(start, end, pitch)`` in ticks, ties merged, grace notes left out.

    ``shift`` (quarters) moves everything later: the pickup padding.
    """
    rows = []
    for n in part.stripTies().flatten().notes:
        if n.duration.isGrace or n.quarterLength <= 0:
            continue
        start = _ticks(n.offset + shift)
        for p in n.pitches:
            rows.append((start, start + _ticks(n.quarterLength), int(p.midi)))
    return np.array(sorted(rows), dtype=np.int64).reshape(-1, 3)


def time_signatures(part, shift: float) -> list[tuple[int, int, int]]:
    """``(tick, numerator, denominator)`` of each time signature of ``part`` (the first at tick 0), repeats dropped."""
    import music21

    out: list[tuple[int, int, int]] = []
    for ts in part.flatten().getElementsByClass(music21.meter.TimeSignature):
        num, den = ts.numerator, ts.denominator
        if den == 2:  # same bar as (2 num)/4, which the tokenizer knows
            num, den = 2 * num, 4
        tick = _ticks(ts.offset + shift) if ts.offset > 0 else 0
        if out and out[-1][0] == tick:
            out[-1] = (tick, num, den)
        elif not out or out[-1][1:] != (num, den):
            out.append((tick, num, den))
    return out or [(0, 4, 4)]


def beat_grid(signatures: list[tuple[int, int, int]], end: int, beat_of=None) -> list[tuple[int, bool]]:
    """``(tick, starts a bar)`` of every beat before ``end``, bars laid from each time signature's tick.

    ``beat_of(num, den)`` is the beat in quarters (default :func:`beat_quarters`).
    """
    beat_of = beat_of or beat_quarters
    out = []
    for i, (at, num, den) in enumerate(signatures):
        stop = signatures[i + 1][0] if i + 1 < len(signatures) else end
        bar, beat = num * 4 * TPQ // den, _ticks(beat_of(num, den))
        for bar_start in range(at, stop, bar):
            out += [(t, t == bar_start) for t in range(bar_start, min(bar_start + bar, stop), beat)]
    return [b for b in out if b[0] < end]


def sounding(notes: np.ndarray, tick: int) -> np.ndarray:
    """Pitches of the rows ``(start, end, pitch)`` sounding at ``tick``."""
    on = (notes[:, 0] <= tick) & (notes[:, 1] > tick)
    return notes[on, 2]


def beat_chords(voices: list[np.ndarray], grid: list[tuple[int, bool]], end: int) -> list[tuple[int, int, str]]:
    """``(start, end, label)`` chords of the voices (rows; the last is the bass) on ``grid``; ``N`` included.

    Consecutive equal labels merge into one chord, but never across a bar line.
    """
    out: list[tuple[int, int, str]] = []
    for i, (tick, bar_line) in enumerate(grid):
        stop = grid[i + 1][0] if i + 1 < len(grid) else end
        pcs = {int(p) % 12 for part in voices for p in sounding(part, tick)}
        bass = sounding(voices[-1], tick)
        label = chord_label(pcs, int(bass.min()) % 12 if len(bass) else None)
        if out and not bar_line and out[-1][2] == label and out[-1][1] == tick:
            out[-1] = (out[-1][0], stop, label)
        else:
            out.append((tick, stop, label))
    return out


def _score(signatures: list[tuple[int, int, int]], name: str, notes: list[tuple[int, int, int]]) -> Score:
    score = Score(TPQ)
    score.tempos.append(Tempo(0, BPM))
    for tick, num, den in signatures:
        score.time_signatures.append(TimeSignature(tick, num, den))
    track = Track(name=name, program=0)
    for start, duration, pitch in notes:
        track.notes.append(Note(start, duration, pitch, VELOCITY))
    score.tracks.append(track)
    return score


def chorale_to_scores(chorale) -> tuple[Score, Score, list[tuple[int, int, str]]]:
    """A four-part music21 chorale -> (melody score, chords score, its ``(start, end, label)`` chords in ticks).

    Raises :class:`Skipped` for anything that is not four parts with notes.
    """
    parts = list(chorale.parts)
    if len(parts) != 4:
        raise Skipped("not 4 parts", f"{len(parts)} parts: {', '.join(str(p.partName) for p in parts)}")
    from melodylm.data.corpus import pickup_padding  # imports music21: only when a chorale is converted

    shift = pickup_padding(parts[0])
    voices = [part_notes(p, shift) for p in parts]
    if any(len(v) == 0 for v in voices):
        raise Skipped("empty part")
    end = int(max(v[:, 1].max() for v in voices))
    signatures = time_signatures(parts[0], shift)
    chords = beat_chords(voices, beat_grid(signatures, end), end)
    melody = _score(signatures, "melody", [(s, e - s, p) for s, e, p in voices[0].tolist()])
    chord_notes = [(s, e - s, p) for s, e, label in chords if label != "N" for p in parse_chord_symbol(label).pitches()]
    return melody, _score(signatures, "chords", chord_notes), chords


def export_chorales(out: Path, limit: int | None = None) -> dict:
    """Write the four-part Bach chorales of music21 (the first ``limit`` by name) as ``out/{melody,chords}/X.mid``.

    Returns the summary, also written as ``out/export.json``: chorales
    ``written``, ``skipped`` counts by reason (with ``skipped_files``: name, file,
    reason), ``time_signatures`` (chorales per set of signatures) and
    ``seconds``. ``out/.complete`` is written last. Files of an earlier export
    that this one does not write are left in place.
    """
    import music21

    began = time.perf_counter()
    out = Path(out)
    (out / MARKER).unlink(missing_ok=True)
    for side in ("melody", "chords"):
        (out / side).mkdir(parents=True, exist_ok=True)
    files, duplicates = chorale_files()
    names = list(files)[:limit] if limit else list(files)
    skipped = [] if limit else [{"name": chorale_name(p), "file": p.name, "reason": "duplicate",
                                 "detail": f"also as {files[chorale_name(p)].name}"} for p in duplicates]
    meters: Counter = Counter()
    with progress_bar() as bar:
        task = bar.add_task("export music21:bach chorales", total=len(names))
        for name in names:
            try:
                chorale = music21.converter.parse(files[name])
                melody, chords, _ = chorale_to_scores(chorale)
            except Skipped as skip:
                skipped.append({"name": name, "file": files[name].name, "reason": skip.reason, "detail": str(skip)})
            except Exception as err:  # one unreadable chorale must not lose the others
                skipped.append({"name": name, "file": files[name].name, "reason": "unreadable",
                                "detail": f"{type(err).__name__}: {err}"})
            else:
                melody.dump_midi(out / "melody" / f"{name}.mid")
                chords.dump_midi(out / "chords" / f"{name}.mid")
                meters[" ".join(f"{ts.numerator}/{ts.denominator}" for ts in melody.time_signatures)] += 1
            bar.advance(task)
    summary = {
        "source": f"{PREFIX}bach", "music21": music21.__version__, "limit": limit,
        "written": len(names) - sum(s["reason"] != "duplicate" for s in skipped),
        "skipped": dict(Counter(s["reason"] for s in skipped)), "skipped_files": skipped,
        "time_signatures": dict(meters.most_common()), "seconds": round(time.perf_counter() - began, 1),
    }
    (out / "export.json").write_text(json.dumps(summary, indent=1))
    (out / MARKER).write_text(f"{summary['written']} chorales\n")
    log.info("music21:bach -> %s: %d chorales written, %d skipped (see export.json)",
             out, summary["written"], len(skipped))
    return summary


def resolve_root(root: str, cache_root: str | Path) -> str:
    """A pair source root: ``music21:bach`` -> its exported folder (exported on first use), any other root as is."""
    if not root.startswith(PREFIX):
        return root
    name = root[len(PREFIX):]
    if name not in SOURCES:
        raise UserError(f"unknown pair source {root!r}; known: {', '.join(PREFIX + k for k in SOURCES)}")
    folder = Path(cache_root) / "sources" / SOURCES[name]
    if not (folder / MARKER).is_file():
        export_chorales(folder)
    return str(folder)
