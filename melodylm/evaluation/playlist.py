"""RecSys Challenge 2018 metrics on held-out playlists (``melodylm evaluate playlist``): the model against two
baselines.

Title-only task (the challenge's category 1): each test playlist's title goes
in, a ranked list of ``--n`` (500) distinct tracks comes out and is scored
against the playlist's tracks.

- ``popularity``: tracks by how many training playlists hold them.
- ``title_match``: each training playlist votes for its tracks with the
  Jaccard overlap of its title words and the query's; ties (and tracks with
  no vote) by popularity.
- the model: greedy nearest-neighbour decoding, no repeats.

    melodylm evaluate playlist --ckpt checkpoints/playlist-nottingham \
        --playlists datasets/playlists/nottingham/playlists.jsonl --out runs/playlist-nottingham.json
"""

from __future__ import annotations

import math
from collections import Counter

from melodylm.checkpoint import load, read
from melodylm.data.playlists import Catalog, Playlist, read_playlists, split_of, title_words
from melodylm.errors import UserError


def r_precision(truth: list[str], ranked: list[str]) -> float:
    """|G ∩ R[:|G|]| / |G|."""
    g = set(truth)
    return len(g.intersection(ranked[: len(g)])) / len(g)


def ndcg(truth: list[str], ranked: list[str]) -> float:
    """DCG / IDCG with binary relevance; DCG = rel_1 + Σ_{i≥2} rel_i / log2(i), IDCG over |G ∩ R| hits."""
    g = set(truth)
    rel = [1.0 if t in g else 0.0 for t in ranked]
    hits = int(sum(rel))
    if hits == 0:
        return 0.0
    dcg = rel[0] + sum(r / math.log2(i) for i, r in enumerate(rel[1:], start=2))
    idcg = 1.0 + sum(1.0 / math.log2(i) for i in range(2, hits + 1))
    return dcg / idcg


def clicks(truth: list[str], ranked: list[str], page: int = 10, none: int = 51) -> int:
    """Pages of ``page`` tracks refreshed before the first relevant one: ⌊(index of first hit) / 10⌋; 51 if none."""
    g = set(truth)
    for i, t in enumerate(ranked):
        if t in g:
            return i // page
    return none


def summarize(pairs: list[tuple[list[str], list[str]]]) -> dict[str, float]:
    """Means over playlists of the three metrics, from ``(truth, ranked)`` pairs."""
    n = len(pairs)
    return {
        "r_precision": sum(r_precision(g, r) for g, r in pairs) / n,
        "ndcg": sum(ndcg(g, r) for g, r in pairs) / n,
        "clicks": sum(clicks(g, r) for g, r in pairs) / n,
        "playlists": n,
    }


def popularity_ranking(train: list[Playlist], catalog: Catalog) -> list[str]:
    counts = Counter(t for p in train for t in p.tracks)
    return sorted(catalog.ids, key=lambda t: (-counts[t], catalog.index[t]))


def title_match_ranking(title: str, train: list[Playlist], popular: list[str], n: int) -> list[str]:
    words = title_words(title)
    votes: Counter = Counter()
    for p in train:
        other = title_words(p.title)
        overlap = len(words & other) / len(words | other) if words | other else 0.0
        if overlap:
            for t in p.tracks:
                votes[t] += overlap
    rank = {t: i for i, t in enumerate(popular)}
    return sorted(popular, key=lambda t: (-votes[t], rank[t]))[:n]


def evaluate(ckpt: str, playlists: str, n: int = 500, val_frac: float | None = None, test_frac: float | None = None,
             split: str = "test") -> dict:
    """The three metrics of the model and both baselines on the ``split`` playlists of ``playlists``.

    The split is the one the model was trained with: ``val_frac``/``test_frac`` default to the checkpoint's
    data settings (0.1 each for a checkpoint that does not record them), and so does its ``limit``.
    """
    gen = load(ckpt, kinds=("playlist",))
    trained_with = read(ckpt)["melodylm"].get("data") or {}
    val_frac = trained_with.get("val_frac", 0.1) if val_frac is None else val_frac
    test_frac = trained_with.get("test_frac", 0.1) if test_frac is None else test_frac
    items = read_playlists(playlists, gen.catalog)[: trained_with.get("limit")]
    train = [p for p in items if split_of(p.key, val_frac, test_frac) == "train"]
    held = [p for p in items if split_of(p.key, val_frac, test_frac) == split]
    if not held:
        raise UserError(f"{playlists}: no playlist falls in the {split} split (val_frac {val_frac}, "
                        f"test_frac {test_frac}); evaluate on more playlists")
    popular = popularity_ranking(train, gen.catalog)
    results = {
        "popularity": summarize([(p.tracks, popular[:n]) for p in held]),
        "title_match": summarize([(p.tracks, title_match_ranking(p.title, train, popular, n)) for p in held]),
        "model": summarize([(p.tracks, gen.generate(p.title, n)) for p in held]),
    }
    return {"split": split, "val_frac": val_frac, "test_frac": test_frac, "n": n, "catalog": len(gen.catalog), "train_playlists": len(train),
            "mean_tracks": sum(len(p.tracks) for p in held) / len(held), "ckpt": str(ckpt), "results": results}
