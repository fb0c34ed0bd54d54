"""Chord text in any meter: ``chords_to_score(time_signature=)``, ``gen.condition``, ``generate --time-signature``."""

from __future__ import annotations

import pytest
import torch

from melodylm.api.seq2seq import ConditionalGenerator
from melodylm.data.chords import chords_to_score, parse_chord_symbols, parse_time_signature
from melodylm.data.tokenizer import build_tokenizer
from melodylm.errors import UserError
from melodylm.models.components.seq2seq import Seq2Seq


def _notes(score) -> list[tuple[int, int, int]]:
    return sorted((n.time, n.duration, n.pitch) for n in score.tracks[0].notes)


def test_a_waltz_in_three_four():
    score = chords_to_score(parse_chord_symbols("C Am F G"), beats=3, time_signature="3/4")
    assert [(ts.time, ts.numerator, ts.denominator) for ts in score.time_signatures] == [(0, 3, 4)]
    # 3 quarter notes of 480 ticks per chord: onsets 0, 1440, 2880, 4320; close voicings from C3 (48) up
    assert _notes(score) == [(0, 1440, 48), (0, 1440, 52), (0, 1440, 55),
                             (1440, 1440, 57), (1440, 1440, 60), (1440, 1440, 64),
                             (2880, 1440, 53), (2880, 1440, 57), (2880, 1440, 60),
                             (4320, 1440, 55), (4320, 1440, 59), (4320, 1440, 62)]
    assert list(score.get_downbeats()) == [0, 1440, 2880, 4320]  # one chord per bar


def test_a_jig_in_six_eight_counts_chord_beats_in_quarter_notes():
    score = chords_to_score(parse_chord_symbols("G D7"), beats=3, time_signature="6/8", tpq=96)
    assert [(ts.time, ts.numerator, ts.denominator) for ts in score.time_signatures] == [(0, 6, 8)]
    # a dotted half (3 quarters of 96 ticks) per chord; D7 = D F# A C from D3 (50)
    assert _notes(score) == [(0, 288, 55), (0, 288, 59), (0, 288, 62),
                             (288, 288, 50), (288, 288, 54), (288, 288, 57), (288, 288, 60)]
    assert list(score.get_downbeats()) == [0, 288]  # a bar of 6/8 is 6 eighths = 288 ticks
    twelve = chords_to_score(parse_chord_symbols("C F"), beats=6, time_signature="12/8")
    assert [n.time for n in twelve.tracks[0].notes] == [0, 0, 0, 2880, 2880, 2880]
    assert list(twelve.get_downbeats()) == [0, 2880]


def test_remi_tokens_carry_the_meter():
    tok = build_tokenizer("REMI", (21, 109))
    for meter in ("3/4", "6/8", "2/4", "5/4", "12/8", "4/4"):
        seq = tok.encode(chords_to_score(parse_chord_symbols("C G"), beats=3, time_signature=meter))
        tokens = (seq[0] if isinstance(seq, list) else seq).tokens
        assert f"TimeSig_{meter}" in tokens and {t for t in tokens if t.startswith("TimeSig_")} == {f"TimeSig_{meter}"}


@pytest.mark.parametrize("bad", ["3-4", "3/5", "0/4", "33/4", "3/64", "3/", "three/four", "", "3/4/4"])
def test_a_bad_time_signature_is_one_user_error(bad):
    with pytest.raises(UserError) as err:
        chords_to_score(parse_chord_symbols("C G"), time_signature=bad)
    assert str(err.value).startswith(f"bad --time-signature {bad!r}: expected N/D such as 3/4 or 6/8")
    assert "\n" not in str(err.value)


def test_time_signature_bounds():
    assert parse_time_signature("1/1") == (1, 1) and parse_time_signature(" 32/32 ") == (32, 32)
    assert parse_time_signature("7/8") == (7, 8)
    with pytest.raises(UserError, match="chord-beats must be > 0"):
        chords_to_score(parse_chord_symbols("C G"), beats=0, time_signature="3/4")


def _generator() -> ConditionalGenerator:
    tok = build_tokenizer("REMI", (21, 109))
    torch.manual_seed(0)
    model = Seq2Seq(vocab_size=len(tok), embedding_dim=8, hidden_size=8, dropout=0.0)
    return ConditionalGenerator(model, tok, {"pairs": {"source": "chords", "target": "melody", "melody": "target"}})


def test_condition_writes_the_meter_and_bars_follow_it():
    gen = _generator()
    waltz = gen.condition("F C7 C7 F F C7 C7 F", chord_beats=3, time_signature="3/4")
    score = gen.tokenizer.decode([waltz])
    assert [(ts.numerator, ts.denominator) for ts in score.time_signatures] == [(3, 4)]
    assert gen.bars(waltz) == 8
    jig = gen.condition("G C D G", chord_beats=3, time_signature="6/8")
    assert [(ts.numerator, ts.denominator) for ts in gen.tokenizer.decode([jig]).time_signatures] == [(6, 8)]
    assert gen.bars(jig) == 4
    assert gen.bars(gen.condition("C G Am F", chord_beats=4)) == 4  # 4/4 stays the default
    known = r"\(it knows 1/4, 2/4, 3/4, 4/4, 5/4, 6/4, 3/8, 6/8, 12/8\)"
    with pytest.raises(UserError, match=f"7/8 has no token in this model's tokenizer {known}"):
        gen.condition("C G", time_signature="7/8")  # miditok would have written 4/4 without a word
    with pytest.raises(UserError, match="bad --time-signature"):
        gen.condition("C G", time_signature="3:4")


def test_generate_refuses_a_bad_meter_in_one_line(tmp_path, monkeypatch, capsys):
    from melodylm.cli import main

    monkeypatch.chdir(tmp_path)
    for flags, message in ((["--time-signature", "3-4"], "bad --time-signature '3-4': expected N/D"),
                           (["--chord-beats", "0"], "--chord-beats must be > 0")):
        # tmp_path exists but holds no checkpoint: the meter is refused before the checkpoint is looked for
        argv = ["generate", "--ckpt", str(tmp_path), "--condition", "C G", "--out", "out", *flags]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err and "Traceback" not in err, err
