"""``melodylm generate``: a seq2seq checkpoint + a condition -> MIDI (condition and generated part) + PNG + JSON.

The condition is a MIDI file (its source part is picked and cleaned as in
training) or, for a model conditioned on chords, chord symbols as text
(``"C G Am F"``, ``--chord-beats`` quarter notes per chord, in the meter
``--time-signature``, 4/4 by default). The decoding
flags, constraints, the grammar mask and beam search are those of ``melodylm
sample``. A chord-tagger checkpoint harmonises a melody file instead, alone or
(``--seq2seq CKPT --votes N``) helped by N harmonisations sampled from a
melody -> chords seq2seq model.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from melodylm.api.tagger import BLEND_WEIGHT
from melodylm.checkpoint import kind_of, load, resolve
from melodylm.commands.args import at_least, output_folder
from melodylm.commands.sample import add_decoding_arguments, decode, decoding_settings
from melodylm.data.beats import num_beats
from melodylm.data.chords import labels_to_track, parse_time_signature
from melodylm.data.midi import CleanOptions, Rejected, clean_score, read_score
from melodylm.errors import UserError
from melodylm.render import pianoroll_png, write_midi

log = logging.getLogger(__name__)


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The ``generate`` flags: the condition, the output, and the decoding flags of ``melodylm sample``."""
    s.add_argument("--ckpt", required=True, help="seq2seq checkpoint file, or a run folder (its best, else last.ckpt)")
    s.add_argument("--condition", required=True,
                   help='a MIDI file (its source part), or chord symbols as text, e.g. "C G Am F" '
                   "(for a chords -> melody model)")
    s.add_argument("--chord-beats", type=float, default=4.0,
                   help="quarter notes per text chord symbol, whatever the meter (default 4; 3 for a bar of 3/4 "
                   "or of 6/8)")
    s.add_argument("--time-signature", default="4/4", metavar="N/D",
                   help="meter of the chord text's condition, e.g. 3/4, 6/8, 2/4, 5/4, 12/8 (default 4/4); one the "
                   "model's tokenizer knows. A MIDI condition keeps its own meter")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--num", type=int, default=4, help="parts to generate for the condition, in one batch (default 4)")
    s.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same files (default 0)")
    # top-p 0.95: the share of a Nottingham validation melody's strong beats on chord tones is then the real
    # melodies' (0.885 against 0.883; 0.868 at 1, 0.899 at 0.9: docs/seq2seq.md)
    add_decoding_arguments(s, max_tokens=1024, min_notes=1, top_p=0.95,
                           bars_help="stop after this many bars (default: the condition's bars)")
    s.add_argument("--votes", type=int, default=1,
                   help="melody -> chords: sample this many harmonisations and write one, each beat's most frequent "
                   "chord (default 1: every sample is written as it is)")
    s.add_argument("--seq2seq", default=None, metavar="CKPT",
                   help="with a chord-tagger --ckpt: a melody -> chords seq2seq checkpoint whose --votes N sampled "
                   "harmonisations join the tagger's choice, per beat the tagger's probability + --blend x their "
                   "share (docs/seq2seq.md: 16 votes)")
    s.add_argument("--blend", type=float, default=None, metavar="W",
                   help="with --seq2seq: the weight of the samples' share against the tagger's probability "
                   "(default 1, chosen on the Nottingham validation split)")
    s.add_argument("--may-end-early", action="store_true",
                   help="let the model end the part before --bars (by default the end token is banned until the "
                   "part reaches its last bar, so it spans the whole condition)")


def _tagger_main(args, path: Path) -> int:
    """``generate`` with a chord-tagger checkpoint: one harmonisation per melody (the tagger is deterministic)."""
    tagger = load(path)
    condition = Path(str(args.condition))
    if not condition.is_file():
        raise UserError(f"a chord tagger harmonises a melody: --condition must be a MIDI file ({condition} is not one)")
    try:
        melody, _ = clean_score(read_score(condition.read_bytes()),
                                CleanOptions(min_notes=1, max_seconds=float("inf"), melody=True))
    except Rejected as rej:
        raise UserError(f"{condition}: {rej}") from rej
    samples = _seq2seq_samples(args, melody) if args.seq2seq else None
    weight = BLEND_WEIGHT if args.blend is None else args.blend
    labels, score = tagger.harmonise(melody, samples, weight)
    out = output_folder(args.out)
    stem = out / (f"{condition.stem}-tagger-chords" + (f"-blend{args.votes}" if samples else ""))
    write_midi(score, stem.with_suffix(".mid"))
    what = f"bi-LSTM tagger + {args.votes} seq2seq samples, seed={args.seed}" if samples else "bi-LSTM tagger"
    pianoroll_png(score, stem.with_suffix(".png"), title=f"{stem.name}  ({what})")
    row = {"midi": stem.with_suffix(".mid").name, "ckpt": str(args.ckpt), "condition": str(condition)}
    if samples:
        row.update(seq2seq=str(args.seq2seq), votes=args.votes, blend=weight, seed=args.seed)
    stem.with_suffix(".json").write_text(json.dumps({**row, "chord_per_beat": labels}, indent=1))
    log.info("%s: %d beats, %d chord changes", stem.with_suffix(".mid").name, len(labels),
             sum(a != b for a, b in zip(labels, labels[1:])))
    return 0


