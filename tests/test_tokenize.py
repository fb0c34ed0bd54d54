"""MIDI -> tokens -> MIDI is exact (on the tokenizer's grid) for real melodies."""

import numpy as np
import pytest
from miditok import TokSequence

from melodylm.data.midi import CleanOptions, clean_score, read_score
from melodylm.data.tokenizer import build_tokenizer, fingerprint, score_to_ids, tokenizer_from_json, tokenizer_to_json


def notes_in_beats(score):
    tpq = score.ticks_per_quarter
    rows = []
    for track in score.tracks:
        a = track.notes.numpy()
        rows += list(zip((a["time"] / tpq).round(6), (a["duration"] / tpq).round(6), a["pitch"].tolist()))
    return sorted(rows)


@pytest.mark.parametrize("kind", ["REMI", "TSD", "MIDILike"])
def test_round_trip_exact_on_real_melodies(oneills_midi, kind):
    tokenizer = build_tokenizer(kind)
    checked = 0
    for path in oneills_midi[:40]:
        score, _ = clean_score(read_score(path.read_bytes()), CleanOptions(melody=True))
        reference = tokenizer.preprocess_score(score.copy())
        ids = score_to_ids(tokenizer, score)
        decoded = tokenizer.decode([ids])
        assert notes_in_beats(decoded) == notes_in_beats(reference), path.name
        assert tokenizer.tokens_errors(TokSequence(ids=ids)) == 0
        checked += 1
    assert checked == 40


def test_music21_export_is_already_on_the_grid(oneills_midi):
    """O'Neill's tunes are written in simple note values: quantisation must not move any onset."""
    tokenizer = build_tokenizer("REMI")
    for path in oneills_midi[:20]:
        score, _ = clean_score(read_score(path.read_bytes()), CleanOptions(melody=True))
        before = np.array([n[0] for n in notes_in_beats(score)])
        after = np.array([n[0] for n in notes_in_beats(tokenizer.preprocess_score(score.copy()))])
        np.testing.assert_allclose(after, before, atol=1e-6)


def test_tokenizer_json_round_trip_keeps_fingerprint():
    tok = build_tokenizer("REMI", velocities=8)
    again = tokenizer_from_json(tokenizer_to_json(tok))
    assert fingerprint(again) == fingerprint(tok)
    assert fingerprint(build_tokenizer("TSD")) != fingerprint(tok)
