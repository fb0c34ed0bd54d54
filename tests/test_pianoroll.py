"""Piano-roll benchmark data: exact round trips and the per-frame NLL."""

import math

import numpy as np
import pytest

from melodylm.errors import UserError
from melodylm.api.lm import ScoreResult
from melodylm.data.pianoroll import (ENCODINGS, EOS, FIRST_KEY, FIRST_OFF, FRAME, HOLD, change_ids_to_roll, encoding,
                                     hold_ids_to_roll, ids_to_roll, load_mat, roll_to_change_ids, roll_to_hold_ids,
                                     roll_to_ids, roll_to_score, score_to_roll)
from tests.conftest import SHARED_DATA

ROLLS = SHARED_DATA / "pianoroll"


def toy_roll():
    roll = np.zeros((3, 88), dtype=bool)
    roll[0, [39, 43]] = True  # C4 (MIDI 60) and E4
    roll[1, 39] = True  # C4 held
    return roll  # frame 2 is silent


def test_tokens_of_a_toy_roll():
    assert roll_to_ids(toy_roll()) == [FIRST_KEY + 39, FIRST_KEY + 43, FRAME, FIRST_KEY + 39, FRAME, FRAME, EOS]
    np.testing.assert_array_equal(ids_to_roll(roll_to_ids(toy_roll())), toy_roll())


def test_change_tokens_of_a_toy_roll():
    # frame 0 presses C4 and E4; frame 1 releases E4; frame 2 releases C4; nothing is left to release at EOS.
    assert roll_to_change_ids(toy_roll()) == [FIRST_KEY + 39, FIRST_KEY + 43, FRAME, FIRST_OFF + 43, FRAME,
                                              FIRST_OFF + 39, FRAME, EOS]
    np.testing.assert_array_equal(change_ids_to_roll(roll_to_change_ids(toy_roll())), toy_roll())
    held = np.zeros((4, 88), dtype=bool)
    held[:, [10, 20]] = True  # a chord held for four frames costs one FRAME per frame after the first
    assert roll_to_change_ids(held) == [FIRST_KEY + 10, FIRST_KEY + 20, FRAME, FRAME, FRAME, FRAME, EOS]


def test_hold_tokens_of_a_toy_roll():
    # The first frame is new, frame 1 repeats it, frame 2 drops E4, frames 3-4 are silent (3 new, 4 a repeat).
    roll = np.zeros((5, 88), dtype=bool)
    roll[:2, [39, 43]] = True
    roll[2, 39] = True
    assert roll_to_hold_ids(roll) == [FIRST_KEY + 39, FIRST_KEY + 43, FRAME, HOLD, FIRST_KEY + 39, FRAME, FRAME,
                                      HOLD, EOS]
    np.testing.assert_array_equal(hold_ids_to_roll(roll_to_hold_ids(roll)), roll)
    assert roll_to_hold_ids(np.zeros((2, 88), bool)) == [HOLD, HOLD, EOS]  # silence repeats the silence before it
    assert encoding("hold").frame_ends == (FRAME, HOLD) and encoding("hold").vocab_size == HOLD + 1


def test_decoding_sampled_change_tokens_is_forgiving():
    # Releasing a key that is up changes nothing; changes after the last FRAME make one more frame.
    roll = change_ids_to_roll([FIRST_OFF + 5, FIRST_KEY + 7, FRAME, FIRST_KEY + 8])
    assert roll.shape == (2, 88) and roll[0].nonzero()[0].tolist() == [7] and roll[1].nonzero()[0].tolist() == [7, 8]
    with pytest.raises(ValueError):
        change_ids_to_roll([FIRST_OFF + 88])
    with pytest.raises(UserError, match="unknown piano-roll encoding"):
        encoding("deltas")


def test_midi_round_trip_holds_notes_across_frames():
    score = roll_to_score(toy_roll(), ticks_per_frame=240)
    notes = score.tracks[0].notes.numpy()
    assert sorted(zip(notes["time"].tolist(), notes["duration"].tolist(), notes["pitch"].tolist())) == [
        (0, 240, 64), (0, 480, 60)]
    np.testing.assert_array_equal(score_to_roll(score, 3, ticks_per_frame=240), toy_roll())


def test_frame_nll_by_hand():
    # Two frames: {C4} then {}; tokens C4, FRAME, FRAME, EOS with made-up probabilities.
    roll = np.zeros((2, 88), dtype=bool)
    roll[0, 39] = True
    ids = roll_to_ids(roll)
    assert ids == [FIRST_KEY + 39, FRAME, FRAME, EOS]
    probs = [0.5, 0.8, 0.9, 0.25]
    expected = -(math.log(0.5) + math.log(0.8) + math.log(0.9) + math.log(0.25)) / 2
    # every token counts, EOS included, over the frames (what PianoRollLM.score returns)
    result = ScoreResult(logprob=float(np.log(probs).sum()), tokens=len(ids), notes=1, seconds=1.0, frames=2)
    assert math.isclose(result.nll_frame, expected)
    assert math.isclose(result.nll_token, expected * 2 / 4)


@pytest.mark.skipif(not ROLLS.is_dir(), reason=f"{ROLLS} is absent (set MELODYLM_SHARED_DATA)")
@pytest.mark.parametrize("name, pieces, test_frames", [("JSB_Chorales", (229, 76, 77), 4725),
                                                       ("Nottingham", (694, 173, 170), 44463)])
def test_every_piece_round_trips(name, pieces, test_frames):
    splits = load_mat(ROLLS / f"{name}.mat")
    assert tuple(len(splits[s]) for s in ("train", "val", "test")) == pieces
    assert sum(len(r) for r in splits["test"]) == test_frames
    for rolls in splits.values():
        for roll in rolls:
            for enc in ENCODINGS.values():
                np.testing.assert_array_equal(enc.decode(enc.encode(roll)), roll)
            np.testing.assert_array_equal(score_to_roll(roll_to_score(roll), len(roll)), roll)


def test_bad_files_are_user_errors(tmp_path):
    (tmp_path / "x.mat").write_bytes(b"not matlab")
    with pytest.raises(UserError):
        load_mat(tmp_path / "x.mat")
    with pytest.raises(UserError, match="does not exist"):
        load_mat(tmp_path / "missing.mat")
