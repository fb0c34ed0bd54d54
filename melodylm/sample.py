"""``melodylm sample``: checkpoint -> MIDI files, piano-roll PNGs, WAVs and JSON sidecars."""

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


def generate(lm: MusicLM, settings: dict, beam: int = 0, length_penalty: float = 1.0):
    """Sample (or beam-search when ``beam`` > 0) with MusicLM keyword ``settings``."""
    try:
        if beam:
            keep = {k: v for k, v in settings.items() if k not in ("num", "seed", "temperature", "top_k", "top_p",
                                                                   "greedy", "repetition_penalty")}
            return lm.beam_search(beam_size=beam, length_penalty=length_penalty, **keep)[: settings.get("num", 1)]
        return lm.sample(**settings)
    except ValueError as err:  # a processor refused its setting, or constraints leave nothing to choose
        raise UserError(str(err)) from err


def write_samples(lm: MusicLM, out: Path, samples, settings: dict, primer: list[int] = (),
                  keep_primer: bool = True, wav: bool = True, prefix: str = "sample") -> list[dict]:
    """Write every sample as MIDI + piano-roll PNG (+ WAV) + a JSON sidecar; returns the sidecars."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, s in enumerate(samples):
        score = lm.to_score(s.ids, primer=primer, keep_primer=keep_primer)
        stem = out / f"{prefix}-{i:03d}"
        write_midi(score, stem.with_suffix(".mid"))
        pianoroll_png(score, stem.with_suffix(".png"), title=f"{stem.name}  seed={settings.get('seed')}")
        row = {
            "midi": stem.with_suffix(".mid").name, "png": stem.with_suffix(".png").name,
            "index": i, "settings": settings, "primer_tokens": len(primer), "tokens": len(s.ids),
            "notes": score.note_num(), "seconds": float(score.to("second").end()),
            "logprob": s.logprob, "stop_reason": s.stop_reason,
            "invalid_token_rate": lm.invalid_token_rate(list(primer) + s.ids),
        }
        if wav:
            from melodylm.audio import render_wav, synthesizer

            render_wav(score, stem.with_suffix(".wav"))
            row.update(wav=stem.with_suffix(".wav").name, synthesizer=synthesizer())
        stem.with_suffix(".json").write_text(json.dumps(row, indent=1))
        rows.append(row)
    return rows


def main(args) -> None:
    lm = load(resolve_checkpoint(args.ckpt))
    primer = lm.primer_ids(args.primer, bars=args.primer_bars) if args.primer else []
    settings = dict(
        num=args.num, max_tokens=args.max_tokens, bars=args.bars, seconds=args.seconds,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, min_notes=args.min_notes, key=args.key,
        pitch_range=args.pitch_range, monophonic=args.monophonic, grammar=False if args.no_grammar else None,
        greedy=args.greedy, seed=args.seed,
    )
    samples = generate(lm, {**settings, "primer": primer}, beam=args.beam, length_penalty=args.length_penalty)
    meta = {**settings, "beam": args.beam, "primer": str(args.primer) if args.primer else None,
            "primer_bars": args.primer_bars}
    rows = write_samples(lm, Path(args.out), samples, meta, primer=primer, keep_primer=not args.drop_primer,
                         wav=not args.no_wav)
    for r in rows:
        log.info("%s  %3d notes  %4d tokens  %5.1f s  log p = %7.1f nats  (%s)", r["midi"], r["notes"],
                 r["tokens"], r["seconds"], r["logprob"], r["stop_reason"])
    log.info("wrote %d samples (MIDI + piano-roll PNG%s + JSON) to %s", len(rows), "" if args.no_wav else " + WAV",
             args.out)
