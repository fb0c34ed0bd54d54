"""Tempo, meter and downbeat search (melodylm.prior.meter): the pulse fit, the candidate grids, the choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from melodylm.api.lm import MusicLM
from melodylm.data.tokenizer import build_tokenizer
from melodylm.errors import UserError
from melodylm.models.components.rnn_lm import RecurrentLM
from melodylm.prior.decode import decode, distinct_onsets
from melodylm.prior.meter import FACTORS, METERS, beat_line, candidate_grids, search
from melodylm.prior.notes import Note
from melodylm.prior.posteriors import Posteriorgram, SegmentOptions, segments


def test_beat_line_fits_the_pulse_through_jitter_a_dropped_and_an_extra_beat():
    rng = np.random.default_rng(0)
    period, phase = 0.4837, 0.213
    beats = phase + np.arange(60) * period + rng.normal(0, 0.01, 60)
    beats = np.delete(beats, [7, 30])  # the tracker missed two beats
    beats = np.sort(np.append(beats, phase + 12.5 * period))  # and found one off the pulse
    got_period, got_phase = beat_line(beats)
    assert got_period == pytest.approx(period, abs=5e-4)
    assert got_phase == pytest.approx(phase, abs=0.01)
    # the fit is far finer than a tempo estimate of a few per cent: after 60 beats it is off by < 0.03 s
    assert abs((got_phase + 60 * got_period) - (phase + 60 * period)) < 0.03


def test_beat_line_needs_beats():
    with pytest.raises(UserError, match="too few"):
        beat_line(np.array([0.5, 1.0]))


def test_candidate_grids_span_tempo_levels_meters_and_downbeats():
    grids = candidate_grids(period=0.5, phase=0.1, first_onset=0.62)
    bars = sum(int(np.ceil(n * 4 / d)) for n, d in METERS)
    assert len(grids) == len(FACTORS) * bars
    assert sorted({g.qpm for g in grids}) == [120.0 * f for f in FACTORS]  # a tracked beat of 0.5 s is f quarters
    at_120 = [g for g in grids if g.qpm == 120.0 and g.time_signature == (3, 4)]
    assert [round(g.origin, 6) for g in at_120] == [0.6, 0.1, -0.4]  # the pulse's beat nearest 0.62 s, then back
    fixed = candidate_grids(period=0.5, phase=0.1, first_onset=0.62, qpm=100.0, time_signature=(6, 8), origin=0.0)
    assert [(g.qpm, g.time_signature, g.origin) for g in fixed] == [(100.0, (6, 8), 0.0)]


def test_search_keeps_the_grid_whose_decoding_scores_best():
    torch.manual_seed(0)
    tok = build_tokenizer("REMI")
    lm = MusicLM(RecurrentLM(len(tok), 16, 24, 2), tok)
    notes = [Note(0.1 + 0.125 * i, 0.1 + 0.125 * (i + 1), 60 + (i % 5)) for i in range(24)]  # sixteenths at 120
    fps = 100.0
    note = np.full((int(6.5 * fps) + 10, 88), 0.01)
    onset = note.copy()
    for n in notes:
        a, b = int(n.onset * fps), int(n.offset * fps)
        note[a:b - 1, n.pitch - 21], onset[a, n.pitch - 21] = 0.8, 0.8
    segs = segments(Posteriorgram(note, onset, fps), SegmentOptions(top_k=2))
    grids = candidate_grids(0.5, 0.1, segs[0].onset)
    choice = search(lm, segs, grids, lam=1.0, beam_size=1)
    kept = [len(distinct_onsets(segs, g)) for g in grids]
    assert min(kept) < max(kept)  # at 60 quarter notes per minute two sixteenths at 120 share a position
    valid = [g for g, n in zip(grids, kept) if n >= 0.98 * max(kept)]
    per_onset = [decode(lm, segs, g, lam=1.0, beam_size=1).total / len(distinct_onsets(segs, g)) for g in valid]
    assert [g for g, _ in choice.tried] == valid
    assert [t for _, t in choice.tried] == pytest.approx(per_onset)
    assert choice.grid == valid[int(np.argmax(per_onset))]


def test_search_chooses_on_the_first_seconds_and_decodes_everything():
    torch.manual_seed(1)
    tok = build_tokenizer("REMI")
    lm = MusicLM(RecurrentLM(len(tok), 16, 24, 2), tok)
    notes = [Note(0.25 * i, 0.25 * (i + 1), 60 + (i % 7)) for i in range(40)]  # 10 s of eighths at 120
    fps = 100.0
    note = np.full((1100, 88), 0.01)
    onset = note.copy()
    for n in notes:
        a, b = int(n.onset * fps), int(n.offset * fps)
        note[a:b - 1, n.pitch - 21], onset[a, n.pitch - 21] = 0.8, 0.8
    segs = segments(Posteriorgram(note, onset, fps), SegmentOptions(top_k=2, skip_logprob=None))
    grids = candidate_grids(0.5, 0.0, segs[0].onset, qpm=120.0)
    choice = search(lm, segs, grids, seconds=3.0)
    first = [s for s in segs if s.onset < segs[0].onset + 3.0]
    assert len(first) < len(segs)
    assert [t for _, t in choice.tried] == pytest.approx(
        [decode(lm, first, g).total / len(distinct_onsets(first, g)) for g in grids])
    assert len(choice.transcription.notes) == len(decode(lm, segs, choice.grid).notes) == len(notes)
