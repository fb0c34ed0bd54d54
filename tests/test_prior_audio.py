"""``melodylm transcribe`` on real audio: needs the transcribe extra (basic-pitch, mir_eval) and fluidsynth.

Skipped with the reason when they are missing (CI installs neither); run
``make transcribe-extra audio`` to include them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from symusic import Score

from conftest import run_cli
from melodylm.audio import render_wav, synthesizer
from melodylm.prior import acoustic
from melodylm.prior.notes import score_to_notes

pytestmark = [
    pytest.mark.skipif(not acoustic.available(), reason="the transcribe extra is not installed (make transcribe-extra)"),
    pytest.mark.skipif(synthesizer() != "fluidsynth", reason="fluidsynth and a GM soundfont are not installed (make audio)"),
]


@pytest.fixture(scope="module")
def flute_tune(oneills_midi, tmp_path_factory):
    """The first 12 s of a real tune's melody played by a General MIDI flute, with its notes and tempo."""
    score = Score(str(oneills_midi[0])).to("second").clip(0, 12.0, clip_end=False)
    for track in score.tracks:
        track.program = 73
    wav = render_wav(score, tmp_path_factory.mktemp("audio") / "tune.wav", synth="fluidsynth")
    original = Score(str(oneills_midi[0]))
    qpm = float(original.tempos[0].qpm) if len(original.tempos) else 120.0
    return wav, [n for n in score_to_notes(score) if n.onset < 11.9], qpm


def onset_f1(ref, est) -> float:
    import mir_eval

    def arrays(notes):
        return (np.array([[n.onset, n.offset] for n in notes]).reshape(-1, 2),
                np.array([440.0 * 2 ** ((n.pitch - 69) / 12) for n in notes]))

    (ri, rp), (ei, ep) = arrays(ref), arrays(est)
    return mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=0.05, offset_ratio=None)[2]


def test_transcribe_a_flute_melody_without_prior(flute_tune, tmp_path):
    wav, ref, qpm = flute_tune
    out = tmp_path / "tune.mid"
    proc = run_cli("transcribe", str(wav), "--no-prior", "--bpm", str(qpm), "--onset-shift", "-0.02",
                   "--out", str(out), "--json")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["prior"] is False and summary["notes"] > 0 and out.is_file()
    est = score_to_notes(Score(str(out)))
    assert len(est) == summary["notes"]
    assert onset_f1(ref, est) > 0.7  # the clean flute: basic-pitch alone is good


@pytest.mark.slow
def test_transcribe_with_a_prior_writes_a_melody(flute_tune, trained, tmp_path):
    wav, ref, qpm = flute_tune
    out = tmp_path / "tune.mid"
    proc = run_cli("transcribe", str(wav), "--ckpt", str(trained), "--bpm", str(qpm), "--lam", "0.2",
                   "--beam", "4", "--out", str(out), "--json")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["prior"] is True and summary["lm"] < 0 and summary["notes"] > 0
    est = score_to_notes(Score(str(out)))
    assert all(a.offset <= b.onset + 1e-6 for a, b in zip(est, est[1:]))  # one line
