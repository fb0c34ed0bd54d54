"""What the synthetic example sets share: ABC headers, and titled random draws from labelled tunes.

A tune here is a dict with at least ``id`` and ``category`` plus the fields a
playlist title may narrow it by (``key``, ``meter``, ...). Used by
``nottingham.py`` and ``music21set.py``; neither holds listening data.
"""

from __future__ import annotations

import random
import re

MIN_TUNES = 12  # a category, or a key/meter/collection within one, needs this many tunes to title a playlist


def abc_tunes(text: str) -> list[tuple[dict[str, str], str]]:
    """``(header fields, tune text)`` per ``X:`` tune of an ABC file; a field's first line wins."""
    out = []
    for block in re.split(r"\n(?=X:)", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            m = re.match(r"^([A-Z]):\s*(.*)$", line)
            if m and m.group(1) not in fields:
                fields[m.group(1)] = m.group(2).strip()
        if "X" in fields:
            out.append((fields, block))
    return out


def make_playlists(tunes: list[dict], adjectives: dict[str, list[str]],
                   narrowings: list[tuple[str, dict[str, str]]], per_category: int = 60, seed: int = 0) -> list[dict]:
    """Random titled draws of 8-25 tunes from each category, half of them narrowed.

    ``narrowings`` lists ``(field, {value: phrase})``: e.g. ``("key", {"G": "in G"})``
    adds the group "jigs in G" when at least 12 jigs, and under 90% of them,
    have ``key == "G"``. Titles: the group, 70% of the time after one of the
    category's adjectives ("lively jigs in G").
    """
    rng = random.Random(seed)
    by_cat: dict[str, list[dict]] = {}
    for t in tunes:
        by_cat.setdefault(t["category"], []).append(t)
    out = []
    for cat, pool in sorted(by_cat.items()):
        groups = [(cat, pool)]
        for field, phrases in narrowings:
            for value, phrase in phrases.items():
                sub = [t for t in pool if t[field] == value]
                if MIN_TUNES <= len(sub) < len(pool) * 0.9:
                    groups.append((f"{cat} {phrase}", sub))
        count = max(per_category, 2 * len(groups))
        for i in range(count):
            base, members = groups[0] if i % 2 == 0 else groups[rng.randrange(len(groups))]
            title = base if rng.random() < 0.3 else f"{rng.choice(adjectives[cat])} {base}"
            n = rng.randint(min(8, len(members)), min(25, len(members)))
            out.append({"pid": f"{cat}-{i}", "title": title, "tracks": [t["id"] for t in rng.sample(members, n)]})
    return out
