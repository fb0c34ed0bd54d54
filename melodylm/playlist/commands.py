"""``melodylm embed`` (song embeddings of a MIDI folder) and ``melodylm playlist`` (a title -> tracks)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from melodylm.errors import UserError

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
    from melodylm.playlist.embed import embed_folder

    out = args.out or args.folder / "embeddings.npz"
    summary = embed_folder(args.ckpt, args.folder, out, limit=args.limit)
    log.info("%d tracks embedded (%d reused from the cache, %d skipped), %d dimensions -> %s",
             summary["tracks"], summary["reused"], len(summary["skipped"]), summary["dim"], summary["out"])
    for tid, why in sorted(summary["skipped"].items()):
        log.info("  skipped %s: %s", tid, why)
    return 0


def _write_concatenated(rows: list[dict], out: Path) -> None:
    from melodylm.render import concatenate, write_midi

    missing = [r["id"] for r in rows if not r["path"] or not Path(r["path"]).is_file()]
    if missing:
        raise UserError(f"no MIDI file for {len(missing)} of the {len(rows)} tracks (first: {missing[0]}); "
                        "an id-only catalog can write .json or .m3u")
    write_midi(concatenate([(f"{r['id']}: {r['title']}", Path(r["path"])) for r in rows]), out)


def playlist_main(args) -> int:
    from melodylm.playlist.model import load

    if args.n < 1:
        raise UserError(f"--n must be >= 1, got {args.n}")
    if args.out is not None and args.out.suffix.lower() not in (".json", ".m3u", ".m3u8", ".mid", ".midi"):
        raise UserError(f"--out must end in .json, .m3u or .mid, got {args.out}")
    gen = load(args.ckpt)
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
