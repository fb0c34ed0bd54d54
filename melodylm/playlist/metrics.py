"""RecSys Challenge 2018 metrics for one playlist: R-precision, NDCG and recommended-songs clicks.

``truth`` is the held-out tracks G, ``ranked`` the recommendation list R, best
first (the challenge asks for 500 tracks). Track matches only: the
challenge's artist credit in R-precision does not apply to catalogs without
artists.
"""

from __future__ import annotations

import math


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
