"""A small synthetic playlist set built from the Nottingham Music Database's tune collections.

Not real listening data: every playlist is a random draw of tunes from one
book of the database (jigs, reels, waltzes, hornpipes, Christmas carols, ...),
sometimes narrowed to one key or meter, under a title made from templates
("lively jigs", "waltzes in G", "reels session"). It tests whether a model
maps title words to the right part of a catalog, nothing about taste.

Needs ``../shared/data/nottingham`` (``ABC_cleaned/*.abc`` for titles, keys
and meters; ``MIDI/melody/BOOKN.mid`` is tune ``X: N`` of ``BOOK.abc``),
which a fresh clone does not have (``music21set.py`` builds one that needs
only music21).

    melodylm build-playlists nottingham --data ../shared/data/nottingham --out datasets/playlists/nottingham
"""

from __future__ import annotations

from pathlib import Path

from melodylm.data.playlists import write_jsonl
from melodylm.errors import UserError
from melodylm.playlist.synthetic import abc_tunes, make_playlists

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
KEYS = {"G": "in G", "D": "in D", "A": "in A", "C": "in C", "F": "in F", "Em": "in E minor", "Am": "in A minor",
        "Dm": "in D minor", "Bm": "in B minor", "Edor": "in E dorian", "Ador": "in A dorian"}
METERS = {"6/8": "in 6/8", "4/4": "in common time", "3/4": "in 3/4", "2/4": "in 2/4", "9/8": "in 9/8"}


def read_books(root: Path) -> list[dict]:
    """Every tune with a melody MIDI file: id, title, path, category, key, meter."""
    abc_dir, midi_dir = root / "ABC_cleaned", root / "MIDI" / "melody"
    if not abc_dir.is_dir() or not midi_dir.is_dir():
        raise UserError(f"{root} does not hold ABC_cleaned/ and MIDI/melody/ (the Nottingham Music Database)")
    tunes = []
    for book, (category, _) in BOOKS.items():
        text = (abc_dir / f"{book}.abc").read_text(encoding="latin-1")
        for fields, _ in abc_tunes(text):
            tid = f"{book}{int(fields['X'])}"
            path = midi_dir / f"{tid}.mid"
            if path.is_file():
                tunes.append({"id": tid, "title": fields.get("T", tid), "path": str(path), "book": book,
                              "category": category, "key": fields.get("K", ""), "meter": fields.get("M", "")})
    return tunes


def build(root: str | Path, out: str | Path, per_category: int = 60, seed: int = 0) -> dict:
    tunes = read_books(Path(root))
    adjectives = {cat: adj for cat, adj in BOOKS.values()}
    playlists = make_playlists(tunes, adjectives, [("key", KEYS), ("meter", METERS)], per_category, seed)
    out = Path(out)
    write_jsonl(out / "catalog.jsonl", ({k: t[k] for k in ("id", "path", "title", "category", "key", "meter")}
                                        for t in tunes))
    write_jsonl(out / "playlists.jsonl", playlists)
    return {"tracks": len(tunes), "playlists": len(playlists), "out": str(out)}
