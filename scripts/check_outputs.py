"""Checks that `make smoke` runs on what each step wrote: it must exist and parse, not just exit 0.

    check_outputs.py midi FILE_OR_DIR...        every MIDI file (a folder: its *.mid) parses and has notes
    check_outputs.py json FILE KEY...           a JSON object holding each KEY (dots go deeper: rows.0.nll_note)
    check_outputs.py jsonl FILE KEY...          every line a JSON object holding each KEY
    check_outputs.py m3u FILE                   an extended M3U with at least one entry
    check_outputs.py npz FILE KEY...            a NumPy archive holding each KEY, none empty

Exit status 1 and one line naming the file and what is wrong when a check fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fail(path, why: str) -> None:
    sys.exit(f"check: {path}: {why}")


def midi(paths: list[str]) -> str:
    from symusic import Score

    files = []
    for p in map(Path, paths):
        files += sorted(p.glob("*.mid")) if p.is_dir() else [p]
        if p.is_dir() and not any(p.glob("*.mid")):
            fail(p, "no .mid file")
    for f in files:
        if not f.is_file():
            fail(f, "missing")
        try:
            notes = Score(str(f)).note_num()
        except Exception as err:  # whatever symusic raises: the file is not MIDI we can read
            fail(f, f"does not parse as MIDI ({err})")
        if notes == 0:
            fail(f, "MIDI without notes")
    return f"{len(files)} MIDI files with notes"


def dig(obj, key: str, path):
    for part in key.split("."):
        if isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            fail(path, f"no {key!r}")
    return obj


def load_json(path: Path, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        fail(path, f"not JSON ({err})")


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    kind, target, keys = argv[0], Path(argv[1]), argv[2:]
    if kind == "midi":
        print(midi(argv[1:]))
        return
    if not target.is_file() or target.stat().st_size == 0:
        fail(target, "missing or empty")
    if kind == "json":
        obj = load_json(target, target.read_text())
        values = [dig(obj, k, target) for k in keys]
        print(f"{target.name}: " + ", ".join(f"{k}={v if not isinstance(v, (dict, list)) else type(v).__name__}"
                                          for k, v in zip(keys, values)))
    elif kind == "jsonl":
        lines = [ln for ln in target.read_text().splitlines() if ln.strip()]
        for line in lines:
            row = load_json(target, line)
            for k in keys:
                dig(row, k, target)
        print(f"{target.name}: {len(lines)} lines with {', '.join(keys)}")
    elif kind == "m3u":
        lines = target.read_text().splitlines()
        entries = [ln for ln in lines if ln and not ln.startswith("#")]
        if not lines or lines[0] != "#EXTM3U" or not entries:
            fail(target, "not an extended M3U with entries")
        print(f"{target.name}: {len(entries)} entries")
    elif kind == "npz":
        import numpy as np

        with np.load(target) as archive:
            for k in keys:
                if k not in archive or archive[k].size == 0:
                    fail(target, f"no {k!r} (or empty)")
            print(f"{target.name}: " + ", ".join(f"{k} {archive[k].shape}" for k in keys))
    else:
        sys.exit(f"check: unknown kind {kind!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
