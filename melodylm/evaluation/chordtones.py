"""Chords -> melody over chord progressions the model never saw: do its melodies sound the chords' tones?

    melodylm evaluate seq2seq progressions --ckpt checkpoints/seq2seq-chords2melody --num 8 --seed 0

The metric is :func:`melodylm.evaluation.sounding.sounding_chord_tone_share`.

``progressions`` conditions the model on each text progression of
:data:`PROGRESSIONS` (pop, jazz ii-V-I, blues, folk, minor, a 3/4 waltz, a 6/8
jig; each played twice), samples ``--num`` melodies per progression with
``melodylm generate``'s default sampling settings and the same seed (so the
melodies are those ``generate`` writes for the same flags), and reports the
share per style and overall, beside two controls: the same melodies against
another progression's chords in the same rhythm (``shuffled``: what a model
deaf to its condition would get), and an unconditional LM's melodies against
the real chords (``--lm``).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from symusic import Score

from melodylm.checkpoint import load
from melodylm.commands import generate
from melodylm.commands.sample import decode, decoding_settings
from melodylm.data.chords import parse_chord_symbols
from melodylm.errors import UserError
from melodylm.evaluation.seq2seq import load_lm_for
from melodylm.evaluation.sounding import sounding_chord_tone_share
from melodylm.progress import progress_bar
from melodylm.render import write_midi

log = logging.getLogger("melodylm")


# --- progressions the model never saw ------------------------------------------------------------------------


@dataclass(frozen=True)
class Progression:
    name: str
    style: str
    chords: str  # played twice
    time_signature: str = "4/4"
    chord_beats: float = 4.0

    @property
    def text(self) -> str:
        return f"{self.chords} {self.chords}"


PROGRESSIONS: list[Progression] = [
    Progression("pop-I-V-vi-IV", "pop", "C G Am F"),
    Progression("pop-G-D-Em-C", "pop", "G D Em C"),
    Progression("ii-V-I-in-C", "jazz", "Dm7 G7 Cmaj7 Cmaj7"),
    Progression("ii-V-I-in-Bb", "jazz", "Cm7 F7 Bbmaj7 Bbmaj7"),
    Progression("12-bar-blues-in-C", "blues", "C7 F7 C7 C7 F7 F7 C7 C7 G7 F7 C7 G7"),
    Progression("folk-in-D", "folk", "D G D A D G A D"),
    Progression("minor-Am-Dm-E7-Am", "minor", "Am Dm E7 Am"),
    Progression("minor-Em-C-D-B7", "minor", "Em C D B7"),
    Progression("waltz-in-F", "waltz", "F C7 C7 F", "3/4", 3.0),
    Progression("jig-in-G", "jig", "G C D G", "6/8", 3.0),
]


def control_for(i: int, progressions: list[Progression] = PROGRESSIONS) -> int:
    """The other progression the ``shuffled`` control scores progression ``i``'s melodies against: the next one in
    the list (cyclically) with the same meter, else the next one with the same chord length (the waltz and the
    jig: a bar of three quarter notes each)."""
    me = progressions[i]
    order = [progressions[(i + k) % len(progressions)] for k in range(1, len(progressions))]
    for same in (lambda p: p.time_signature == me.time_signature, lambda p: p.chord_beats == me.chord_beats):
        match = next((p for p in order if same(p)), None)
        if match is not None:
            return progressions.index(match)
    raise ValueError(f"no progression to control {me.name} with")


def shuffled_text(me: Progression, other: Progression) -> str:
    """``other``'s chord symbols, cycled to as many chords as ``me`` plays (to be written in ``me``'s rhythm)."""
    theirs = [c.symbol for c in parse_chord_symbols(other.text)]
    return " ".join(theirs[i % len(theirs)] for i in range(len(parse_chord_symbols(me.text))))


def generate_defaults() -> argparse.Namespace:
    """``melodylm generate``'s flags at their defaults (its sampling settings, ``--max-tokens``, ``--min-notes``)."""
    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    return parser.parse_args(["--ckpt", "-", "--condition", "-", "--out", "-"])


