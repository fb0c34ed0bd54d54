"""The sounding-chord-tone share, on hand-built melodies, and ``evaluate seq2seq progressions`` end to end."""

from __future__ import annotations

import json

import pytest
from symusic import Note, Score, TimeSignature, Track

from melodylm.data.chords import chords_to_score, parse_chord_symbols
from melodylm.evaluation.chordtones import PROGRESSIONS, control_for, sampling_settings, shuffled_text
from melodylm.evaluation.seq2seq import chord_tone_counts, strong_beat_ticks
from melodylm.evaluation.sounding import beat_ticks, sounding_chord_tone_share
from tests.conftest import run_cli
from tests.test_seq2seq import needs_nottingham, seq2seq_run  # noqa: F401  (the tiny fitted checkpoint)


def _melody(notes: list[tuple[int, int, int]], meter=(4, 4), tpq: int = 480) -> Score:
    """``notes``: (onset tick, duration ticks, pitch)."""
    s = Score(tpq)
    s.time_signatures.append(TimeSignature(0, *meter))
    t = Track(name="melody")
    for time, dur, pitch in notes:
        t.notes.append(Note(time, dur, pitch, 90))
    s.tracks.append(t)
    return s


def test_two_bars_of_four_four_over_c_then_g():
    chords = chords_to_score(parse_chord_symbols("C G"), beats=4)  # C E G on bar 1, G B D on bar 2
    melody = _melody([(0, 480, 64),      # beat 1 of bar 1: E over C, a hit
                      (480, 960, 62),    # D held over beat 3 (tick 960) of bar 1: sounding, not a C tone: a miss
                      (1440, 480, 65),   # ends at 1920: nothing sounds on beat 1 of bar 2, not counted
                      (2400, 960, 71)])  # B held over beat 3 (tick 2880) of bar 2: a G tone, a hit
    assert list(beat_ticks(chords)) == [0, 960, 1920, 2880]
    assert sounding_chord_tone_share(melody, chords) == (2, 3)
    assert sounding_chord_tone_share(melody, chords, beats=(0, 1, 2, 3)) == (3, 6)  # + F at 1440 miss, D at 480 miss
    assert chord_tone_counts(melody, chords) == (1, 1)  # the onset-based share sees only the E at tick 0
    silent = chords_to_score(parse_chord_symbols("C"), beats=4)  # no chord in bar 2: its beats are not counted
    assert sounding_chord_tone_share(melody, silent) == (1, 2)


def test_three_four_counts_beat_one_and_six_eight_both_dotted_quarters():
    waltz = chords_to_score(parse_chord_symbols("F C7"), beats=3, time_signature="3/4")
    melody = _melody([(0, 480, 65), (480, 480, 62), (960, 480, 64), (1440, 1440, 60)], meter=(3, 4))
    assert list(beat_ticks(waltz)) == [0, 1440]
    assert sounding_chord_tone_share(melody, waltz) == (2, 2)  # F over F, C over C7; beats 2, 3 are not read
    assert sounding_chord_tone_share(melody, waltz, beats=(0, 1, 2)) == (4, 6)  # D (480) and E (960) over F: misses
    jig = chords_to_score(parse_chord_symbols("G D"), beats=3, time_signature="6/8")
    tune = _melody([(0, 240, 67), (240, 720, 60), (960, 480, 64), (1440, 720, 62), (2160, 720, 61)], meter=(6, 8))
    assert list(beat_ticks(jig)) == [0, 720, 1440, 2160]  # the two dotted quarters of each bar
    # G over G: hit; C held over 720 over G: miss; D over D: hit; C# over D (D F# A): miss
    assert sounding_chord_tone_share(tune, jig) == (2, 4)
    assert sounding_chord_tone_share(tune, jig, beats=(0, 2)) == (2, 2)  # a 6/8 bar has two beats: 2 is skipped
    for score in (chords_to_score(parse_chord_symbols("C G Am"), beats=b, time_signature=m)
                  for b, m in ((4, "4/4"), (3, "3/4"), (3, "6/8"), (6, "12/8"), (2, "2/4"))):
        assert set(beat_ticks(score).tolist()) == strong_beat_ticks(score)  # the onset metric's strong beats


