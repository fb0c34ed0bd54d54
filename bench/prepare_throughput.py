"""prepare throughput in files/s with 1 and 2 workers, and the cached re-run.

Reads the Nottingham melodies from ../shared/data (override with
MELODYLM_SHARED_DATA); skips, with a message, when they are absent.

    python bench/prepare_throughput.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

from bench.common import SHARED_DATA, machine, table
from melodylm.data.midi import CleanOptions
from melodylm.data.prepare import PrepareSettings, prepare


def timed(folder: Path, out: Path, workers: int) -> tuple[float, dict]:
    start = time.perf_counter()
    summary = prepare([str(folder)], out, PrepareSettings(clean=CleanOptions(melody=True)), workers=workers)
    return time.perf_counter() - start, summary


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    folder = SHARED_DATA / "nottingham" / "MIDI" / "melody"
    if not folder.is_dir():
        print(f"skipped: {folder} is absent (set MELODYLM_SHARED_DATA)", file=sys.stderr)
        return  # a skip, not a failure: `make bench` goes on to the decoding speed
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            seconds, summary = timed(folder, Path(tmp) / f"w{workers}", workers)
            rows.append([f"cold, {workers} worker{'s' if workers > 1 else ''}", summary["files"],
                         f"{seconds:.1f}", f"{summary['files'] / seconds:.0f}"])
        seconds, summary = timed(folder, Path(tmp) / "w2", 2)
        rows.append(["cached re-run, 2 workers", summary["files"], f"{seconds:.2f}", f"{summary['files'] / seconds:.0f}"])
    print(f"\n{machine()}; {folder} ({summary['used']} used, {summary['quarantined']} quarantined)\n")
    print(table(["run", "files", "seconds", "files/s"], rows))


if __name__ == "__main__":
    main()
