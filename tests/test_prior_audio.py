"""``melodylm transcribe`` on real audio: needs the transcribe extra (basic-pitch, mir_eval) and fluidsynth.

Skipped with the reason when they are missing (CI installs neither); run
``make transcribe-extra audio`` to include them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED_DATA, run_cli
from symusic import Score

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


@pytest.mark.slow
def test_transcribe_without_a_tempo_searches_the_grid(flute_tune, trained, tmp_path):
    from melodylm.prior.meter import FACTORS, METERS

    wav, ref, _ = flute_tune
    out = tmp_path / "tune.mid"
    proc = run_cli("transcribe", str(wav), "--ckpt", str(trained), "--lam", "0.2", "--out", str(out), "--json")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["grids_searched"] == len(FACTORS) * sum(-(-n * 4 // d) for n, d in METERS)
    assert summary["time_signature"] in {f"{n}/{d}" for n, d in METERS}
    est = score_to_notes(Score(str(out)))
    assert onset_f1(ref, est) > 0.7  # whatever grid the LM picked, the MIDI keeps the heard timing


JSB = SHARED_DATA / "pianoroll" / "JSB_Chorales.mat"


@pytest.mark.skipif(not JSB.is_file(), reason=f"{JSB} is absent (set MELODYLM_SHARED_DATA)")
def test_polyphonic_transcription_of_a_rendered_chorale_without_prior(tmp_path):
    from melodylm.data import pianoroll as PR
    from melodylm.evaluation.bench_polyphonic import scores
    from melodylm.prior import frames as FR

    roll = PR.load_mat(JSB)["test"][0][:40]
    grid = FR.FrameGrid(100.0, 1)
    wav = render_wav(FR.roll_to_midi(roll, grid), tmp_path / "chorale.wav", synth="fluidsynth")
    out = tmp_path / "chorale.mid"
    proc = run_cli("transcribe", str(wav), "--polyphonic", "--no-prior", "--bpm", "100", "--origin", "0",
                   "--frames-per-beat", "1", "--out", str(out), "--json")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["prior"] is False and summary["frames_per_beat"] == 1
    est = PR.score_to_grid(Score(str(out)), 1)
    est = np.vstack([est, np.zeros((max(0, len(roll) - len(est)), PR.KEYS), bool)])[: len(roll)]
    assert summary["notes"] == len(FR.note_runs(est)[0])
    assert scores(roll, est, grid)["frame_f1"] > 0.6  # a piano chorale: basic-pitch's frames alone are fair
