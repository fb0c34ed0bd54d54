"""The copying measure of ``melodylm evaluate samples``: runs of 16 melody pitches found, in any key, in training."""

import numpy as np
from symusic import Note, Score, Track

from melodylm.evaluation.music import COPY_RUN, copies, interval_runs, melody_line
from melodylm.evaluation.samples import copying


def _score(pitches, chord_under=None) -> Score:
    score = Score(480)
    track = Track(program=0)
    for i, p in enumerate(pitches):
        track.notes.append(Note(i * 480, 480, int(p), 80))
        if chord_under is not None:  # a lower accompaniment note at the same onset: not the melody
            track.notes.append(Note(i * 480, 480, int(p) - chord_under, 60))
    score.tracks.append(track)
    return score


def test_the_melody_line_is_the_highest_pitch_of_each_onset():
    line = [60, 62, 64, 65, 67]
    np.testing.assert_array_equal(melody_line(_score(line, chord_under=12)), line)


def test_a_run_is_found_in_any_key_and_one_pitch_short_is_not():
    rng = np.random.default_rng(0)
    training = rng.integers(55, 80, size=60)
    runs = interval_runs(training)
    assert len(runs) <= len(training) - COPY_RUN + 1
    quote = training[20 : 20 + COPY_RUN]
    assert copies(np.concatenate([[40, 41], quote + 5, [90]]), runs)  # the same 16 pitches a fourth up
    short = training[20 : 20 + COPY_RUN - 1]
    assert not copies(np.concatenate([[40, 41], short + 5, [90]]), runs)  # 15 pitches are not a copy
    bent = quote.copy()
    bent[8] += 1
    assert not copies(bent, runs)  # one pitch changed in the middle
    assert not copies(quote[:5], runs)  # shorter than a run: nothing to find


def test_copying_shares_per_set():
    rng = np.random.default_rng(1)
    train = [{"path": f"t{i}", "melody": rng.integers(55, 80, size=40).tolist()} for i in range(3)]
    copied = {"path": "s0", "melody": [50] + train[1]["melody"][3:3 + COPY_RUN] + [51]}
    fresh = {"path": "s1", "melody": rng.integers(55, 80, size=40).tolist()}
    out = copying({"samples": [copied, fresh], "reference": [fresh]}, train)
    assert out["samples"] == {"share": 0.5, "copying": 1, "pieces": 2, "training_pieces_left_out": 0, "files": ["s0"]}
    assert out["reference"]["copying"] == 0 and out["training_pieces"] == 3


def test_a_reference_that_holds_training_pieces_counts_only_the_others():
    """A manifest read without --split holds the training tunes too: each would trivially 'copy' itself."""
    rng = np.random.default_rng(2)
    train = [{"path": f"t{i}", "melody": rng.integers(55, 80, size=40).tolist()} for i in range(3)]
    fresh = {"path": "v0", "melody": rng.integers(55, 80, size=40).tolist()}
    out = copying({"reference": train + [fresh]}, train)
    assert out["reference"] == {"share": 0.0, "copying": 0, "pieces": 1, "training_pieces_left_out": 3, "files": []}
