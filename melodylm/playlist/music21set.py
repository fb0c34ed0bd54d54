"""A synthetic playlist set from titled collections that ship with music21: no download needed.

Not real listening data: every playlist is a random draw of 8-25 pieces from
one category, sometimes narrowed to a key, meter or source collection, under
a templated title ("lively jigs", "irish slow airs in G", "sacred songs from lorraine").
The categories are the labels the corpus files carry:

- tune types of the fiddle collections, from the ABC ``R:`` field (Ryan's
  Mammoth Collection, O'Neill's Music of Ireland) or the title (Aird's Airs):
  jigs, reels, hornpipes, strathspeys, slip jigs, marches, ...; O'Neill's
  untyped tunes marked slow (``N: "Slow"``) are "slow airs";
- song functions of the Essen folksong collection (``R:``, in German or
  Chinese): Christmas carols, lullabies, ballads, love songs, xiaodiao, ...;
- whole collections of part music: Bach chorales, Monteverdi madrigals,
  Palestrina mass movements, Trecento pieces.

Categories are read from ABC headers and file names, not by parsing; only
the pieces kept (at most ``--max-tunes`` per category, a seeded random
choice) are parsed and written as MIDI (all parts, by ``melodylm.data.corpus``).
It tests whether a model maps title words to the right part of a catalog,
nothing about taste.

    melodylm build-playlists music21 --out datasets/playlists/music21
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

from melodylm.data.playlists import write_jsonl
from melodylm.errors import UserError
from melodylm.playlist.synthetic import MIN_TUNES, abc_tunes, make_playlists

log = logging.getLogger(__name__)

CATEGORIES = {  # category -> adjectives that fit it
    "jigs": ["lively", "bouncy", "irish", "session", "quick"],
    "reels": ["fast", "driving", "session", "lively", "energetic"],
    "slip jigs": ["lilting", "graceful", "irish"],
    "hornpipes": ["sailors'", "stately", "dotted", "session"],
    "strathspeys": ["scottish", "snappy", "highland"],
    "clog dances": ["stomping", "american", "old-time"],
    "highland flings": ["scottish", "wild", "lively"],
    "marches": ["military", "regimental", "quick", "parade"],
    "slow airs": ["irish", "plaintive", "tender", "quiet"],
    "christmas carols": ["festive", "winter", "traditional", "cosy"],
    "lullabies": ["sleepy", "gentle", "bedtime", "soft"],
    "children's songs": ["playground", "simple", "nursery", "happy"],
    "wedding songs": ["festive", "village", "joyful"],
    "farewell songs": ["sad", "parting", "wistful"],
    "soldiers' songs": ["marching", "old", "army"],
    "sacred songs": ["devout", "sunday", "pious"],
    "humorous songs": ["funny", "jolly", "silly"],
    "love songs": ["tender", "romantic", "heartfelt"],
    "ballads": ["narrative", "old", "dark", "story"],
    "chinese ditties": ["han", "little", "folk"],
    "chinese mountain songs": ["han", "rustic", "folk"],
    "bach chorales": ["four-part", "lutheran", "baroque", "sunday"],
    "monteverdi madrigals": ["italian", "renaissance", "five-voice"],
    "palestrina masses": ["renaissance", "sacred", "latin", "polyphonic"],
    "trecento music": ["medieval", "italian", "14th-century"],
}
TUNE_TYPES = [  # (pattern in an ABC R: field or title, category): the first match wins
    (r"slip ?jig", "slip jigs"), (r"\bjigg?s?\b", "jigs"), (r"\breels?\b", "reels"),
    (r"\bhornpipes?\b", "hornpipes"), (r"\bstrathspeys?\b", "strathspeys"), (r"\bclog\b", "clog dances"),
    (r"\bfling\b", "highland flings"), (r"\bmarch\b|quick ?step", "marches"),
]
SONG_TYPES = [  # (pattern in an Essen R: field, category): the first match wins
    (r"weihnacht", "christmas carols"), (r"wiegen", "lullabies"), (r"kinder", "children's songs"),
    (r"hochzeit", "wedding songs"), (r"abschied", "farewell songs"), (r"soldaten|kriegs", "soldiers' songs"),
    (r"geistlich|religi", "sacred songs"),
    (r"xiaodiao", "chinese ditties"), (r"shange", "chinese mountain songs"), (r"scherz", "humorous songs"),
    (r"liebe", "love songs"), (r"ballade", "ballads"),
]
ESSEN_BOOKS = ["altdeu10", "altdeu20", "ballad10", "ballad20", "ballad30", "ballad40", "ballad50", "ballad60",
               "ballad70", "ballad80", "boehme10", "boehme20", "dva0", "erk5", "erk10", "erk20", "erk30", "fink0",
               "han1", "han2", "irl", "kinder0", "lot", "lux", "zuccal0"]  # not the test*/variant files
SCORE_COLLECTIONS = {  # music21 corpus folder -> (file suffix, category)
    "bach": (".mxl", "bach chorales"), "monteverdi": (".mxl", "monteverdi madrigals"),
    "palestrina": (".krn", "palestrina masses"), "trecento": (".xml", "trecento music"),
}
KEYS = {"G": "in G", "D": "in D", "A": "in A", "C": "in C", "F": "in F", "Bb": "in B flat", "Eb": "in E flat",
        "Em": "in E minor", "Am": "in A minor", "Dm": "in D minor", "Gm": "in G minor", "Bm": "in B minor",
        "Edor": "in E dorian", "Ador": "in A dorian", "Ddor": "in D dorian", "Amix": "in A mixolydian",
        "Dmix": "in D mixolydian", "Gmix": "in G mixolydian"}
METERS = {"6/8": "in 6/8", "4/4": "in common time", "2/2": "in cut time", "3/4": "in 3/4", "2/4": "in 2/4",
          "9/8": "in 9/8", "12/8": "in 12/8", "3/8": "in 3/8", "3/2": "in 3/2"}
COLLECTIONS = {"oneills1850": "from o'neill's", "ryansMammoth": "from ryan's mammoth",
               "airdsAirs": "from aird's airs", "han": "from china", "lux": "from luxembourg",
               "lot": "from lorraine"}
NARROWINGS = [("key", KEYS), ("meter", METERS), ("collection", COLLECTIONS)]


def abc_key(text: str) -> str:
    """An ABC ``K:`` field in the short form KEYS uses: ``"G"``, ``"Em"``, ``"Ador"``; ``""`` if none."""
    m = re.match(r"([A-G][b#]?)\s*(major|maj|ionian|ion|mixolydian|mix|minor|min|aeolian|aeo|dorian|dor|m)?",
                 text.strip(), re.I)
    if not m:
        return ""
    mode = (m.group(2) or "").lower()[:3]
    mode = {"maj": "", "ion": "", "min": "m", "aeo": "m", "m": "m"}.get(mode, mode)
    return m.group(1)[0].upper() + m.group(1)[1:] + mode


def abc_meter(text: str) -> str:
    text = text.replace(" ", "")
    return {"C": "4/4", "C|": "2/2"}.get(text, text)


def _id(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9]+", "_", p).strip("_") for p in parts)


def _first_match(patterns: list[tuple[str, str]], text: str) -> str | None:
    return next((cat for pattern, cat in patterns if re.search(pattern, text, re.I)), None)


def _abc_file(root: Path, rel: str) -> list[tuple[dict[str, str], str]]:
    return abc_tunes((root / rel).read_text(encoding="latin-1"))


def read_fiddle_tunes(root: Path) -> list[dict]:
    """Ryan's, O'Neill's and Aird's tunes that have a tune type (or are O'Neill's slow airs)."""
    tunes = []
    for collection in ("ryansMammoth", "oneills1850", "airdsAirs"):
        for path in sorted((root / collection).glob("*.abc")):
            for fields, block in _abc_file(root, f"{collection}/{path.name}"):
                title = fields.get("T", "")
                category = _first_match(TUNE_TYPES, fields.get("R") or (title if collection == "airdsAirs" else ""))
                if category is None and collection == "oneills1850" and re.search(r"^N:.*\bslow", block, re.I | re.M):
                    category = "slow airs"
                number = re.sub(r"\D", "", fields["X"]) or "0"
                tid = {"ryansMammoth": _id("ryans", path.stem), "oneills1850": f"oneills-{int(number):04d}",
                       "airdsAirs": _id("aird", path.stem, f"{int(number):04d}")}[collection]
                if category:
                    tunes.append({"id": tid, "title": title or tid, "category": category, "collection": collection,
                                  "key": abc_key(fields.get("K", "")), "meter": abc_meter(fields.get("M", "")),
                                  "abc": block})
    return tunes


def read_essen_songs(root: Path) -> list[dict]:
    """Essen folksongs whose ``R:`` field names one of SONG_TYPES."""
    tunes = []
    for book in ESSEN_BOOKS:
        for fields, block in _abc_file(root, f"essenFolksong/{book}.abc"):
            category = _first_match(SONG_TYPES, fields.get("R", ""))
            if category:
                tid, title = _id("essen", book, fields["X"]), fields.get("T", "")
                tunes.append({"id": tid, "title": (title.capitalize() if title.isupper() else title) or tid,
                              "category": category,
                              "collection": re.sub(r"\d", "", book), "key": abc_key(fields.get("K", "")),
                              "meter": abc_meter(fields.get("M", "")), "abc": block})
    return tunes


def score_title(path: Path) -> str:
    """A part-music piece's title from its file name (Monteverdi: from the analysis file next to it)."""
    folder, stem = path.parent.name, path.stem
    if folder == "bach":
        return "BWV " + stem.removeprefix("bwv")
    analysis = path.with_suffix(".rntxt")
    if folder == "monteverdi" and analysis.is_file():
        m = re.search(r"^Title:\s*(.+)$", analysis.read_text(encoding="utf-8", errors="replace"), re.M)
        if m:
            return m.group(1).strip()
    return re.sub(r"[_-]+", " ", re.sub(r"^(PMFC|Fava)[_\d]*-?", "", stem)).strip() or stem


