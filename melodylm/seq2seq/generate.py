"""``melodylm generate``: a seq2seq checkpoint + a condition -> MIDI (condition and generated part) + PNG + JSON.

The condition is a MIDI file (its source part is picked and cleaned as in
training) or, for a model conditioned on chords, chord symbols as text
(``"C G Am F"``, ``--chord-beats`` quarter notes per chord). The decoding
core drives the model through :class:`ConditionedLM`, so sampling flags,
constraints, the grammar mask and beam search are those of ``melodylm sample``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from symusic import Note, Score, Track

from melodylm.checkpoint import module_state, read_checkpoint
from melodylm.errors import UserError
from melodylm.lm import MusicLM
from melodylm.midi import MIDI_SUFFIXES, CleanOptions, Rejected, clean_score, read_score
from melodylm.models.components.seq2seq import ConditionedLM, Seq2Seq
from melodylm.render import pianoroll_png, write_midi
from melodylm.sample import generate as run_decoder
from melodylm.sample import resolve_checkpoint
from melodylm.seq2seq.chords import chords_to_score, parse_chord_symbols
from melodylm.tokenizer import score_to_ids, tokenizer_from_json

log = logging.getLogger(__name__)


class ConditionalGenerator:
    """A trained seq2seq model with its tokenizer and pair settings (from a checkpoint)."""

    def __init__(self, model: Seq2Seq, tokenizer, prepare: dict):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prepare = prepare
        self.pairs = prepare.get("pairs", {})
        self.source_clean = CleanOptions(**{**prepare.get("source_clean", {}), "min_notes": 1,
                                            "max_seconds": float("inf")})

    @property
    def source_name(self) -> str:
        return str(self.pairs.get("source", "condition"))

    @property
    def target_name(self) -> str:
        return str(self.pairs.get("target", "generated"))

    @property
    def takes_chord_text(self) -> bool:
        """Chord symbols make sense as a condition when the source side is not the melody."""
        return self.pairs.get("melody") != "source"

    def condition(self, condition: str | Path | Score, chord_beats: float = 4.0) -> list[int]:
        """Token ids of a condition: a MIDI path, a Score, or chord symbols as text."""
        if isinstance(condition, Score):
            score = condition
        elif str(condition).lower().endswith(MIDI_SUFFIXES) or Path(str(condition)).is_file():
            path = Path(str(condition))
            if not path.is_file():
                raise UserError(f"condition file {path} does not exist")
            try:
                score = read_score(path.read_bytes())
            except Rejected as rej:
                raise UserError(f"{path}: {rej}") from rej
            if self.pairs.get("layout") == "tracks" and len(score.tracks) > 1:
                from melodylm.seq2seq.pairs import pick_track  # the data module pulls in Lightning: only when needed

                picked = pick_track(score, str(self.pairs.get("source")))
                if picked is None:
                    raise UserError(f"{path} has no {self.source_name!r} track to condition on")
                score = picked
        else:
            if not self.takes_chord_text:
                raise UserError(f"this model is conditioned on a {self.source_name} part: give a MIDI file, "
                                "not chord symbols")
            score = chords_to_score(parse_chord_symbols(str(condition)), beats=chord_beats)
        try:
            score, _ = clean_score(score, self.source_clean)
        except Rejected as rej:
            raise UserError(f"condition: {rej}") from rej
        ids = score_to_ids(self.tokenizer, score)
        if not ids:
            raise UserError("the condition gives no tokens")
        return ids

    def bind(self, source_ids: list[int]) -> MusicLM:
        """A :class:`MusicLM` whose model is this seq2seq conditioned on ``source_ids``: sample, beam-search, score."""
        pad = self.tokenizer.vocab["PAD_None"]
        return MusicLM(ConditionedLM.from_ids(self.model, [_ints(source_ids)], pad), self.tokenizer, self.prepare)

    def bind_many(self, sources: list[list[int]]) -> MusicLM:
        """Like :meth:`bind` for several conditions: ``sample(num=len(sources))`` gives row ``i`` for ``sources[i]``."""
        pad = self.tokenizer.vocab["PAD_None"]
        return MusicLM(ConditionedLM.from_ids(self.model, [_ints(s) for s in sources], pad), self.tokenizer,
                       self.prepare)

    def bars(self, ids: list[int]) -> int:
        score = self.tokenizer.decode([_ints(ids)])
        return max(len(score.get_downbeats()), 1) if len(score.time_signatures) else 1

    def combined_score(self, source_ids: list[int], target_ids: list[int]) -> Score:
        """One MIDI score: the condition as track 0, the generated part as track 1 (named after their sides)."""
        cond = self.tokenizer.decode([_ints(source_ids)])
        gen = self.tokenizer.decode([_ints(target_ids)])
        out = cond.copy()
        out.tracks.clear()
        for name, role, score in ((self.source_name, "condition", cond), (self.target_name, "generated", gen)):
            track = score.tracks[0].copy() if len(score.tracks) else Track()
            track.name = f"{name} ({role})"
            out.tracks.append(track)
        return out


def _ints(ids) -> list[int]:
    """Plain Python ints (miditok reads numpy scalars as token strings)."""
    return [int(i) for i in ids]


def load_generator(path: str | Path) -> ConditionalGenerator:
    """Load a seq2seq checkpoint (``weights_only`` unpickling, no Lightning needed)."""
    ckpt = read_checkpoint(path)
    meta = ckpt["melodylm"]
    if meta.get("kind") != "seq2seq":
        raise UserError(f"{path} holds a {meta.get('kind')!r} model, not a seq2seq generator "
                        "(train one with `melodylm fit --config configs/seq2seq-chords2melody.yaml`)")
    model = Seq2Seq(**meta["model"])
    model.load_state_dict(module_state(ckpt))
    return ConditionalGenerator(model, tokenizer_from_json(meta["tokenizer"]), meta.get("prepare") or {})


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The ``generate`` flags of the condition and the output (the decoding flags are ``melodylm sample``'s:
    :func:`melodylm.cli.add_decoding_arguments`)."""
    s.add_argument("--ckpt", required=True, help="seq2seq checkpoint file, or a run folder (its best, else last.ckpt)")
    s.add_argument("--condition", required=True,
                   help='a MIDI file (its source part), or chord symbols as text, e.g. "C G Am F" '
                   "(for a chords -> melody model)")
    s.add_argument("--chord-beats", type=float, default=4.0, help="quarter notes per text chord symbol (default 4)")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--num", type=int, default=4, help="parts to generate for the condition, in one batch (default 4)")
    s.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same files (default 0)")


