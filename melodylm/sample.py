"""``melodylm sample``: checkpoint -> MIDI files, piano-roll PNGs and JSON sidecars."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from melodylm.errors import UserError
from melodylm.lm import MusicLM, load
from melodylm.render import pianoroll_png, write_midi

log = logging.getLogger(__name__)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder: its best checkpoint, else ``last.ckpt``."""
    path = Path(path)
    if path.is_dir():
        best = sorted(path.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
        last = path / "last.ckpt"
        if best:
            return best[-1]
        if last.is_file():
            return last
        raise UserError(f"no checkpoint (best*.ckpt or last.ckpt) in {path}")
    return path


def write_samples(lm: MusicLM, out: Path, settings: dict, prefix: str = "sample") -> list[dict]:
    """Sample with ``settings`` (MusicLM.sample keyword arguments) and write every output."""
    samples = lm.sample(**settings)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, s in enumerate(samples):
        score = lm.to_score(s.ids)
        stem = out / f"{prefix}-{i:03d}"
        write_midi(score, stem.with_suffix(".mid"))
        pianoroll_png(score, stem.with_suffix(".png"), title=f"{stem.name}  seed={settings.get('seed')}")
        row = {
            "midi": stem.with_suffix(".mid").name, "png": stem.with_suffix(".png").name,
            "index": i, "settings": settings, "tokens": len(s.ids), "notes": score.note_num(),
            "logprob": s.logprob, "ended_with_eos": s.ended,
        }
        stem.with_suffix(".json").write_text(json.dumps(row, indent=1))
        rows.append(row)
    return rows


def main(args) -> None:
    lm = load(resolve_checkpoint(args.ckpt))
    settings = dict(
        num=args.num, max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, min_notes=args.min_notes, greedy=args.greedy, seed=args.seed,
    )
    try:
        rows = write_samples(lm, Path(args.out), settings)
    except ValueError as err:  # a processor refused its setting
        raise UserError(str(err)) from err
    for r in rows:
        log.info("%s  %3d notes  %4d tokens  log p = %.1f nats%s", r["midi"], r["notes"], r["tokens"],
                 r["logprob"], "" if r["ended_with_eos"] else "  (token budget reached)")
    log.info("wrote %d samples (MIDI + piano-roll PNG + JSON) to %s", len(rows), args.out)
