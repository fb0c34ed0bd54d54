"""Cleaning one file: melody extraction, pitch range, rejection reasons."""

import numpy as np
import pytest
from symusic import Note, Score, Track

from melodylm.data.midi import CleanOptions, Rejected, clean_score, read_score, skyline, transposed


def make_score(notes, tpq=480) -> Score:
    """notes: (time, duration, pitch) in ticks, all on one piano track."""
    score = Score(tpq)
    track = Track(name="piano", program=0)
    for t, d, p in notes:
        track.notes.append(Note(t, d, p, 80))
    score.tracks.append(track)
    return score


def test_skyline_keeps_highest_note_per_onset_and_cuts_overlaps():
    t = np.array([0, 0, 480, 480, 960]); d = np.array([960, 480, 960, 480, 480])
    p = np.array([60, 64, 55, 67, 72]); v = np.full(5, 80)
    time, dur, pitch, _ = skyline(t, d, p, v)
    assert time.tolist() == [0, 480, 960]
    assert pitch.tolist() == [64, 67, 72]
    assert dur.tolist() == [480, 480, 480]  # the 960-tick notes are cut at the next onset


def test_clean_score_melody_and_pitch_range():
    chords = [(i * 480, 480, p) for i in range(20) for p in (48, 55, 64 + i % 5)]
    chords.append((20 * 480, 480, 120))  # outside the range: dropped and counted
    score, stats = clean_score(make_score(chords), CleanOptions(melody=True, min_notes=16, pitch_range=(21, 109)))
    assert len(score.tracks) == 1
    assert score.tracks[0].notes.numpy()["pitch"].tolist() == [64 + i % 5 for i in range(20)]
    assert stats["notes"] == 20 and stats["dropped_out_of_range"] == 1


def test_too_few_notes_is_rejected_with_reason():
    with pytest.raises(Rejected) as err:
        clean_score(make_score([(0, 480, 60)] * 3), CleanOptions(min_notes=16))
    assert err.value.code == "too_few_notes" and "3 < 16" in str(err.value)


def test_too_long_is_rejected():
    notes = [(i * 480 * 100, 480, 60) for i in range(20)]  # 100 beats apart at 120 bpm
    with pytest.raises(Rejected) as err:
        clean_score(make_score(notes), CleanOptions(max_seconds=60))
    assert err.value.code == "too_long"


@pytest.mark.parametrize("data, code", [(b"", "empty"), (b"RIFF....WAVEfmt ", "not_midi"),
                                        (b"MThd\x00\x00\x00\x06\x00\x01\x00", "unreadable")])
def test_read_score_reasons(data, code):
    with pytest.raises(Rejected) as err:
        read_score(data)
    assert err.value.code == code


def test_transposed_respects_pitch_range():
    score = make_score([(0, 480, 100), (480, 480, 60)])
    assert transposed(score, 9, (21, 109)) is None  # 109 is outside the half-open range
    assert transposed(score, 8, (21, 109)) is not None
    up = transposed(score, 2, (21, 109))
    assert up.tracks[0].notes.numpy()["pitch"].tolist() == [102, 62]