def tagger_chords(tagger, melody: Score) -> tuple[list[str], Score]:
    """A chord label per beat of ``melody`` from the bi-LSTM tagger, and the chords as a block-chord track."""
    from melodylm.seq2seq.beats import melody_beat_features, num_beats
    from melodylm.seq2seq.chords import LABELS, parse_chord_symbol

    beats = num_beats(melody)
    with torch.inference_mode():
        logits = tagger(torch.from_numpy(melody_beat_features(melody, beats))[None])
    labels = [LABELS[i] for i in logits[0].argmax(-1).tolist()]
    tpq = melody.ticks_per_quarter
    track = Track(name="chords", program=0)
    start = 0
    for b in range(1, beats + 1):  # one block chord per run of equal labels; N is silence
        if b < beats and labels[b] == labels[start]:
            continue
        if labels[start] != "N":
            for p in parse_chord_symbol(labels[start]).pitches():
                track.notes.append(Note(start * tpq, (b - start) * tpq, p, 70))
        start = b
    out = melody.copy()
    for t in out.tracks:
        t.name = "melody"
    out.tracks.append(track)
    return labels, out


def _tagger_main(args, path: Path) -> int:
    """``generate`` with a chord-tagger checkpoint: one harmonisation per melody (the tagger is deterministic)."""
    from melodylm.seq2seq.evaluate import load_tagger

    tagger = load_tagger(str(path))
    condition = Path(str(args.condition))
    if not condition.is_file():
        raise UserError(f"a chord tagger harmonises a melody: --condition must be a MIDI file ({condition} is not one)")
    try:
        melody, _ = clean_score(read_score(condition.read_bytes()),
                                CleanOptions(min_notes=1, max_seconds=float("inf"), melody=True))
    except Rejected as rej:
        raise UserError(f"{condition}: {rej}") from rej
    labels, score = tagger_chords(tagger, melody)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{condition.stem}-tagger-chords"
    write_midi(score, stem.with_suffix(".mid"))
    pianoroll_png(score, stem.with_suffix(".png"), title=f"{stem.name}  (bi-LSTM tagger)")
    stem.with_suffix(".json").write_text(json.dumps({"midi": stem.with_suffix(".mid").name, "ckpt": str(args.ckpt),
                                                     "condition": str(condition), "chord_per_beat": labels}, indent=1))
    log.info("%s: %d beats, %d chord changes", stem.with_suffix(".mid").name, len(labels),
             sum(a != b for a, b in zip(labels, labels[1:])))
    return 0


def main(args) -> int:
    path = resolve_checkpoint(args.ckpt)
    if read_checkpoint(path)["melodylm"].get("kind") == "chord_tagger":
        return _tagger_main(args, path)
    gen = load_generator(path)
    source = gen.condition(args.condition, chord_beats=args.chord_beats)
    lm = gen.bind(source)
    bars = args.bars if args.bars is not None else gen.bars(source)
    settings = dict(
        num=args.num, max_tokens=args.max_tokens, bars=bars, seconds=args.seconds,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, min_notes=args.min_notes, key=args.key,
        pitch_range=args.pitch_range, monophonic=args.monophonic, grammar=False if args.no_grammar else None,
        greedy=args.greedy, seed=args.seed,
    )
    with torch.inference_mode():
        samples = run_decoder(lm, settings, beam=args.beam, length_penalty=args.length_penalty)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {**settings, "beam": args.beam, "condition": str(args.condition), "chord_beats": args.chord_beats,
            "ckpt": str(args.ckpt)}
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
