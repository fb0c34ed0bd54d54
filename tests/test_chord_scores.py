"""mir_eval chord scores of melody -> chords: every project label in mir_eval's syntax, and majmin / sevenths."""

from __future__ import annotations

import json

import mir_eval.chord
import numpy as np
import pytest
from symusic import Score

from melodylm.data.chords import (LABELS, labels_to_track, mir_eval_label, parse_chord_symbol, vote_labels,
                                  vote_shares)
from melodylm.evaluation.seq2seq import chord_scores
from tests.conftest import REPO, run_cli
from tests.test_seq2seq import NOTTINGHAM, needs_nottingham


def test_every_label_is_spelled_for_mir_eval_with_the_same_tones():
    spelled = [mir_eval_label(label) for label in LABELS]
    assert len(set(spelled)) == len(LABELS) == 73
    assert spelled[:7] == ["N", "C:maj", "C:min", "C:7", "C:min7", "C:maj7", "C:dim"]
    assert [mir_eval_label(x) for x in ("C#m7", "Ebmaj7", "F#dim", "Ab7", "Bbm", "B")] == \
        ["C#:min7", "Eb:maj7", "F#:dim", "Ab:7", "Bb:min", "B:maj"]
    assert mir_eval.chord.encode("N") == (-1, pytest.approx(np.zeros(12)), -1)
    for label, text in zip(LABELS[1:], spelled[1:]):  # mir_eval parses each, to the label's own pitch classes
        root, semitones, bass = mir_eval.chord.encode(text)
        chord = parse_chord_symbol(label)
        assert root == chord.root and bass == 0
        assert {(root + i) % 12 for i in np.flatnonzero(semitones)} == chord.pitch_classes, (label, text)
    with pytest.raises(ValueError, match="not a chord label"):
        mir_eval_label("Csus4")


def test_majmin_and_sevenths_by_hand():
    real = ["C", "C", "G7", "Bdim", "N", "Am7"]
    pred = ["C7", "Am", "G", "Bdim", "N", "Am"]
    # majmin: C~C7 yes, C~Am no, G7~G yes, Bdim left out (not in the vocabulary), N~N yes, Am7~Am yes: 4 of 5
    # sevenths: C vs C7 no, no, G7 vs G no, left out, N yes, Am7 vs Am no: 1 of 5
    assert chord_scores(pred, real) == {"majmin": pytest.approx(0.8), "sevenths": pytest.approx(0.2)}
    assert chord_scores(real, real) == {"majmin": 1.0, "sevenths": 1.0}
    assert chord_scores(["C"], ["Bdim"]) == {"majmin": None, "sevenths": None}  # nothing comparable
    assert chord_scores([], []) == {"majmin": None, "sevenths": None}


