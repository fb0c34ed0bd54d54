"""The seq2seq numbers in docs/seq2seq.md, each from one command over the fixed test split.

    melodylm evaluate seq2seq nll --ckpt checkpoints/seq2seq-chords2melody --lm checkpoints/seq2seq-lm-melody
    melodylm evaluate seq2seq harmony --ckpt checkpoints/seq2seq-melody2chords --tagger checkpoints/seq2seq-tagger
    melodylm evaluate seq2seq harmony --ckpt checkpoints/seq2seq-melody2chords --tagger checkpoints/seq2seq-tagger --votes 16
    melodylm evaluate seq2seq harmony --ckpt checkpoints/seq2seq-tagger
    melodylm evaluate seq2seq chordtones --ckpt checkpoints/seq2seq-chords2melody --lm checkpoints/seq2seq-lm-melody

- ``nll``: test NLL (nats per target token, EOS included) of the target given
  the condition, scored by the decoding core, beside an unconditional LM on the
  same test targets.
- ``harmony``: chord accuracy per beat (quarter note) of melody -> chords,
  and mir_eval's ``majmin`` and ``sevenths`` chord scores over the same beats,
  for the seq2seq model (greedy decoding, or with ``--votes N`` each beat's
  most frequent chord over N sampled harmonisations), the beat tagger, the
  two blended (with ``--tagger`` and ``--votes N``: per beat, the tagger's
  probability plus ``--blend`` times the share of the N samples, argmax), and
  the most-frequent chord of the training split; ``--ckpt`` may also be a
  chord tagger's checkpoint (then the tagger beside the constant).
- ``chordtones``: for chords -> melody, the share of melody notes with an
  onset on a strong beat (the bar's first beat, and its middle in 4/4, 6/8,
  12/8) whose pitch class sounds in the chord part at that moment (notes where
  no chord sounds are not counted), for real and generated melodies; beside
  it the sounding-chord-tone share of :mod:`melodylm.evaluation.chordtones`
  (the note sounding at each strong beat, held notes included), whose
  ``evaluate seq2seq progressions`` runs the model over unseen progressions.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import torch

from melodylm.api.seq2seq import ConditionalGenerator
from melodylm.api.tagger import BLEND_WEIGHT
from melodylm.checkpoint import load
from melodylm.commands.args import at_least
from melodylm.data.beats import num_beats
from melodylm.data.chords import beat_labels, mir_eval_label, sounding_pitch_classes, vote_labels
from melodylm.data.pairs import Pair, PairSettings, build_pairs
from melodylm.data.tokenizer import SpecialIds, build_tokenizer, fingerprint
from melodylm.decoding.core import Decoder
from melodylm.errors import UserError
from melodylm.evaluation.sounding import sounding_chord_tone_share
from melodylm.models.components.seq2seq import ConditionedLM
from melodylm.progress import progress_bar

log = logging.getLogger("melodylm")


def test_pairs(model, cache_dir: str = "datasets/seq2seq", root: str | None = None,
               split: str = "test", limit: int | None = None) -> list[Pair]:
    """The pairs of ``split`` of a seq2seq model or chord tagger (``model.pairs``: its settings, so the same
    tunes), optionally the first ``limit``."""
    fields = dict(model.pairs)
    if root is not None:
        fields["root"] = root
    fields["pitch_range"] = tuple(fields.get("pitch_range", (21, 109)))
    pairs, _ = build_pairs(PairSettings(**fields), cache_dir)
    chosen = [p for p in pairs if p.split == split]
    return chosen[:limit] if limit else chosen


# --- NLL ------------------------------------------------------------------------------------------------


def seq2seq_nll(gen: ConditionalGenerator, pairs: list[Pair], batch: int = 8) -> tuple[float, int]:
    """Total NLL (nats) of every target ``[*target, EOS]`` given its condition, and the token count."""
    special = SpecialIds(gen.tokenizer)
    total, count = 0.0, 0
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i].target) + len(pairs[i].source))
    with torch.inference_mode():
        for b in range(0, len(order), batch):
            chunk = [pairs[i] for i in order[b : b + batch]]
            cond = ConditionedLM.from_ids(gen.model, [p.source.tolist() for p in chunk], special.pad, gen.tokenizer)
            decoder = Decoder(cond, special.bos, special.eos, special.pad)
            for lp in decoder.token_logprobs([p.target.tolist() for p in chunk]):
                total -= float(lp.sum())
                count += len(lp)
    return total, count


def lm_nll(lm, pairs: list[Pair], batch: int = 8) -> tuple[float, int]:
    """Total NLL (nats) of the same targets under an unconditional language model, and the token count."""
    total, count = 0.0, 0
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i].target))
    for b in range(0, len(order), batch):
        for lp in lm.decoder.token_logprobs([pairs[i].target.tolist() for i in order[b : b + batch]]):
            total -= float(lp.sum())
            count += len(lp)
    return total, count


def load_lm_for(gen: ConditionalGenerator, path: str):
    """The unconditional LM at ``path``, refused unless it shares the seq2seq model's tokenizer."""
    lm = load(path, kinds=("language_model",))
    if fingerprint(lm.tokenizer) != fingerprint(gen.tokenizer):
        raise UserError(f"{path} uses another tokenizer than the seq2seq checkpoint: NLLs would not compare")
    return lm


