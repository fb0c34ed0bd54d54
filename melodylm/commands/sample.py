"""``melodylm sample``: a language-model checkpoint -> MIDI files, piano-roll PNGs, WAVs and JSON sidecars.

Also the decoding flags and settings every command that decodes shares (``generate`` takes them too).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from melodylm.api.lm import MusicLM
from melodylm.checkpoint import LANGUAGE_MODELS, load
from melodylm.commands.args import at_least, output_folder, pitch_range
from melodylm.errors import UserError
from melodylm.render import write_samples

log = logging.getLogger(__name__)


def add_decoding_arguments(parser: argparse.ArgumentParser, max_tokens: int = 512, min_notes: int = 16,
                           bars_help: str = "stop after this many bars of new music", top_p: float = 1.0) -> None:
    """The length, sampling and constraint flags of ``sample``, shared by every command that decodes."""
    g = parser.add_argument_group("length (whichever comes first, besides the model's own end token)")
    g.add_argument("--max-tokens", type=int, default=max_tokens, help=f"token budget per piece (default {max_tokens})")
    g.add_argument("--bars", type=int, default=None, help=bars_help)
    g.add_argument("--seconds", type=float, default=None, help="stop after this many seconds of new music (120 bpm)")
    g = parser.add_argument_group("sampling")
    g.add_argument("--temperature", type=float, default=1.0, help="> 0; below 1 is more conservative (default 1)")
    g.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0: off)")
    g.add_argument("--top-p", type=float, default=top_p, help=f"nucleus sampling mass (1: off; default {top_p:g}); top-k "
                   "and top-p never cut the end token")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages recently used tokens (1: off)")
    g.add_argument("--greedy", action="store_true", help="always take the most likely token")
    g.add_argument("--beam", type=int, default=0, metavar="SIZE", help="beam search with this beam size: the most likely continuations")
    g.add_argument("--length-penalty", type=float, default=1.0, help="beam search: rank by log p / length^this (default 1)")
    g = parser.add_argument_group("constraints (language models over MIDI tokens)")
    g.add_argument("--key", default=None, help='only pitches of this scale, e.g. "D major", "A minor", "E dorian"')
    g.add_argument("--pitch-range", type=pitch_range, default=None, help="LOW:HIGH MIDI pitches allowed, high exclusive")
    g.add_argument("--monophonic", action="store_true", help="one note at a time")
    g.add_argument("--min-notes", type=int, default=min_notes, help=f"forbid ending before this many notes (default {min_notes})")
    g.add_argument("--no-grammar", action="store_true", help="do not mask token successions that cannot decode to MIDI")


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--ckpt", required=True, help="checkpoint file, or a run folder (its best, else last.ckpt); "
                   "a language model or a piano-roll language model")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--num", type=int, default=4, help="pieces to generate, in one batch (default 4)")
    s.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same files (default 0)")
    add_decoding_arguments(s)
    g = s.add_argument_group("primer")
    g.add_argument("--primer", type=Path, default=None, help="MIDI file the samples continue")
    g.add_argument("--primer-bars", type=int, default=None, help="use only the primer's first N bars")
    g.add_argument("--drop-primer", action="store_true", help="write only the continuation, not the primer")
    s.add_argument("--no-wav", action="store_true", help="skip the WAV rendering")


def decoding_settings(args) -> dict:
    """The keyword settings of ``MusicLM.sample`` that the decoding flags ask for."""
    at_least(args.num, 1, "--num")
    at_least(args.max_tokens, 1, "--max-tokens")
    at_least(args.beam, 0, "--beam")
    return dict(
        num=args.num, max_tokens=args.max_tokens, bars=args.bars, seconds=args.seconds,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, min_notes=args.min_notes, key=args.key,
        pitch_range=args.pitch_range, monophonic=args.monophonic, grammar=False if args.no_grammar else None,
        greedy=args.greedy, seed=args.seed,
    )


def decode(lm, settings: dict, beam: int = 0, length_penalty: float = 1.0):
    """Sample (or beam-search when ``beam`` > 0) with ``settings`` (:func:`decoding_settings`)."""
    try:
        if beam:
            keep = {k: v for k, v in settings.items() if k not in ("num", "seed", "temperature", "top_k", "top_p",
                                                                   "greedy", "repetition_penalty")}
            return lm.beam_search(beam_size=beam, length_penalty=length_penalty, **keep)[: settings.get("num", 1)]
        return lm.sample(**settings)
    except ValueError as err:  # a processor refused its setting, or constraints leave nothing to choose
        raise UserError(str(err)) from err


def main(args) -> int:
    settings = decoding_settings(args)
    output_folder(args.out)
    lm = load(args.ckpt, kinds=LANGUAGE_MODELS)
    if args.primer and not isinstance(lm, MusicLM):
        raise UserError("--primer needs a language model over MIDI tokens; this is a piano-roll model")
    primer = lm.primer_ids(args.primer, bars=args.primer_bars) if args.primer else []
    samples = decode(lm, {**settings, "primer": primer}, beam=args.beam, length_penalty=args.length_penalty)
    meta = {**settings, "beam": args.beam, "primer": str(args.primer) if args.primer else None,
            "primer_bars": args.primer_bars}
    rows = write_samples(lm, output_folder(args.out), samples, meta, primer=primer, keep_primer=not args.drop_primer,
                         wav=not args.no_wav)
    for r in rows:
        log.info("%s  %3d notes  %4d tokens  %5.1f s  log p = %7.1f nats  (%s)", r["midi"], r["notes"],
                 r["tokens"], r["seconds"], r["logprob"], r["stop_reason"])
    log.info("wrote %d samples (MIDI + piano-roll PNG%s + JSON) to %s", len(rows), "" if args.no_wav else " + WAV",
             args.out)
    return 0