@pytest.mark.slow
@needs_nottingham
def test_evaluate_harmony_reports_mir_eval_scores(tmp_path):
    run_cli("fit", "--config", str(REPO / "configs" / "seq2seq" / "debug.yaml"), "--data.init_args.root",
            str(NOTTINGHAM), "--data.init_args.source", "melody", "--data.init_args.target", "chords",
            "--data.init_args.melody", "source", cwd=tmp_path)
    out = tmp_path / "harmony.json"
    run_cli("evaluate", "seq2seq", "harmony", "--ckpt", str(tmp_path / "checkpoints" / "seq2seq-debug"),
            "--limit", "3", "--json", str(out), cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["pairs"] == 3 and result["beats"] > 0
    for system in ("seq2seq", "most_frequent"):
        assert {"accuracy", "accuracy_chord_beats", "majmin", "sevenths"} <= set(result[system])
        assert all(0.0 <= result[system][k] <= 1.0 for k in ("majmin", "sevenths"))
    assert result["decoding"] == "greedy"
    run_cli("evaluate", "seq2seq", "harmony", "--ckpt", str(tmp_path / "checkpoints" / "seq2seq-debug"),
            "--limit", "3", "--votes", "3", "--json", str(out), cwd=tmp_path)
    voted = json.loads(out.read_text())  # the same beats, read from a vote of three samples per melody
    assert voted["decoding"] == "vote of 3 samples at top-p 0.95" and voted["beats"] == result["beats"]
    assert voted["most_frequent"] == result["most_frequent"]
    run_cli("evaluate", "seq2seq", "harmony", "--ckpt", str(tmp_path / "checkpoints" / "seq2seq-debug"),
            "--limit", "3", "--votes", "3", "--may-end-early", "--json", str(out), cwd=tmp_path)
    assert json.loads(out.read_text())["beats"] == result["beats"]  # samples may end early: the same beats read
    melody = NOTTINGHAM / "melody" / "ashover1.mid"  # generate --votes writes one voted harmonisation
    run_cli("generate", "--ckpt", str(tmp_path / "checkpoints" / "seq2seq-debug"), "--condition", str(melody),
            "--votes", "3", "--out", str(tmp_path / "voted"), cwd=tmp_path)
    meta = json.loads((tmp_path / "voted" / "melody2chords-vote3.json").read_text())
    score = Score(str(tmp_path / "voted" / "melody2chords-vote3.mid"))
    assert meta["votes"] == 3 and len(meta["chord_per_beat"]) > 0
    assert [t.name for t in score.tracks] == ["melody (condition)", "chords (generated)"]

    # with a beat tagger beside it and --votes: the blend row; at --blend 0 it is the tagger's argmax exactly
    run_cli("fit", "--config", str(REPO / "configs" / "seq2seq" / "tagger.yaml"), "--data.init_args.root",
            str(NOTTINGHAM), "--data.init_args.limit", "24", "--trainer.max_epochs", "2", "--trainer.max_time",
            "null", "--trainer.logger", "false", "--model.init_args.hidden_size", "16", cwd=tmp_path)
    tagger = tmp_path / "checkpoints" / "seq2seq-tagger"
    for weight in ("0", "1"):
        run_cli("evaluate", "seq2seq", "harmony", "--ckpt", str(tmp_path / "checkpoints" / "seq2seq-debug"),
                "--tagger", str(tagger), "--limit", "3", "--votes", "3", "--blend", weight, "--json", str(out),
                cwd=tmp_path)
        blended = json.loads(out.read_text())
        assert blended["blend_weight"] == float(weight) and blended["beats"] == result["beats"]
        assert 0 <= blended["blend"]["accuracy"] <= 1
        if weight == "0":
            assert blended["blend"] == blended["tagger"]
    run_cli("generate", "--ckpt", str(tagger), "--condition", str(melody), "--seq2seq",
            str(tmp_path / "checkpoints" / "seq2seq-debug"), "--votes", "3", "--out", str(tmp_path / "blend"),
            cwd=tmp_path)
    meta = json.loads((tmp_path / "blend" / "ashover1-tagger-chords-blend3.json").read_text())
    assert meta["votes"] == 3 and meta["blend"] == 1.0 and set(meta["chord_per_beat"]) <= set(LABELS)
    assert [t.name for t in Score(str(tmp_path / "blend" / "ashover1-tagger-chords-blend3.mid")).tracks] == \
        ["melody", "chords"]
    for flags, message in ((["--votes", "1"], "give --votes N >= 2"), (["--votes", "3", "--blend", "-1"],
                                                                         "--blend must be >= 0")):
        proc = run_cli("generate", "--ckpt", str(tagger), "--condition", str(melody), "--seq2seq",
                       str(tmp_path / "checkpoints" / "seq2seq-debug"), *flags, "--out", str(tmp_path / "blend"),
                       cwd=tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr
    proc = run_cli("generate", "--ckpt", str(tagger), "--condition", str(melody), "--blend", "0.5", "--out",
                   str(tmp_path / "blend"), cwd=tmp_path, check=False)  # nothing for --blend to weigh: refused
    assert proc.returncode == 2 and "--blend weighs the samples of --seq2seq" in proc.stderr
    proc = run_cli("evaluate", "seq2seq", "harmony", "--ckpt", str(tmp_path / "checkpoints" / "seq2seq-debug"),
                   "--limit", "3", "--votes", "3", "--blend", "0.5", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "give both" in proc.stderr


def test_vote_shares_by_hand():
    shares = vote_shares([["C", "F"], ["C", "G"], ["Am", "G"], ["C", "Csus4"]], ["N", "C", "Am", "F", "G"])
    np.testing.assert_allclose(shares, [[0, 0.75, 0.25, 0, 0], [0, 0, 0, 0.25, 0.5]])  # Csus4: not a label
    assert vote_shares([["N", "C"]]).shape == (2, len(LABELS))
    with pytest.raises(ValueError, match="same number of beats"):
        vote_shares([["C"], ["C", "G"]])


def test_tagger_blends_its_probabilities_with_sampled_harmonisations():
    import torch

    from melodylm.api.tagger import ChordTagger
    from melodylm.models.components.seq2seq import BeatTagger

    torch.manual_seed(0)
    tagger = ChordTagger(BeatTagger(num_labels=4, num_features=1), ["N", "C", "G", "Am"])
    probs = np.array([[0.0, 0.6, 0.3, 0.1], [0.1, 0.2, 0.3, 0.4]])
    tagger.beat_probs = lambda melody, beats: probs  # known probabilities, two beats
    samples = [["G", "C"], ["G", "C"], ["C", "Am"], ["Am", "C"]]  # shares: beat 0 C .25 G .5 Am .25; beat 1 C .75
    assert tagger.label_beats(None, 2) == ["C", "Am"]  # the tagger alone
    assert tagger.label_beats(None, 2, samples, weight=0.0) == ["C", "Am"]
    assert tagger.label_beats(None, 2, samples, weight=0.1) == ["C", "Am"]  # C .625 vs G .35; Am .425 vs C .275
    assert tagger.label_beats(None, 2, samples, weight=1.0) == ["C", "C"]  # C .85 vs G .8; C .95 vs Am .65
    assert tagger.label_beats(None, 2, samples, weight=2.0) == ["G", "C"]  # G 1.3 vs C 1.1


def test_vote_labels_takes_each_beats_most_frequent_chord():
    assert vote_labels([["C", "F", "G"], ["C", "Dm", "G7"], ["Am", "Dm", "G"]]) == ["C", "Dm", "G"]
    assert vote_labels([["C", "F"], ["Am", "G"]]) == ["C", "F"]  # ties: the first harmonisation's label
    assert vote_labels([["N", "C"]]) == ["N", "C"]
    with pytest.raises(ValueError):
        vote_labels([["C"], ["C", "G"]])


def test_labels_to_track_writes_one_block_chord_per_run_of_equal_labels():
    track = labels_to_track(["C", "C", "N", "G7", "G7", "G7"], tpq=480)
    notes = sorted((n.time, n.duration, n.pitch) for n in track.notes)
    c = sorted(parse_chord_symbol("C").pitches())
    g7 = sorted(parse_chord_symbol("G7").pitches())
    assert notes == sorted([(0, 960, p) for p in c] + [(1440, 1440, p) for p in g7])  # beat 2 is silent
