"""RecSys Challenge 2018 metrics on held-out playlists: the model against two baselines.

Title-only task (the challenge's category 1): each test playlist's title goes
in, a ranked list of ``--n`` (500) distinct tracks comes out and is scored
against the playlist's tracks.

- ``popularity``: tracks by how many training playlists hold them.
- ``title_match``: each training playlist votes for its tracks with the
  Jaccard overlap of its title words and the query's; ties (and tracks with
  no vote) by popularity.
- the model: greedy nearest-neighbour decoding, no repeats.

    python -m melodylm.playlist.evaluate --ckpt checkpoints/playlist-nottingham \
        --playlists datasets/playlists/nottingham/playlists.jsonl --out runs/playlist-nottingham.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from melodylm.playlist.data import Catalog, Playlist, read_playlists, split_of, title_words
from melodylm.playlist.metrics import summarize


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


def evaluate(ckpt: str, playlists: str, n: int = 500, val_frac: float = 0.1, test_frac: float = 0.1,
             split: str = "test") -> dict:
    from melodylm.playlist.model import load

    gen = load(ckpt)
    items = read_playlists(playlists, gen.catalog)
    train = [p for p in items if split_of(p.key, val_frac, test_frac) == "train"]
    held = [p for p in items if split_of(p.key, val_frac, test_frac) == split]
    popular = popularity_ranking(train, gen.catalog)
    results = {
        "popularity": summarize([(p.tracks, popular[:n]) for p in held]),
        "title_match": summarize([(p.tracks, title_match_ranking(p.title, train, popular, n)) for p in held]),
        "model": summarize([(p.tracks, gen.generate(p.title, n)) for p in held]),
    }
    return {"split": split, "n": n, "catalog": len(gen.catalog), "train_playlists": len(train),
            "mean_tracks": sum(len(p.tracks) for p in held) / len(held), "ckpt": str(ckpt), "results": results}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m melodylm.playlist.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--playlists", required=True)
    p.add_argument("--n", type=int, default=500, help="length of each ranked list (default 500, as in the challenge)")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    report = evaluate(args.ckpt, args.playlists, args.n, split=args.split)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
