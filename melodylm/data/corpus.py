"""music21's embedded corpora, exported once to MIDI so that prepare can read them.

music21's own ``write('midi')`` raises on a fair share of folk tunes (duplicate
time signatures, odd repeats), so the notes are written with pretty_midi:
one instrument per part, tied notes merged, a pickup bar padded so that bar
lines fall where the score has them, at the score's first tempo (120 bpm when
it gives none). Each corpus file (an ABC file can hold hundreds of tunes) is
parsed in an isolated worker process with a timeout.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import music21
import pretty_midi
from pebble import ProcessPool

from melodylm.errors import UserError
from melodylm.progress import progress_bar

log = logging.getLogger(__name__)
PREFIX = "music21:"


def corpus_files(name: str) -> list[Path]:
    paths = sorted(Path(p) for p in music21.corpus.getComposer(name))
    if not paths:
        raise UserError(
            f"music21 has no corpus named {name!r} (try bach, oneills1850, essenFolksong, ryansMammoth)"
        )
    return paths


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40] or "untitled"


def write_score_midi(score: music21.stream.Score, path: Path) -> int:
    """Write the notes of a music21 score to ``path``; returns the note count."""
    marks = score.recurse().getElementsByClass(music21.tempo.MetronomeMark)
    bpm = float(marks[0].getQuarterBPM()) if marks and marks[0].getQuarterBPM() else 120.0
    spq = 60.0 / bpm
    parts = list(score.parts) or [score]
    shift = pickup_padding(parts[0])
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=bpm)  # 480 = 2^5 * 3 * 5: triplets and 32nds exact
    count = 0
    for part in parts:
        inst = pretty_midi.Instrument(program=0, name=part.partName or "")
        for n in part.stripTies().flatten().notes:
            ql = float(n.quarterLength)
            if ql <= 0 or n.duration.isGrace:
                continue
            start = (float(n.offset) + shift) * spq
            for p in n.pitches:
                inst.notes.append(pretty_midi.Note(90, int(p.midi), start, start + ql * spq))
                count += 1
        pm.instruments.append(inst)
    seen = set()
    for ts in parts[0].flatten().getElementsByClass(music21.meter.TimeSignature):
        at = round((float(ts.offset) + (shift if ts.offset > 0 else 0)) * spq, 6)
        if at not in seen:
            seen.add(at)
            pm.time_signature_changes.append(pretty_midi.TimeSignature(ts.numerator, ts.denominator, at))
    pm.write(str(path))
    return count


def pickup_padding(part) -> float:
    """Quarter lengths missing from an incomplete first bar (an anacrusis)."""
    measures = part.getElementsByClass(music21.stream.Measure)
    if not measures:
        return 0.0
    first = measures[0]
    ts = first.timeSignature or first.getContextByClass(music21.meter.TimeSignature)
    if ts is None:
        return 0.0
    missing = float(ts.barDuration.quarterLength) - float(first.highestTime)
    return missing if 0 < missing < float(ts.barDuration.quarterLength) else 0.0


def export_file(source: str, out_dir: str) -> dict:
    """Parse one corpus file (a score or an ABC opus) and write each piece as MIDI."""
    parsed = music21.converter.parse(source)
    scores = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
    stem = Path(source).stem
    written, failed = [], []
    for i, score in enumerate(scores):
        title = (score.metadata.title if score.metadata else None) or ""
        path = Path(out_dir) / f"{_slug(stem)}-{i:03d}-{_slug(title)}.mid"
        try:
            if write_score_midi(score, path) == 0:
                failed.append({"piece": i, "reason": "no notes"})
                path.unlink(missing_ok=True)
            else:
                written.append(path.name)
        except Exception as err:  # one broken tune must not lose its neighbours
            failed.append({"piece": i, "reason": f"{type(err).__name__}: {err}"})
    return {"written": written, "failed": failed}


def export_corpus(
    name: str, export_root: Path, max_files: int | None = None, workers: int = 2, timeout: float = 300.0
) -> list[Path]:
    """Export music21 corpus ``name`` under ``export_root/music21-<name>/``; returns the MIDI files.

    Already exported source files are skipped, so a second call is instant and
    raising ``max_files`` only exports the new ones. ``export.json`` records
    what each source file gave, including pieces that could not be written.
    """
    sources = corpus_files(name)[: max_files or None]
    out_dir = Path(export_root) / f"music21-{name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    record_path = out_dir / "export.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    if record.get("music21") != music21.__version__:
        record = {"music21": music21.__version__, "sources": {}}
    todo = [s for s in sources if s.name not in record["sources"]]
    if todo:
        with ProcessPool(max_workers=workers) as pool, progress_bar() as bar:
            task = bar.add_task(f"export music21:{name}", total=len(todo))
            futures = [(s, pool.schedule(export_file, args=(str(s), str(out_dir)), timeout=timeout)) for s in todo]
            for source, future in futures:
                try:
                    record["sources"][source.name] = future.result()
                except Exception as err:  # timeout or worker crash: keep going, say so
                    record["sources"][source.name] = {"written": [], "failed": [{"piece": None, "reason": repr(err)}]}
                bar.advance(task)
        record_path.write_text(json.dumps(record, indent=1))
    failed = sum(len(record["sources"][s.name]["failed"]) for s in sources)
    written = sum(len(record["sources"][s.name]["written"]) for s in sources)
    log.info("music21:%s -> %s: %d pieces written, %d could not be exported (see export.json)",
             name, out_dir, written, failed)
    return [out_dir / f for s in sources for f in record["sources"][s.name]["written"]]