def read_scores(root: Path) -> list[dict]:
    """The part-music collections, one piece per file (no key or meter: they are not read before parsing)."""
    return [{"id": _id(folder, path.stem), "title": score_title(path), "category": category, "collection": folder,
             "key": "", "meter": "", "source": str(path)}
            for folder, (suffix, category) in SCORE_COLLECTIONS.items()
            for path in sorted((root / folder).glob(f"*{suffix}"))]


def read_corpus(categories: list[str] | None = None) -> list[dict]:
    """Every candidate piece with its category, deduplicated by id (the first copy wins)."""
    from music21 import common

    root = Path(common.getCorpusFilePath())
    if not (root / "ryansMammoth").is_dir():
        raise UserError(f"{root} is not music21's core corpus (is music21 installed with its corpus?)")
    unknown = sorted(set(categories or []) - set(CATEGORIES))
    if unknown:
        raise UserError(f"unknown category {unknown[0]!r} (choose from: {', '.join(CATEGORIES)})")
    seen: dict[str, dict] = {}
    for tune in read_fiddle_tunes(root) + read_essen_songs(root) + read_scores(root):
        if categories is None or tune["category"] in categories:
            seen.setdefault(tune["id"], tune)
    return list(seen.values())


def write_midi(tune: dict, path: Path) -> bool:
    """Parse one piece (its ABC text or its file) and write all its parts as MIDI; False if that fails."""
    from music21 import converter

    from melodylm.data.corpus import write_score_midi

    try:
        score = converter.parse(tune["abc"], format="abc") if "abc" in tune else converter.parse(tune["source"])
        if hasattr(score, "scores"):  # an ABC opus of one tune
            score = score.scores[0]
        if write_score_midi(score, path) > 0:
            return True
    except Exception as err:  # one broken piece must not stop the build; it is left out
        log.info("%s: %s: %s", tune["id"], type(err).__name__, err)
    path.unlink(missing_ok=True)
    return False


