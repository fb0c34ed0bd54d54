"""``melodylm embed`` (song embeddings of a MIDI folder), ``melodylm playlist`` (a title -> tracks) and
``melodylm build-playlists`` (the example playlist sets)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from melodylm.checkpoint import load
from melodylm.commands.args import existing_input
from melodylm.errors import UserError
from melodylm.playlist import music21set, nottingham
from melodylm.playlist.embed import embed_folder
from melodylm.render import concatenate, write_midi

log = logging.getLogger(__name__)


def add_embed_arguments(p) -> None:
    p.add_argument("folder", type=Path, metavar="DIR", help="folder of MIDI files (searched recursively); ids are file names")
    p.add_argument("--ckpt", required=True, help="music LM checkpoint file or run folder")
    p.add_argument("--out", type=Path, default=None, help="embeddings .npz (default DIR/embeddings.npz)")
    p.add_argument("--limit", type=int, default=None, help="only the first N files (quick checks)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")


def add_playlist_arguments(p) -> None:
    p.add_argument("--ckpt", required=True, help="playlist checkpoint file or run folder")
    p.add_argument("--title", required=True, help='playlist title, e.g. "lively jigs"')
    p.add_argument("--n", type=int, default=20, help="tracks in the playlist (default 20; fewer if the catalog is smaller)")
    p.add_argument("--out", type=Path, default=None,
                   help="write .json (ids, titles, paths), .m3u (MIDI paths) or .mid (the tracks' MIDI played one after "
                        "another, a marker naming each; needs a catalog with MIDI paths); default: print")


def embed_main(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or args.folder / "embeddings.npz"
    summary = embed_folder(args.ckpt, args.folder, out, limit=args.limit)
    log.info("%d tracks embedded (%d reused from the cache, %d skipped), %d dimensions -> %s",
             summary["tracks"], summary["reused"], len(summary["skipped"]), summary["dim"], summary["out"])
    for tid, why in sorted(summary["skipped"].items()):
        log.info("  skipped %s: %s", tid, why)
    return 0


def _write_concatenated(rows: list[dict], out: Path) -> None:
    missing = [r["id"] for r in rows if not r["path"] or not Path(r["path"]).is_file()]
    if missing:
        raise UserError(f"no MIDI file for {len(missing)} of the {len(rows)} tracks (first: {missing[0]}); "
                        "an id-only catalog can write .json or .m3u")
    write_midi(concatenate([(f"{r['id']}: {r['title']}", Path(r["path"])) for r in rows]), out)


def playlist_main(args) -> int:
    if args.n < 1:
        raise UserError(f"--n must be >= 1, got {args.n}")
    if args.out is not None and args.out.suffix.lower() not in (".json", ".m3u", ".m3u8", ".mid", ".midi"):
        raise UserError(f"--out must end in .json, .m3u or .mid, got {args.out}")
    gen = load(args.ckpt, kinds=("playlist",))
    tracks = gen.generate(args.title, args.n)
    cat = gen.catalog
    rows = [{"id": t, "title": cat.titles.get(t, t), "path": cat.paths.get(t)} for t in tracks]
    if args.out is None:
        for i, r in enumerate(rows, 1):
            print(f"{i:3d}  {r['id']}  {r['title']}")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix.lower() == ".json":
        args.out.write_text(json.dumps({"title": args.title, "tracks": rows}, indent=2, ensure_ascii=False) + "\n")
    elif args.out.suffix.lower() in (".mid", ".midi"):
        _write_concatenated(rows, args.out)
    else:
        lines = ["#EXTM3U", f"#PLAYLIST:{args.title}"]
        for r in rows:
            lines += [f"#EXTINF:-1,{r['title']}", r["path"] or r["id"]]
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("%d tracks -> %s", len(rows), args.out)
    return 0


def add_build_arguments(p) -> None:
    sub = p.add_subparsers(dest="dataset", metavar="SET", required=True)
    m = sub.add_parser("music21", help="963 titled pieces of music21's own corpus in 25 categories (works offline)",
                       description=music21set.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("--out", type=Path, default=Path("datasets/playlists/music21"),
                   help="output folder (default datasets/playlists/music21)")
    m.add_argument("--max-tunes", type=int, default=40, help="pieces kept per category (default 40)")
    m.add_argument("--per-category", type=int, default=20, help="playlists per category (default 20)")
    m.add_argument("--category", action="append", dest="categories", metavar="NAME",
                   help="only this category (repeatable); default: all of them")
    m.add_argument("--seed", type=int, default=0, help="random seed of the playlist draws (default 0)")
    n = sub.add_parser("nottingham", help="the Nottingham tunes of ../shared/data by book, key and meter",
                       description=nottingham.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    n.add_argument("--data", type=Path, default=Path("../shared/data/nottingham"),
                   help="the Nottingham folder (ABC_cleaned/ and MIDI/; default ../shared/data/nottingham)")
    n.add_argument("--out", type=Path, default=Path("datasets/playlists/nottingham"),
                   help="output folder (default datasets/playlists/nottingham)")
    n.add_argument("--per-category", type=int, default=60, help="playlists per category (default 60)")
    n.add_argument("--seed", type=int, default=0, help="random seed of the playlist draws (default 0)")


def build_main(args) -> int:
    if args.dataset == "music21":
        summary = music21set.build(args.out, args.max_tunes, args.per_category, args.seed, args.categories)
    else:
        existing_input(args.data, "--data")
        summary = nottingham.build(args.data, args.out, args.per_category, args.seed)
    log.info("%s", ", ".join(f"{k}: {v}" for k, v in summary.items()))
    return 0