def run_nll(args) -> dict:
    gen = load(args.ckpt, kinds=("seq2seq",))
    pairs = test_pairs(gen, args.cache_dir, args.root, split=args.split, limit=args.limit)
    s_total, s_count = seq2seq_nll(gen, pairs)
    out = {"task": f"{gen.source_name} -> {gen.target_name}", "pairs": len(pairs), "tokens": s_count,
           "seq2seq_nll_token": s_total / s_count}
    if args.lm:
        l_total, l_count = lm_nll(load_lm_for(gen, args.lm), pairs)
        assert l_count == s_count
        out["lm_nll_token"] = l_total / l_count
    return out


# --- harmonisation ----------------------------------------------------------------------------------------


def accuracy(pred: list[str], real: list[str]) -> tuple[int, int, int, int]:
    """Right and total beats, and the same over beats where a chord really sounds (not ``N``)."""
    right = sum(p == r for p, r in zip(pred, real))
    chord = [(p, r) for p, r in zip(pred, real) if r != "N"]
    return right, len(real), sum(p == r for p, r in chord), len(chord)


def chord_scores(pred: list[str], real: list[str]) -> dict[str, float | None]:
    """mir_eval.chord ``majmin`` and ``sevenths`` of per-beat labels (beat ``i`` = ``[i, i+1)`` quarter notes),
    duration-weighted; reference beats outside a vocabulary (``dim`` in both) are left out, as mir_eval does."""
    import mir_eval.chord  # imported here: it is slow to import, and only this needs it

    ref, est = [mir_eval_label(x) for x in real], [mir_eval_label(x) for x in pred]
    intervals = np.stack([np.arange(len(ref)), np.arange(len(ref)) + 1], axis=1).astype(float)
    durations = mir_eval.util.intervals_to_durations(intervals)
    out = {}
    for name, compare in (("majmin", mir_eval.chord.majmin), ("sevenths", mir_eval.chord.sevenths)):
        comparisons = compare(ref, est) if ref else np.zeros(0)
        valid = (comparisons >= 0).any()  # else mir_eval warns and gives 0
        out[name] = float(mir_eval.chord.weighted_accuracy(comparisons, durations)) if valid else None
    return out