def choose_and_write(tunes: list[dict], midi_dir: Path, max_tunes: int, seed: int) -> list[dict]:
    """Up to ``max_tunes`` pieces per category (seeded shuffle, unparsable ones skipped), written as MIDI."""
    from melodylm.progress import progress_bar

    by_cat: dict[str, list[dict]] = {}
    for t in sorted(tunes, key=lambda t: t["id"]):
        by_cat.setdefault(t["category"], []).append(t)
    midi_dir.mkdir(parents=True, exist_ok=True)
    kept, failed = [], 0
    with progress_bar() as bar:
        task = bar.add_task("music21 -> MIDI", total=sum(min(max_tunes, len(p)) for p in by_cat.values()))
        for cat, pool in sorted(by_cat.items()):
            random.Random(f"{seed}:{cat}").shuffle(pool)  # one stream per category: adding one changes no other
            chosen = []
            for tune in pool:
                if len(chosen) == max_tunes:
                    break
                path = midi_dir / f"{tune['id']}.mid"
                if write_midi(tune, path):
                    chosen.append({**tune, "path": str(path)})
                    bar.advance(task)
                else:
                    failed += 1
            if len(chosen) >= MIN_TUNES:
                kept += chosen
            else:
                log.warning("category %r left out: %d usable pieces (< %d)", cat, len(chosen), MIN_TUNES)
                for tune in chosen:
                    Path(tune["path"]).unlink()
    if failed:
        log.warning("%d pieces music21 could not convert were skipped (others of their category taken instead)", failed)
    return kept


def build(out: str | Path, max_tunes: int = 40, per_category: int = 20, seed: int = 0,
          categories: list[str] | None = None) -> dict:
    """Write ``midi/*.mid``, ``catalog.jsonl`` and ``playlists.jsonl`` under ``out``; returns a summary."""
    if max_tunes < MIN_TUNES:
        raise UserError(f"--max-tunes must be at least {MIN_TUNES} (a category needs that many pieces)")
    out = Path(out)
    tunes = choose_and_write(read_corpus(categories), out / "midi", max_tunes, seed)
    if not tunes:
        raise UserError("no category has enough usable pieces")
    playlists = make_playlists(tunes, CATEGORIES, NARROWINGS, per_category, seed)
    write_jsonl(out / "catalog.jsonl", ({k: t[k] for k in ("id", "path", "title", "category", "collection", "key",
                                                           "meter")} for t in tunes))
    write_jsonl(out / "playlists.jsonl", playlists)
    return {"tracks": len(tunes), "categories": len({t["category"] for t in tunes}), "playlists": len(playlists),
            "out": str(out)}
