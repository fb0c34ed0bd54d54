"""A trained seq2seq generator (chords -> melody, melody -> chords) with its tokenizer, from a checkpoint.

    gen = melodylm.load("checkpoints/seq2seq-chords2melody")
    source = gen.condition("C Am F G", chord_beats=4)     # or a MIDI file: its source part
    waltz = gen.condition("F C7 C7 F", chord_beats=3, time_signature="3/4")
    lm = gen.bind(source)                                  # a MusicLM conditioned on it
    parts = lm.sample(num=4, seed=0, top_p=0.95, **gen.span(source))   # as long as the condition
    gen.combined_score(source, parts[0].ids).dump_midi("out.mid")

The decoding core drives the model through :class:`ConditionedLM`, so sampling,
constraints, the grammar mask, beam search and scoring are those of :class:`MusicLM`.
"""

from __future__ import annotations

from pathlib import Path

from symusic import Score, Track

from melodylm.api.lm import MusicLM
from melodylm.data.chords import beat_labels, chords_to_score, parse_chord_symbols, parse_time_signature, vote_labels
from melodylm.data.midi import MIDI_SUFFIXES, CleanOptions, Rejected, clean_score, read_score
from melodylm.data.pairs import pick_track
from melodylm.data.tokenizer import score_to_ids, tokenizer_from_json
from melodylm.errors import UserError
from melodylm.models.components.seq2seq import ConditionedLM, Seq2Seq


class ConditionalGenerator:
    """A trained seq2seq model with its tokenizer and pair settings (from a checkpoint)."""

    def __init__(self, model: Seq2Seq, tokenizer, prepare: dict):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prepare = prepare
        self.pairs = prepare.get("pairs", {})
        self.source_clean = CleanOptions(**{**prepare.get("source_clean", {}), "min_notes": 1,
                                            "max_seconds": float("inf")})

    @classmethod
    def from_checkpoint(cls, meta: dict, weights: dict) -> "ConditionalGenerator":
        """From a checkpoint's ``melodylm`` block and its module weights (:func:`melodylm.checkpoint.load`)."""
        model = Seq2Seq(**meta["model"])
        model.load_state_dict(weights)
        return cls(model, tokenizer_from_json(meta["tokenizer"]), meta.get("prepare") or {})

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

    def condition(self, condition: str | Path | Score, chord_beats: float = 4.0,
                  time_signature: str = "4/4") -> list[int]:
        """Token ids of a condition: a MIDI path, a Score, or chord symbols as text.

        Chord text is written ``chord_beats`` quarter notes per chord under ``time_signature`` (``"3/4"``,
        ``"6/8"``, ...), which must be one the tokenizer has a token for; a MIDI file or Score keeps its own meter.
        """
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
                picked = pick_track(score, str(self.pairs.get("source")))
                if picked is None:
                    raise UserError(f"{path} has no {self.source_name!r} track to condition on")
                score = picked
        else:
            if not self.takes_chord_text:
                raise UserError(f"this model is conditioned on a {self.source_name} part: give a MIDI file, "
                                "not chord symbols")
            num, den = parse_time_signature(time_signature)  # one the tokenizer has (miditok would write 4/4)
            known = sorted((t[8:] for t in self.tokenizer.vocab if t.startswith("TimeSig_")),
                           key=lambda t: (int(t.split("/")[1]), int(t.split("/")[0])))
            if known and f"{num}/{den}" not in known or not known and (num, den) != (4, 4):
                raise UserError(f"--time-signature {num}/{den} has no token in this model's tokenizer "
                                f"(it knows {', '.join(known) or 'only 4/4'})")
            score = chords_to_score(parse_chord_symbols(str(condition)), beats=chord_beats,
                                    time_signature=time_signature)
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
        return MusicLM(ConditionedLM.from_ids(self.model, [_ints(source_ids)], pad, self.tokenizer), self.tokenizer,
                       self.prepare)

    def bind_many(self, sources: list[list[int]]) -> MusicLM:
        """Like :meth:`bind` for several conditions: ``sample(num=len(sources))`` gives row ``i`` for ``sources[i]``."""
        pad = self.tokenizer.vocab["PAD_None"]
        return MusicLM(ConditionedLM.from_ids(self.model, [_ints(s) for s in sources], pad, self.tokenizer),
                       self.tokenizer, self.prepare)

    def bars(self, ids: list[int]) -> int:
        score = self.tokenizer.decode([_ints(ids)])
        return max(len(score.get_downbeats()), 1) if len(score.time_signatures) else 1

    def span(self, ids: list[int], bars: int | None = None, may_end_early: bool = False) -> dict:
        """How long a part generated for condition ``ids`` runs (``MusicLM.sample`` keywords): ``bars`` bars
        (default: the condition's), and no fewer (the end token banned before them) unless ``may_end_early``."""
        n = bars if bars is not None else self.bars(ids)
        return {"bars": n, "min_bars": None if may_end_early else n}

    def spans(self, conditions: list[list[int]], may_end_early: bool = False) -> dict:
        """:meth:`span` of every condition of a batch, as per-row ``bars`` / ``min_bars`` (``min_bars`` None
        with ``may_end_early``): the ``MusicLM.sample`` keywords of ``bind_many(conditions)``."""
        spans = [self.span(c, may_end_early=may_end_early) for c in conditions]
        return {k: None if spans[0][k] is None else [sp[k] for sp in spans] for k in ("bars", "min_bars")}

    def sample_harmonies(self, melodies: list[list[int]], beats: list[int], votes: int, may_end_early: bool = False,
                         **settings) -> list[list[list[str]]]:
        """For a melody -> chords model: per melody, ``votes`` sampled harmonisations (``MusicLM.sample``
        keywords ``settings``; each spans its melody unless ``may_end_early``), each read as chord labels on its
        ``beats`` quarter-note beats: per melody, ``votes`` label lists."""
        if votes < 1:
            raise UserError(f"votes must be >= 1, got {votes}")
        rows = [m for m in melodies for _ in range(votes)]
        samples = self.bind_many(rows).sample(num=len(rows), **{**settings, **self.spans(rows, may_end_early)})
        labels = [self.chord_labels(s.ids, n) for s, n in zip(samples, (n for n in beats for _ in range(votes)))]
        return [labels[i * votes:(i + 1) * votes] for i in range(len(melodies))]

    def vote_harmonies(self, melodies: list[list[int]], beats: list[int], votes: int, may_end_early: bool = False,
                       **settings) -> list[list[str]]:
        """Per melody, the per-beat vote (:func:`~melodylm.data.chords.vote_labels`) of ``votes`` sampled
        harmonisations (:meth:`sample_harmonies`, the same arguments): one label list per melody."""
        return [vote_labels(h) for h in self.sample_harmonies(melodies, beats, votes, may_end_early, **settings)]

    def chord_labels(self, ids: list[int], beats: int) -> list[str]:
        """A generated chord part's label on each of ``beats`` quarter-note beats (``N`` where nothing sounds)."""
        return beat_labels(self.tokenizer.decode([_ints(ids)]), beats) if len(ids) else ["N"] * beats

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