def run_harmony(args) -> dict:
    model = load(args.ckpt, kinds=("seq2seq", "chord_tagger"))
    gen = model if isinstance(model, ConditionalGenerator) else None
    if gen is not None and gen.pairs.get("melody") != "source":
        raise UserError("harmony needs a melody -> chords checkpoint (a seq2seq model or a chord tagger)")
    if gen is None and not model.pairs:
        raise UserError(f"{args.ckpt} does not record the pairs it was trained on: train it again with melodylm fit")
    votes = at_least(getattr(args, "votes", 1), 1, "--votes")
    blend = getattr(args, "blend", None)
    if gen is None and (votes > 1 or args.tagger):
        raise UserError("--votes and --tagger go with a seq2seq checkpoint: a chord tagger labels each beat once")
    if blend is not None and not (args.tagger and votes > 1):
        raise UserError("--blend weighs the --votes N samples against the --tagger's choice: give both")
    blend = BLEND_WEIGHT if blend is None else at_least(blend, 0, "--blend")
    tagger = model if gen is None else load(args.tagger, kinds=("chord_tagger",)) if args.tagger else None
    tok = gen.tokenizer if gen is not None else build_tokenizer("REMI", tuple(model.pairs.get("pitch_range", (21, 109))))
    train = test_pairs(model, args.cache_dir, args.root, split="train")
    counts = Counter()
    for p in train:
        melody, chords = tok.decode([p.source.tolist()]), tok.decode([p.target.tolist()])
        counts.update(x for x in beat_labels(chords, num_beats(melody, chords)) if x != "N")
    most_frequent = counts.most_common(1)[0][0]
    pairs = test_pairs(model, args.cache_dir, args.root, split=args.split, limit=args.limit)
    tallies = {k: np.zeros(4, dtype=np.int64) for k in ("seq2seq", "tagger", "blend", "most_frequent")}
    beats_seen = {k: ([], []) for k in tallies}  # (predicted, real) labels of every test beat, for mir_eval
    tunes = {}  # name -> (melody, real chords, quarter-note beats): the generated part is read on those beats
    for p in pairs:
        melody, chords = tok.decode([p.source.tolist()]), tok.decode([p.target.tolist()])
        tunes[p.name] = melody, chords, num_beats(melody, chords)
    generated = seq2seq_harmonies(gen, pairs, tunes, votes, args) if gen is not None else {}
    for p in pairs:
        melody, chords, beats = tunes[p.name]
        real = beat_labels(chords, beats)
        guesses = {"most_frequent": [most_frequent] * beats}
        if gen is not None:
            guesses["seq2seq"] = vote_labels(generated[p.name])
        if tagger is not None:
            guesses["tagger"] = tagger.label_beats(melody, beats)
        if tagger is not None and votes > 1 and gen is not None:
            guesses["blend"] = tagger.label_beats(melody, beats, generated[p.name], blend)
        for k, guess in guesses.items():
            tallies[k] += accuracy(guess, real)
            beats_seen[k][0].extend(guess)
            beats_seen[k][1].extend(real)
    out = {"pairs": len(pairs), "beats": int(tallies["most_frequent"][1]),
           "chord_beats": int(tallies["most_frequent"][3]), "most_frequent_chord": most_frequent}
    if gen is not None:
        out["decoding"] = f"vote of {votes} samples at top-p {args.top_p:g}" if votes > 1 else "greedy"
    if tallies["blend"][1]:
        out["blend_weight"] = blend  # blend: argmax of the tagger's probability + weight x the vote share
    for k, (r, n, rc, nc) in tallies.items():
        if n:
            out[k] = {"accuracy": r / n, "accuracy_chord_beats": rc / nc if nc else float("nan"),
                      **chord_scores(*beats_seen[k])}
    return out