def sampling_settings(num: int, seed: int, **overrides) -> dict:
    """``MusicLM.sample`` keywords of ``melodylm generate --num NUM --seed SEED`` with ``overrides`` (top_p, ...)."""
    args = generate_defaults()
    args.num, args.seed = num, seed
    for k, v in overrides.items():
        if v is not None:
            setattr(args, k, v)
    return decoding_settings(args)


def _tally(out: dict, key: str, hits_count: tuple[int, int]) -> None:
    hits, count = out.setdefault(key, [0, 0])
    out[key] = [hits + hits_count[0], count + hits_count[1]]


def _shares(tallies: dict) -> dict:
    return {k: {"share": h / n if n else None, "count": n} for k, (h, n) in tallies.items()}


def run_progressions(args) -> dict:
    """``evaluate seq2seq progressions``: the sounding-chord-tone share per style, overall and for the controls."""
    gen = load(args.ckpt, kinds=("seq2seq",))
    if gen.pairs.get("melody") != "target":
        raise UserError("progressions needs a chords -> melody checkpoint")
    lm = load_lm_for(gen, args.lm) if getattr(args, "lm", None) else None
    settings = sampling_settings(args.num, args.seed, top_p=args.top_p, temperature=args.temperature)
    tok, rows, styles, overall = gen.tokenizer, [], {}, {}
    with progress_bar() as bar, torch.inference_mode():
        task = bar.add_task("melodies for unseen progressions", total=len(PROGRESSIONS))
        for i, prog in enumerate(PROGRESSIONS):
            source = gen.condition(prog.text, chord_beats=prog.chord_beats, time_signature=prog.time_signature)
            other = PROGRESSIONS[control_for(i)]
            decoy = gen.condition(shuffled_text(prog, other), chord_beats=prog.chord_beats,
                                  time_signature=prog.time_signature)
            chords, decoy_chords = tok.decode([source]), tok.decode([decoy])
            run = {**settings, **gen.span(source, may_end_early=args.may_end_early)}
            melodies = [s.ids for s in decode(gen.bind(source), run)]
            tallies = {}
            for j, ids in enumerate(melodies):
                melody = tok.decode([ids]) if ids else Score(chords.ticks_per_quarter)
                _tally(tallies, "seq2seq", sounding_chord_tone_share(melody, chords))
                _tally(tallies, "shuffled", sounding_chord_tone_share(melody, decoy_chords))
                if args.out is not None:
                    write_midi(gen.combined_score(source, ids), Path(args.out) / f"{prog.name}-{j:03d}.mid")
            if lm is not None:
                for s in decode(lm, run):
                    if s.ids:
                        _tally(tallies, "lm", sounding_chord_tone_share(tok.decode([s.ids]), chords))
            for key, value in tallies.items():
                _tally(styles.setdefault(prog.style, {}), key, value)
                _tally(overall, key, value)
            rows.append({"name": prog.name, "style": prog.style, "chords": prog.text, "time_signature":
                         prog.time_signature, "chord_beats": prog.chord_beats, "bars": run["bars"],
                         "shuffled_against": other.name, "melodies": len(melodies),
                         "empty_melodies": sum(not ids for ids in melodies), **_shares(tallies)})
            bar.advance(task)
    return {"ckpt": str(args.ckpt), "lm": getattr(args, "lm", None), "num": args.num, "seed": args.seed,
            "settings": {k: settings[k] for k in ("temperature", "top_k", "top_p", "repetition_penalty",
                                                  "min_notes", "max_tokens")},
            "beats": "each bar's first beat, and its middle in 4/4, 6/8, 12/8 (4/4: beats 1, 3; 3/4: 1; 6/8: 1, 2)",
            "overall": _shares(overall), "styles": {k: _shares(v) for k, v in styles.items()}, "progressions": rows}