def _seq2seq_samples(args, melody) -> list[list[str]]:
    """``--votes`` harmonisations of ``melody`` sampled from the ``--seq2seq`` checkpoint, as labels per beat."""
    if args.votes < 2:
        raise UserError(f"--seq2seq blends the tagger with sampled harmonisations: give --votes N >= 2 (16 in "
                        f"docs/seq2seq.md), got {args.votes}")
    gen = load(args.seq2seq, kinds=("seq2seq",))
    if gen.pairs.get("melody") != "source":
        raise UserError(f"--seq2seq needs a melody -> chords checkpoint; {args.seq2seq} generates a {gen.target_name} "
                        f"part from {gen.source_name}")
    source = gen.condition(melody)
    settings = {k: v for k, v in decoding_settings(args).items() if k != "num"}
    with torch.inference_mode():
        return gen.sample_harmonies([source], [num_beats(melody)], args.votes, args.may_end_early, **settings)[0]


def _vote_main(args, gen, source: list[int]) -> int:
    """``generate --votes N`` with a melody -> chords checkpoint: one harmonisation, voted beat by beat."""
    at_least(args.votes, 1, "--votes")
    if gen.pairs.get("melody") != "source":
        raise UserError("--votes needs a melody -> chords checkpoint (it votes on chord labels)")
    if args.bars is not None or args.beam:
        raise UserError("--votes samples harmonisations that span the melody: it takes neither --bars nor --beam")
    melody = gen.tokenizer.decode([source])
    settings = {k: v for k, v in decoding_settings(args).items() if k != "num"}
    with torch.inference_mode():
        labels = gen.vote_harmonies([source], [num_beats(melody)], args.votes, args.may_end_early, **settings)[0]
    score = gen.combined_score(source, [])
    score.tracks[-1] = labels_to_track(labels, score.ticks_per_quarter, name=f"{gen.target_name} (generated)")
    out = output_folder(args.out)
    stem = out / f"{gen.source_name}2{gen.target_name}-vote{args.votes}"
    write_midi(score, stem.with_suffix(".mid"))
    pianoroll_png(score, stem.with_suffix(".png"), title=f"{stem.name}  seed={args.seed}")
    stem.with_suffix(".json").write_text(json.dumps({"midi": stem.with_suffix(".mid").name, "ckpt": str(args.ckpt),
                                                     "condition": str(args.condition), "votes": args.votes,
                                                     "seed": args.seed, "chord_per_beat": labels}, indent=1))
    log.info("%s: %d beats voted over %d samples", stem.with_suffix(".mid").name, len(labels), args.votes)
    return 0


def main(args) -> int:
    parse_time_signature(args.time_signature)  # bad chord-text settings are refused before the checkpoint is read
    if not args.chord_beats > 0:
        raise UserError(f"--chord-beats must be > 0, got {args.chord_beats}")
    if args.blend is not None:
        if not args.seq2seq:
            raise UserError("--blend weighs the samples of --seq2seq CKPT --votes N against a chord tagger's choice")
        at_least(args.blend, 0, "--blend")
    path = resolve(args.ckpt)
    if kind_of(path) == "chord_tagger":
        if args.votes != 1 and not args.seq2seq:
            raise UserError("a chord tagger labels each beat once: --votes goes with --seq2seq (or a seq2seq --ckpt)")
        return _tagger_main(args, path)
    if args.seq2seq:
        raise UserError("--seq2seq goes with a chord-tagger --ckpt (the tagger blended with the seq2seq samples)")
    gen = load(path, kinds=("seq2seq", "chord_tagger"))
    source = gen.condition(args.condition, chord_beats=args.chord_beats, time_signature=args.time_signature)
    if args.votes != 1:
        return _vote_main(args, gen, source)
    lm = gen.bind(source)
    settings = decoding_settings(args)
    settings.update(gen.span(source, args.bars, args.may_end_early))
    with torch.inference_mode():
        samples = decode(lm, settings, beam=args.beam, length_penalty=args.length_penalty)
    out = output_folder(args.out)
    meta = {**settings, "beam": args.beam, "condition": str(args.condition), "chord_beats": args.chord_beats,
            "time_signature": args.time_signature, "ckpt": str(args.ckpt)}
    for i, s in enumerate(samples):
        score = gen.combined_score(source, s.ids)
        stem = out / f"{gen.source_name}2{gen.target_name}-{i:03d}"
        write_midi(score, stem.with_suffix(".mid"))
        pianoroll_png(score, stem.with_suffix(".png"), title=f"{stem.name}  seed={args.seed}")
        row = {"midi": stem.with_suffix(".mid").name, "png": stem.with_suffix(".png").name, "index": i,
               "settings": meta, "condition_tokens": len(source), "tokens": len(s.ids),
               "notes": score.tracks[-1].note_num() if len(score.tracks) > 1 else 0,
               "logprob": s.logprob, "stop_reason": s.stop_reason,
               "invalid_token_rate": lm.invalid_token_rate(s.ids)}
        stem.with_suffix(".json").write_text(json.dumps(row, indent=1))
        log.info("%s  %3d notes  %4d tokens  log p = %7.1f nats  (%s)", row["midi"], row["notes"], row["tokens"],
                 row["logprob"], row["stop_reason"])
    log.info("wrote %d parts (MIDI with the condition and the generated part + piano-roll PNG + JSON) to %s",
             len(samples), out)
    return 0