def test_the_melody_sounding_is_the_latest_onset_and_meter_changes_restart_bars():
    chords = chords_to_score(parse_chord_symbols("C"), beats=8)
    chords.time_signatures.append(TimeSignature(1440, 2, 4))  # 4/4 from 0, 2/4 from tick 1440
    melody = _melody([(0, 1920, 62), (0, 960, 64), (960, 960, 67)])
    # 4/4 bar at 0 (beats 0, 960), then 2/4 bars at 1440, 2400, 3360 (beat 0 only)
    assert list(beat_ticks(chords)) == [0, 960, 1440, 2400, 3360]
    # at 0: E (higher of two onsets at 0) hit; 960: G (latest onset) hit; 1440: G hit; 2400, 3360: no melody
    assert sounding_chord_tone_share(melody, chords) == (3, 3)
    assert sounding_chord_tone_share(Score(480), chords) == (0, 0)


def test_each_progression_has_a_different_control_in_the_same_rhythm():
    assert len(PROGRESSIONS) == 10 and len({p.name for p in PROGRESSIONS}) == 10
    for i, prog in enumerate(PROGRESSIONS):
        other = PROGRESSIONS[control_for(i)]
        assert other.name != prog.name and other.chord_beats == prog.chord_beats
        if prog.time_signature == "4/4":
            assert other.time_signature == "4/4"
        decoy = parse_chord_symbols(shuffled_text(prog, other))
        assert len(decoy) == len(parse_chord_symbols(prog.text)) >= 8  # played twice: 8 or more chords
    waltz = next(i for i, p in enumerate(PROGRESSIONS) if p.style == "waltz")
    assert PROGRESSIONS[control_for(waltz)].style == "jig"
    blues = next(p for p in PROGRESSIONS if p.style == "blues")
    assert shuffled_text(blues, PROGRESSIONS[5]).split()[:9] == "D G D A D G A D D".split()


def test_sampling_settings_are_those_of_generate():
    s = sampling_settings(3, 7, top_p=0.9)
    assert (s["num"], s["seed"], s["top_p"], s["temperature"], s["top_k"], s["min_notes"], s["max_tokens"]) == \
        (3, 7, 0.9, 1.0, 0, 1, 1024)


@pytest.mark.slow
@needs_nottingham
def test_evaluate_progressions_on_a_tiny_checkpoint(seq2seq_run, tmp_path):  # noqa: F811
    ckpt = seq2seq_run / "checkpoints" / "seq2seq-debug"
    out = tmp_path / "progressions.json"
    proc = run_cli("evaluate", "seq2seq", "progressions", "--ckpt", str(ckpt), "--num", "2", "--seed", "0",
                   "--json", str(out), "--out", str(tmp_path / "midi"))
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout[proc.stdout.index("{"):]) == result  # after the progress bar, on stdout too
    assert {"overall", "styles", "progressions", "settings", "num", "seed"} <= set(result)
    assert set(result["styles"]) == {"pop", "jazz", "blues", "folk", "minor", "waltz", "jig"}
    assert result["settings"]["top_p"] == 0.95 and result["settings"]["temperature"] == 1.0  # generate's defaults
    for block in (result["overall"], *result["styles"].values()):
        for key in ("seq2seq", "shuffled"):
            assert block[key]["count"] > 0 and 0.0 <= block[key]["share"] <= 1.0
    assert sum(r["seq2seq"]["count"] for r in result["progressions"]) == result["overall"]["seq2seq"]["count"]
    waltz = next(r for r in result["progressions"] if r["style"] == "waltz")
    assert waltz["time_signature"] == "3/4" and waltz["bars"] == 8 and waltz["shuffled_against"] == "jig-in-G"
    midi = sorted((tmp_path / "midi").glob("*.mid"))
    assert len(midi) == 2 * len(PROGRESSIONS)
    score = Score(str(tmp_path / "midi" / "waltz-in-F-000.mid"))
    assert [(t.numerator, t.denominator) for t in score.time_signatures][:1] == [(3, 4)]
