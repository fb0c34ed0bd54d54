"""A small synthetic playlist set built from the Nottingham Music Database's tune collections.

Not real listening data: every playlist is a random draw of tunes from one
book of the database (jigs, reels, waltzes, hornpipes, Christmas carols, ...),
sometimes narrowed to one key or meter, under a title made from templates
("lively jigs", "waltzes in G", "reels session"). It tests whether a model
maps title words to the right part of a catalog, nothing about taste.

Needs ``../shared/data/nottingham`` (``ABC_cleaned/*.abc`` for titles, keys
and meters; ``MIDI/melody/BOOKN.mid`` is tune ``X: N`` of ``BOOK.abc``),
which a fresh clone does not have.

    python -m melodylm.playlist.nottingham --data ../shared/data/nottingham --out datasets/playlists/nottingham
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from melodylm.errors import UserError
from melodylm.playlist.data import write_jsonl

BOOKS = {  # ABC file stem -> (category name, adjectives that fit it)
    "jigs": ("jigs", ["lively", "bouncy", "irish", "session", "quick", "fast"]),
    "reelsa-c": ("reels", ["fast", "driving", "session", "lively", "energetic"]),
    "reelsd-g": ("reels", ["fast", "driving", "session", "lively", "energetic"]),
    "reelsh-l": ("reels", ["fast", "driving", "session", "lively", "energetic"]),
    "reelsm-q": ("reels", ["fast", "driving", "session", "lively", "energetic"]),
    "reelsr-t": ("reels", ["fast", "driving", "session", "lively", "energetic"]),
    "reelsu-z": ("reels", ["fast", "driving", "session", "lively", "energetic"]),
    "waltzes": ("waltzes", ["slow", "gentle", "dreamy", "romantic", "evening"]),
    "xmas": ("christmas carols", ["festive", "winter", "traditional", "cosy"]),
    "hpps": ("hornpipes", ["sailors'", "stately", "dotted", "english"]),
    "morris": ("morris dances", ["english", "village", "spring", "may day"]),
    "slip": ("slip jigs", ["lilting", "graceful", "irish"]),
    "playford": ("playford dances", ["country", "old english", "ballroom", "baroque"]),
    "ashover": ("ashover tunes", ["derbyshire", "village", "old", "english"]),
}
KEYS = {"G": "G", "D": "D", "A": "A", "C": "C", "F": "F", "Em": "E minor", "Am": "A minor", "Dm": "D minor",
        "Bm": "B minor", "Edor": "E dorian", "Ador": "A dorian"}
METERS = {"6/8": "6/8", "4/4": "common time", "3/4": "3/4", "2/4": "2/4", "9/8": "9/8"}


def read_books(root: Path) -> list[dict]:
    """Every tune with a melody MIDI file: id, title, path, category, key, meter."""
    abc_dir, midi_dir = root / "ABC_cleaned", root / "MIDI" / "melody"
    if not abc_dir.is_dir() or not midi_dir.is_dir():
        raise UserError(f"{root} does not hold ABC_cleaned/ and MIDI/melody/ (the Nottingham Music Database)")
    tunes = []
    for book, (category, _) in BOOKS.items():
        text = (abc_dir / f"{book}.abc").read_text(encoding="latin-1")
        for block in re.split(r"\n(?=X:)", text):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                m = re.match(r"^([XTKM]):\s*(.*)$", line)
                if m and m.group(1) not in fields:
                    fields[m.group(1)] = m.group(2).strip()
            if "X" not in fields:
                continue
            tid = f"{book}{int(fields['X'])}"
            path = midi_dir / f"{tid}.mid"
            if path.is_file():
                tunes.append({"id": tid, "title": fields.get("T", tid), "path": str(path), "book": book,
                              "category": category, "key": fields.get("K", ""), "meter": fields.get("M", "")})
    return tunes


def make_playlists(tunes: list[dict], per_category: int = 60, seed: int = 0) -> list[dict]:
    """Random titled draws from each category (and from its keys and meters with at least 12 tunes)."""
    rng = random.Random(seed)
    by_cat: dict[str, list[dict]] = {}
    for t in tunes:
        by_cat.setdefault(t["category"], []).append(t)
    adjectives = {cat: adj for cat, adj in BOOKS.values()}
    out = []
    for cat, pool in sorted(by_cat.items()):
        groups = [(cat, pool)]
        for key, name in KEYS.items():
            sub = [t for t in pool if t["key"] == key]
            if len(sub) >= 12:
                groups.append((f"{cat} in {name}", sub))
        for meter, name in METERS.items():
            sub = [t for t in pool if t["meter"] == meter]
            if 12 <= len(sub) < len(pool) * 0.9:
                groups.append((f"{cat} in {name}", sub))
        count = max(per_category, 2 * len(groups))
        for i in range(count):
            base, members = groups[0] if i % 2 == 0 else groups[rng.randrange(len(groups))]
            title = base if rng.random() < 0.3 else f"{rng.choice(adjectives[cat])} {base}"
            n = rng.randint(min(8, len(members)), min(25, len(members)))
            out.append({"pid": f"{cat}-{i}", "title": title, "tracks": [t["id"] for t in rng.sample(members, n)]})
    return out


def build(root: str | Path, out: str | Path, per_category: int = 60, seed: int = 0) -> dict:
    tunes = read_books(Path(root))
    playlists = make_playlists(tunes, per_category, seed)
    out = Path(out)
    write_jsonl(out / "catalog.jsonl", ({k: t[k] for k in ("id", "path", "title", "category", "key", "meter")}
                                        for t in tunes))
    write_jsonl(out / "playlists.jsonl", playlists)
    return {"tracks": len(tunes), "playlists": len(playlists), "out": str(out)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m melodylm.playlist.nottingham", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data/nottingham"))
    p.add_argument("--out", type=Path, default=Path("datasets/playlists/nottingham"))
    p.add_argument("--per-category", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(build(args.data, args.out, args.per_category, args.seed))


if __name__ == "__main__":
    main()
