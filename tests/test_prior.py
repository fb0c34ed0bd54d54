"""The LM as a transcription prior: note scores, N-best rescoring, beam decoding of posteriorgrams.

None of these needs the transcribe extra (basic-pitch): posteriorgrams are
synthetic, built from real melodies (music21's O'Neill's 1850) with
distractor pitches. Known LM scores come from a small interval Markov model
written as a melodylm-style recurrent module (``forward`` and ``step`` with a
carried state), so the one decoding core runs it like the LSTM.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from symusic import Score

from conftest import run_cli
from melodylm.errors import UserError
from melodylm.api.lm import MusicLM
from melodylm.models.components.rnn_lm import RecurrentLM
from melodylm.prior import (Grid, Note, Posteriorgram, SegmentOptions, acoustic_only, decode, hold_repeats, note_ids,
                            note_logprob, notes_to_score, read_nbest, rescore, score_to_notes, segments)
from melodylm.prior.decode import Durations, distinct_onsets, segment_chunks
from melodylm.prior.posteriors import Candidate, Segment
from melodylm.data.tokenizer import build_tokenizer

C_MAJOR = {0, 2, 4, 5, 7, 9, 11}


class IntervalLM(torch.nn.Module):
    """A Markov model of melodic intervals over REMI tokens: known log-probabilities, no training loop.

    Non-pitch tokens get logit 0 (uniform among themselves); a Pitch token
    gets ``table[interval]`` from the previous pitch (``first`` for the first
    note). The state, a 1-tuple of ``(1, batch, 1)``, holds the previous pitch (-1: none).
    """

    def __init__(self, tokenizer, table: dict[int, float], first: float = 0.0, other: float = -8.0):
        super().__init__()
        vocab = tokenizer.vocab
        self.vocab_size = len(vocab)
        self.pitch_of = torch.full((self.vocab_size,), -1, dtype=torch.long)
        for tok, i in vocab.items():
            if tok.startswith("Pitch_"):
                self.pitch_of[i] = int(tok.split("_")[1])
        is_pitch = self.pitch_of >= 0
        pitches = self.pitch_of.clamp_min(0)
        # logits[prev_pitch + 1, token]: row 0 is "no previous pitch"
        rows = torch.zeros(129, self.vocab_size)
        for prev in range(-1, 128):
            iv = pitches - prev
            vals = torch.tensor([table.get(int(d), other) for d in iv.tolist()])
            rows[prev + 1] = torch.where(is_pitch, vals if prev >= 0 else torch.full_like(vals, first), 0.0)
        self.register_buffer("rows", rows)

    def step(self, ids: torch.Tensor, state=None):
        prev = state[0][0, :, 0].long() if state is not None else torch.full(ids.shape, -1)
        p = self.pitch_of[ids]
        prev = torch.where(p >= 0, p, prev)
        return self.rows[prev + 1], (prev.float().view(1, -1, 1),)

    def forward(self, ids: torch.Tensor, state=None):
        out = []
        for t in range(ids.shape[1]):
            logits, state = self.step(ids[:, t], state)
            out.append(logits)
        return torch.stack(out, 1), state


def interval_table(melodies: list[list[int]]) -> dict[int, float]:
    """Add-one smoothed log-frequencies of melodic intervals in -24..24 (as logits)."""
    counts = {d: 1.0 for d in range(-24, 25)}
    for pitches in melodies:
        for a, b in zip(pitches, pitches[1:]):
            if -24 <= b - a <= 24:
                counts[b - a] += 1
    total = sum(counts.values())
    return {d: math.log(c / total) for d, c in counts.items()}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("REMI")


@pytest.fixture(scope="module")
def stepwise_lm(tokenizer) -> MusicLM:
    """Steps of 1-2 semitones likely, repeats possible, leaps rare: a hand-made 'musical' prior."""
    table = {0: -2.0, 1: -1.0, -1: -1.0, 2: -1.0, -2: -1.0}
    return MusicLM(IntervalLM(tokenizer, table, other=-8.0), tokenizer)


@pytest.fixture(scope="module")
def lstm_lm(tokenizer) -> MusicLM:
    torch.manual_seed(0)
    return MusicLM(RecurrentLM(len(tokenizer), 16, 24, 2), tokenizer)


def quarter_notes(pitches: list[int], start: float = 0.0, dur: float = 0.5) -> list[Note]:
    return [Note(start + i * dur, start + (i + 1) * dur, p) for i, p in enumerate(pitches)]


def posteriorgram_from(notes: list[Note], distractors: dict[int, list[tuple[int, float]]], fps: float = 100.0,
                       true_level: float = 0.8, seed: int = 0) -> Posteriorgram:
    """Note/onset posteriors of ``notes`` plus, per note index, distractor (pitch, level) pairs, plus noise."""
    rng = np.random.default_rng(seed)
    frames = int(max(n.offset for n in notes) * fps) + 10
    note = rng.uniform(0, 0.05, (frames, 88))
    onset = rng.uniform(0, 0.05, (frames, 88))
    for i, n in enumerate(notes):
        a, b = int(round(n.onset * fps)), int(round(n.offset * fps))
        for pitch, level in [(n.pitch, true_level), *distractors.get(i, [])]:
            note[a:b - 1, pitch - 21] = np.maximum(note[a:b - 1, pitch - 21], level)
            onset[a, pitch - 21] = max(onset[a, pitch - 21], level)
    return Posteriorgram(note, onset, fps)


# --- notes <-> scores <-> tokens ---------------------------------------------------------------


def test_notes_score_round_trip():
    notes = [Note(0.5, 1.0, 60), Note(1.0, 1.25, 62), Note(1.25, 2.0, 64), Note(3.0, 3.5, 67)]
    grid = Grid(120, (3, 4))
    score = notes_to_score(notes, grid)
    assert score.time_signatures[0].numerator == 3 and score.tempos[0].qpm == pytest.approx(120)
    assert score_to_notes(score) == notes
    # an origin moves the grid, not the notes
    shifted = Grid(120, (4, 4), origin=0.25)
    assert score_to_notes(notes_to_score([Note(n.onset + 0.25, n.offset + 0.25, n.pitch) for n in notes],
                                         shifted)) == notes


def test_grid_snaps_to_the_scores_grid():
    grid = Grid(120, (4, 4))  # a quarter note is 0.5 s, a sixteenth 0.125 s
    assert grid.tick(1.0 + 0.04) == grid.tick(1.0) == 960  # jitter of a transcribed onset
    assert grid.tick(1.0 + 0.1) == 960 + 120
    assert Grid(120, snap=(4, 3)).tick(1.0 + 0.16) == 960 + 160  # an eighth-note triplet
    assert Grid(120, snap=()).tick(1.0 + 0.04) == 960 + 38
    assert Grid(120, origin=0.5).tick(0.2) == 0  # never before the first downbeat
    assert notes_to_score([Note(1.0, 1.01, 60)], grid).tracks[0].notes[0].duration == grid.min_ticks == 120


def test_grid_refuses_bad_values():
    with pytest.raises(UserError, match="tempo"):
        Grid(0)
    with pytest.raises(UserError, match="time signature"):
        Grid(120, (3, 5))
    with pytest.raises(UserError, match="time signature"):
        Grid.parse_time_signature("waltz")


def test_note_logprob_is_the_decoders_token_sum(lstm_lm):
    notes = quarter_notes([60, 62, 64, 65, 67])
    grid = Grid(120, (4, 4))
    ids = note_ids(lstm_lm.tokenizer, notes, grid)
    expected = float(lstm_lm.decoder.token_logprobs([ids])[0].sum())
    assert note_logprob(lstm_lm, notes, grid) == pytest.approx(expected, abs=1e-5)
    assert len(ids) == 2 * 2 + 5 * 3  # two bars of (Bar, TimeSig), then Position/Pitch/Duration per note


# --- N-best rescoring ---------------------------------------------------------------------------------


def test_rescoring_picks_the_musical_candidate(stepwise_lm):
    grid = Grid(120, (4, 4))
    scale = quarter_notes([60, 62, 64, 65, 67, 65, 64, 62])  # stepwise: likely under the prior
    leaps = quarter_notes([60, 62, 71, 65, 67, 65, 56, 62])  # two wrong-octave-ish leaps: unlikely
    candidates = [(leaps, -10.0), (scale, -11.0)]  # the acoustic model slightly prefers the leaps
    lm_scores = [note_logprob(stepwise_lm, notes, grid) for notes, _ in candidates]
    assert lm_scores[1] > lm_scores[0] + 10  # 2 leaps at -8 vs steps at about -1 (log-softmax-normalised)

    ranked = rescore(stepwise_lm, candidates, grid, lam=1.0)
    assert [r.index for r in ranked] == [1, 0]
    for r in ranked:
        assert r.lm == pytest.approx(lm_scores[r.index], abs=1e-5)
        assert r.total == pytest.approx(candidates[r.index][1] + lm_scores[r.index], abs=1e-5)

    acoustic = rescore(stepwise_lm, candidates, grid, lam=0.0)
    assert [r.index for r in acoustic] == [0, 1]  # λ = 0: the acoustic order
    assert [r.total for r in acoustic] == [-10.0, -11.0]


def test_rescore_refuses_a_negative_weight(stepwise_lm):
    with pytest.raises(UserError, match=">= 0"):
        rescore(stepwise_lm, [(quarter_notes([60]), 0.0)], Grid(), lam=-1)


def test_read_nbest_format_and_errors(tmp_path):
    good = tmp_path / "nbest.jsonl"
    good.write_text(json.dumps({"id": "a", "qpm": 90, "time_signature": "6/8",
                                "candidates": [{"acoustic": -1.5, "notes": [[0, 0.5, 60], [0.5, 1.0, 62]]}]}) + "\n\n")
    (nb,) = read_nbest(good)
    assert nb.id == "a" and nb.grid == Grid(90, (6, 8)) and nb.candidates[0][1] == -1.5
    assert nb.candidates[0][0] == [Note(0.0, 0.5, 60), Note(0.5, 1.0, 62)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text().splitlines()[0] + "\n" + '{"candidates": [{"notes": [[0, 1]]}]}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: not an N-best list"):
        read_nbest(bad)
    bad.write_text('{"candidates": [{"acoustic": 0, "notes": [[1.0, 0.5, 60]]}]}\n')
    with pytest.raises(UserError, match=r":1: a note .* ends before it starts"):
        read_nbest(bad)
    with pytest.raises(UserError, match="does not exist"):
        read_nbest(tmp_path / "missing.jsonl")


# --- segments and decoding ------------------------------------------------------------------------------


def test_segments_find_onsets_and_candidates():
    notes = quarter_notes([60, 64, 67, 72])
    post = posteriorgram_from(notes, {1: [(52, 0.9)]})
    segs = segments(post, SegmentOptions(top_k=3))
    assert [round(s.onset, 2) for s in segs] == [n.onset for n in notes]
    assert [s.candidates[0].pitch for s in segs] == [60, 52, 67, 72]  # the distractor wins acoustically at note 1
    assert 64 in [c.pitch for c in segs[1].candidates]
    assert segs[0].candidates[0].offset == pytest.approx(notes[0].offset - 0.01, abs=0.015)
    shifted = segments(post, SegmentOptions(onset_shift=-0.02))
    assert shifted[1].onset == pytest.approx(segs[1].onset - 0.02)
    assert shifted[0].onset == 0.0  # never before the start


def test_margin_keeps_only_close_rivals():
    notes = quarter_notes([60, 64])
    post = posteriorgram_from(notes, {0: [(67, 0.75)], 1: [(52, 0.1)]})
    segs = segments(post, SegmentOptions(top_k=4, margin=3.0))
    assert [c.pitch for c in segs[0].candidates] == [60, 67]  # 0.8 vs 0.75: a close call, both stay
    assert [c.pitch for c in segs[1].candidates] == [64]  # 0.1 is far below 0.8: the prior may not pick it
    assert len(segments(post, SegmentOptions(top_k=4))[1].candidates) == 4


def test_refine_offsets_follow_the_pitch_and_stop_at_the_next_note():
    from melodylm.prior.posteriors import refine_offsets

    notes = quarter_notes([60, 62, 64])
    post = posteriorgram_from(notes, {})
    post.note[40:100, 60 - 21] = 0.9  # the first note sounds on through the second's onset (legato)
    kept = [Note(0.0, 0.2, 60), Note(1.0, 1.1, 64)]  # the segment at 0.5 s was skipped
    refined = refine_offsets(kept, post)
    assert refined[0].offset == pytest.approx(1.0)  # on to the next kept note, not past it
    assert refined[1].offset == pytest.approx(1.49, abs=0.015)  # where its frames end


def test_skip_scores_follow_the_sustained_pitch():
    sustain = np.full(88, 0.01)
    sustain[60 - 21] = 0.9
    seg = Segment(1.0, 1.5, [Candidate(62, 1.5, -0.5)], skip=-1.0, sustain=sustain)
    assert seg.skip_score(60) == pytest.approx(-1.0 + math.log(0.9 + 1e-4))
    assert seg.skip_score(62) < seg.skip_score(60)
    assert Segment(1.0, 1.5, [], skip=float("-inf")).skip_score(60) == float("-inf")


def _with_skips(notes, extra_onsets, fps=100.0):
    """A posteriorgram whose true notes sustain through accompaniment-like onsets (low, short notes)."""
    post = posteriorgram_from(notes, {}, fps)
    for t in extra_onsets:
        f = int(round(t * fps))
        post.onset[f, 48 - 21] = 0.9
        post.note[f:f + 20, 48 - 21] = 0.9
    return post


def test_lambda_zero_reproduces_the_acoustic_result(lstm_lm):
    notes = quarter_notes([60, 62, 64, 65, 67, 69, 71, 72])
    post = posteriorgram_from(notes, {i: [(p + 5, 0.72 + 0.05 * (i % 3))] for i, p in
                                      enumerate(n.pitch for n in notes)}, seed=1)  # no exact ties
    grid = Grid(120, (4, 4))
    for skip in (None, -1.0):
        segs = distinct_onsets(segments(post, SegmentOptions(top_k=4, skip_logprob=skip)), grid)
        reference = acoustic_only(segs)
        result = decode(lstm_lm, segs, grid, lam=0.0, beam_size=64)
        assert result.notes == reference.notes and result.choices == reference.choices
        assert result.acoustic == pytest.approx(reference.acoustic, abs=1e-4)
        assert result.lm == pytest.approx(note_logprob(lstm_lm, result.notes, grid), abs=1e-4)


def test_decoded_tokens_are_the_tokenizers_and_its_score_the_lms(lstm_lm):
    """Over bar lines, skipped segments and a 6/8 grid: the chunks the beam feeds are note_ids of the result."""
    notes = [Note(0.25 + 0.375 * i, 0.25 + 0.375 * (i + 1), 60 + (i * 5) % 12) for i in range(14)]
    post = _with_skips(notes, [0.25 + 0.375 * 3 + 0.18, 0.25 + 0.375 * 9 + 0.18])
    grid = Grid(120, (6, 8))
    segs = distinct_onsets(segments(post, SegmentOptions(top_k=3, skip_logprob=0.0, log_odds=False)), grid)
    assert len(segs) == len(notes) + 2
    kinds = set()
    for lam, bonus in ((1.0, 0.0), (0.5, 20.0), (0.5, 30.0)):  # an untrained LM: notes cost about 19 nats each
        result = decode(lstm_lm, segs, grid, lam=lam, beam_size=4, note_bonus=bonus)
        kinds.add((min(result.choices), max(result.choices)) if result.notes else "none")
        assert result.lm == pytest.approx(note_logprob(lstm_lm, result.notes, grid), abs=1e-3)
        lead, chunks = segment_chunks(lstm_lm.tokenizer, segs, grid)
        durations = Durations(lstm_lm.tokenizer, grid)
        fed, last = [], -1
        for i, k in enumerate(result.choices):
            if k >= 0:  # the previous note's Duration lasts until this onset: legato, over skipped segments too
                if last >= 0:
                    fed += durations(grid.tick(segs[i].onset) - grid.tick(segs[last].onset))
                fed += [t for s in range(last + 1, i + 1) for t in lead[s]] + chunks[i][k]
                last = i
        if last >= 0:
            fed += durations(grid.tick(segs[last].candidates[result.choices[last]].offset) - grid.tick(segs[last].onset))
        assert fed == note_ids(lstm_lm.tokenizer, result.notes, grid)
        assert all(a.offset == b.onset for a, b in zip(result.notes, result.notes[1:]))
    assert len(kinds) == 3  # nothing kept; some segments skipped; every segment a note


def test_a_repeat_under_an_accompaniment_onset_is_held():
    """An accompaniment onset under a held melody note (the piano doubling its pitch) is not a repeated note."""
    notes = [Note(0.0, 1.0, 67), Note(1.0, 1.5, 65)]
    post = posteriorgram_from(notes, {})
    post.onset[50, [67 - 21, 48 - 21]] = 0.7  # the accompaniment strikes at 0.5 s; 67 still sounds
    post.note[50:70, 48 - 21] = 0.5
    segs = segments(post, SegmentOptions(top_k=3, skip_logprob=None))
    decoded = acoustic_only(segs).notes
    assert [(n.onset, n.pitch) for n in decoded] == [(0.0, 67), (0.5, 67), (1.0, 65)]
    held = hold_repeats(decoded)
    assert [(n.onset, n.offset, n.pitch) for n in held] == [(0.0, 1.0, 67), (1.0, decoded[-1].offset, 65)]
    assert hold_repeats([]) == [] and hold_repeats(notes) == notes
    assert [n.pitch for n in hold_repeats(quarter_notes([60, 60, 62, 60, 60, 60]))] == [60, 62, 60]


def test_decoding_needs_remi_without_bpe(tokenizer):
    tsd = build_tokenizer("TSD")
    seg = Segment(0.0, 0.5, [Candidate(60, 0.5, 0.0)], skip=float("-inf"))
    with pytest.raises(UserError, match="REMI"):
        segment_chunks(tsd, [seg], Grid())
    assert segment_chunks(tokenizer, [], Grid()) == ([], [])


def test_decode_refuses_bad_settings(lstm_lm):
    with pytest.raises(UserError, match="beam size"):
        decode(lstm_lm, [], Grid(), beam_size=0)
    with pytest.raises(UserError, match="LM weight"):
        decode(lstm_lm, [], Grid(), lam=-0.5)
    assert decode(lstm_lm, [], Grid()).notes == []


def _melodies(files) -> list[tuple[list[Note], Grid]]:
    out = []
    for f in files:
        score = Score(str(f))
        notes = score_to_notes(score)
        onsets = sorted({n.onset for n in notes})
        line = [max((n for n in notes if n.onset == t), key=lambda n: n.pitch) for t in onsets]  # melody
        ts = score.time_signatures[0] if len(score.time_signatures) else None
        qpm = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
        if len(line) >= 24:
            out.append((line, Grid(qpm, (ts.numerator, ts.denominator) if ts else (4, 4))))
    return out


def test_prior_recovers_a_real_melody_better_than_acoustics_alone(tokenizer, oneills_midi):
    """Real tunes, each note with a louder-or-close distractor a leap away: the interval prior fixes most."""
    melodies = _melodies(oneills_midi)
    held_out, training = melodies[:4], melodies[4:]
    lm = MusicLM(IntervalLM(tokenizer, interval_table([[n.pitch for n in m] for m, _ in training])), tokenizer)
    rng = np.random.default_rng(0)
    right = {"acoustic": 0, "prior": 0}
    total = 0
    for melody, grid in held_out:
        melody = melody[:40]
        distractors = {}
        for i, n in enumerate(melody):
            leap = int(rng.choice([-9, -7, -5, 5, 7, 9]))
            distractors[i] = [(n.pitch + leap, float(rng.uniform(0.6, 0.95)))]
        post = posteriorgram_from(melody, distractors, true_level=0.75, seed=int(rng.integers(1000)))
        segs = distinct_onsets(segments(post, SegmentOptions(top_k=3, skip_logprob=None)), grid)
        truth = {round(n.onset, 2): n.pitch for n in melody}
        for name, result in (("acoustic", acoustic_only(segs)), ("prior", decode(lm, segs, grid, lam=1.0, beam_size=8))):
            right[name] += sum(truth.get(round(n.onset, 2)) == n.pitch for n in result.notes)
        total += len(melody)
    acc = {k: v / total for k, v in right.items()}
    assert acc["acoustic"] < 0.75  # the distractors do fool the acoustic scores
    assert acc["prior"] > acc["acoustic"] + 0.15, acc
    assert acc["prior"] > 0.85, acc


# --- the command line ------------------------------------------------------------------------------------


def test_transcribe_without_the_extra_says_how_to_install(tmp_path, monkeypatch, capsys):
    from melodylm import cli
    from melodylm.audio import write_pcm16

    wav = write_pcm16(tmp_path / "a.wav", np.zeros(2205), 22050)
    monkeypatch.setitem(sys.modules, "basic_pitch", None)  # as if not installed
    assert cli.main(["transcribe", str(wav), "--no-prior", "--out", str(tmp_path / "a.mid")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("melodylm: error: transcription needs the optional 'transcribe' extra")
    assert "make transcribe-extra" in err and len(err.splitlines()) == 1


def test_transcribe_user_errors(tmp_path, capsys):
    from melodylm import cli

    assert cli.main(["transcribe", str(tmp_path / "none.wav"), "--out", str(tmp_path / "a.mid")]) == 2
    assert "--ckpt is required unless --no-prior" in capsys.readouterr().err
    assert cli.main(["transcribe", str(tmp_path / "none.wav"), "--no-prior", "--out", str(tmp_path / "a.mid")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_rescore_cli_matches_the_api(trained, tmp_path):
    import melodylm
    from melodylm.checkpoint import resolve

    assert resolve(str(trained)).name.startswith("best-epoch")  # a run folder: its best checkpoint
    lm = melodylm.load(resolve(str(trained)))
    grid = Grid(120, (4, 4))
    cands = [(quarter_notes([60, 62, 64, 65]), -3.0), (quarter_notes([60, 61, 70, 45]), -2.5),
             (quarter_notes([67, 65, 64, 62, 60]), -4.0)]
    nbest = tmp_path / "nbest.jsonl"
    line = {"id": "x", "qpm": 120, "time_signature": "4/4",
            "candidates": [{"acoustic": a, "notes": [[n.onset, n.offset, n.pitch] for n in notes]} for notes, a in cands]}
    nbest.write_text(json.dumps(line) + "\n")
    proc = run_cli("rescore", "--ckpt", str(trained), "--nbest", str(nbest), "--lam", "0.7", "--json")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    want = rescore(lm, cands, grid, lam=0.7)
    assert [r["index"] for r in got["ranking"]] == [r.index for r in want]
    assert [r["total"] for r in got["ranking"]] == pytest.approx([r.total for r in want], abs=1e-4)
    text = run_cli("rescore", "--ckpt", str(trained), "--nbest", str(nbest)).stdout
    assert f"x: best candidate {want[0].index} of 3" in text
    bad = run_cli("rescore", "--ckpt", str(trained), "--nbest", str(tmp_path / "no.jsonl"), check=False)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