def seq2seq_harmonies(gen: ConditionalGenerator, pairs: list[Pair], tunes: dict, votes: int, args) -> dict:
    """Name -> the seq2seq model's harmonisations of each pair's melody, as chord labels per beat: the greedy
    one, or ``votes`` samples; a batch of melodies per decoder call."""
    generated = {}
    with progress_bar() as bar:
        task = bar.add_task("harmonising test melodies", total=len(pairs))
        for b, chunk in enumerate(_batches(pairs, max(args.batch // votes, 1))):
            budget = max(2 * len(p.target) for p in chunk) + 64
            beats = [tunes[p.name][2] for p in chunk]
            if votes > 1:
                labels = gen.sample_harmonies([p.source.tolist() for p in chunk], beats, votes, args.may_end_early,
                                              seed=args.seed + b, top_p=args.top_p, max_tokens=budget)
            else:
                samples = gen.bind_many([p.source for p in chunk]).sample(
                    num=len(chunk), greedy=True, max_tokens=budget, **_limits(gen, chunk, args.may_end_early))
                labels = [[gen.chord_labels(s.ids, n)] for s, n in zip(samples, beats)]
            generated.update((p.name, x) for p, x in zip(chunk, labels))
            bar.advance(task, len(chunk))
    return generated


# --- chord tones on strong beats -------------------------------------------------------------------------


def strong_beat_ticks(score) -> set[int]:
    """Ticks of strong beats: every bar's first beat, and its middle in 4/4, 6/8, 12/8 (and 4/2, 6/4, ...)."""
    if not len(score.time_signatures):
        return set()
    downbeats = np.asarray(score.get_downbeats(), dtype=np.int64)
    sigs = sorted((int(ts.time), ts.numerator, ts.denominator) for ts in score.time_signatures)
    tpq = score.ticks_per_quarter
    out = set()
    for d in downbeats:
        active = [s for s in sigs if s[0] <= d]
        num, den = (active[-1][1], active[-1][2]) if active else (4, 4)
        out.add(int(d))
        if num in (4, 6, 12):
            out.add(int(d + num * tpq * 4 // den // 2))
    return out


def chord_tone_counts(melody, chords) -> tuple[int, int]:
    """(strong-beat melody notes that are tones of the sounding chord, strong-beat notes with a chord sounding)."""
    strong = strong_beat_ticks(chords if len(chords.time_signatures) else melody)
    notes = [(int(t), int(p)) for tr in melody.tracks for t, p in zip(tr.notes.numpy()["time"], tr.notes.numpy()["pitch"])
             if int(t) in strong]
    if not notes:
        return 0, 0
    sounding = sounding_pitch_classes(chords, np.array([t for t, _ in notes], dtype=np.int64))
    hits = [p % 12 in pcs for (_, p), (pcs, _) in zip(notes, sounding) if pcs]
    return sum(hits), len(hits)


def run_chordtones(args) -> dict:

    def counts(melody, chords):  # strong-beat onsets on chord tones, then sounding notes on chord tones
        return (*chord_tone_counts(melody, chords), *sounding_chord_tone_share(melody, chords))

    gen = load(args.ckpt, kinds=("seq2seq",))
    if gen.pairs.get("melody") != "target":
        raise UserError("chordtones needs a chords -> melody checkpoint")
    tok = gen.tokenizer
    lm = load_lm_for(gen, args.lm) if args.lm else None
    pairs = test_pairs(gen, args.cache_dir, args.root, split=args.split, limit=args.limit)
    tallies = {k: np.zeros(4, dtype=np.int64) for k in ("real", "seq2seq", "lm")}
    with progress_bar() as bar:  # one melody per test chord part, a batch of chord parts per decoder call
        task = bar.add_task("melodies for test chord parts", total=len(pairs))
        for b, chunk in enumerate(_batches(pairs, args.batch)):
            settings = dict(num=len(chunk), seed=args.seed + b, top_p=args.top_p,
                            max_tokens=max(2 * len(p.target) for p in chunk) + 64,
                            **_limits(gen, chunk, args.may_end_early))
            ours = gen.bind_many([p.source for p in chunk]).sample(**settings)
            theirs = lm.sample(**settings) if lm is not None else [None] * len(chunk)
            for p, s, u in zip(chunk, ours, theirs):
                chords, melody = tok.decode([p.source.tolist()]), tok.decode([p.target.tolist()])
                tallies["real"] += counts(melody, chords)
                if s.ids:  # notes past the end of the chord part have no chord and are not counted
                    tallies["seq2seq"] += counts(tok.decode([s.ids]), chords)
                if u is not None and u.ids:
                    tallies["lm"] += counts(tok.decode([u.ids]), chords)
            bar.advance(task, len(chunk))
    out = {"pairs": len(pairs), "top_p": args.top_p, "seed": args.seed}
    for k, (hit, n, sounding_hit, sounding_n) in tallies.items():
        if n or sounding_n:
            out[k] = {"chord_tone_share": hit / n if n else None, "strong_beat_notes": int(n),
                      "sounding_chord_tone_share": sounding_hit / sounding_n if sounding_n else None,
                      "strong_beats_counted": int(sounding_n)}
    return out


def _limits(gen: ConditionalGenerator, chunk: list[Pair], may_end_early: bool) -> dict:
    """:meth:`ConditionalGenerator.spans` of the conditions of ``chunk``."""
    return gen.spans([p.source.tolist() for p in chunk], may_end_early)


def _batches(pairs: list[Pair], size: int) -> list[list[Pair]]:
    """Pairs in batches of similar condition length (less padding in the encoder memory)."""
    order = sorted(pairs, key=lambda p: len(p.source))
    return [order[i : i + size] for i in range(0, len(order), size)]
