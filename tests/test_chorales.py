"""The Bach chorale pair source: real chorales from music21's corpus (it ships with music21), checked by hand.

bwv66.6 (f# minor, a one-beat pickup, one tie in the soprano) is the known
chorale; the expected labels of its first beats were read off music21's
``chordify()`` of all four voices. A hand-built four-part score pins the
exact ticks of a pickup, a tie across a bar line, a rest and the merging of
chords.
"""

from __future__ import annotations

import json

import music21
import numpy as np
import pytest
from music21 import meter, note, stream
from symusic import Score

from melodylm.data import chorales
from melodylm.data.chords import chord_label, parse_chord_symbol
from melodylm.data.corpus import pickup_padding
from melodylm.data.pairs import PairSettings, build_pairs
from melodylm.data.tokenizer import build_tokenizer
from melodylm.errors import UserError

BAR_44 = 4 * 480


@pytest.fixture(scope="module")
def bwv66(tmp_path_factory):
    """bwv66.6 through chorale_to_scores, written with dump_midi and read back."""
    chorale = music21.corpus.parse("bach/bwv66.6")
    melody, chords, spans = chorales.chorale_to_scores(chorale)
    folder = tmp_path_factory.mktemp("bwv66")
    melody.dump_midi(folder / "melody.mid")
    chords.dump_midi(folder / "chords.mid")
    return chorale, Score(str(folder / "melody.mid")), Score(str(folder / "chords.mid")), spans


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The first 6 chorale files by name: bwv1.6 (horn + SATB: skipped), bwv10.7 (no pickup), bwv101.7, ..."""
    out = tmp_path_factory.mktemp("chorales")
    return out, chorales.export_chorales(out, limit=6)


def _notes(score: Score) -> list[tuple[int, int, int]]:
    return [(n.time, n.duration, n.pitch) for n in score.tracks[0].notes]


def test_melody_is_the_soprano_with_ties_merged(bwv66):
    chorale, melody, _, _ = bwv66
    soprano = chorale.parts["Soprano"]
    assert len(soprano.flatten().notes) == 37  # one tie (F#4 - F#4 in the last phrase)
    merged = list(soprano.stripTies().flatten().notes)
    notes = _notes(melody)
    assert len(notes) == len(merged) == 36
    assert [p for _, _, p in notes] == [n.pitch.midi for n in merged]
    assert [p for _, _, p in notes[:6]] == [73, 71, 69, 71, 73, 76]  # C#5 B4 | A4 B4 C#5 E5
    shift = 3 * 480  # the one-beat pickup ends bar 0
    assert [(t, d) for t, d, _ in notes] == [(int((n.offset + 3) * 480), int(n.quarterLength * 480)) for n in merged]
    assert notes[:3] == [(shift, 240, 73), (shift + 240, 240, 71), (BAR_44, 480, 69)]
    assert [(ts.time, ts.numerator, ts.denominator) for ts in melody.time_signatures] == [(0, 4, 4)]
    assert melody.ticks_per_quarter == 480 and melody.tempos[0].qpm == pytest.approx(120)


def test_chord_labels_match_chordify_of_the_four_voices(bwv66):
    chorale, _, chords, spans = bwv66
    lower = stream.Score(list(chorale.parts)).chordify().flatten().notes
    bass = chorale.parts["Bass"].stripTies().flatten().notes
    label_at = {}
    for start, end, label in spans:
        for tick in range(start, end, 480):
            label_at[tick] = label
    end = int(chorale.highestTime * 480) + 3 * 480
    for beat in range(0, int(chorale.highestTime)):  # music offsets of every beat: the pickup's, then the bars'
        chord = next(c for c in lower if c.offset <= beat < c.offset + c.quarterLength)
        low = next(n for n in bass if n.offset <= beat < n.offset + n.quarterLength)
        assert label_at[(beat + 3) * 480] == chord_label({p.pitchClass for p in chord.pitches}, low.pitch.pitchClass)
    # read off by hand (ATB, then the soprano): A3 E4 +C#5 | F#3 C#4 F#4 +A4, G#3 B3 E4 +B4, A3 E4 +C#5,
    # G#3 B3 E4 +E5 | A3 E4 +C#5, E3 E4 G#4 +B4, A2 C#4 E4 +A4, E#3 C#4 G#4 +C#5
    assert [label_at[t] for t in range(3 * 480, 12 * 480, 480)] == ["A", "F#m", "E", "A", "E", "A", "E", "A", "C#"]
    assert spans[0] == (0, 3 * 480, "N") and spans[-1][1] == end
    by_start: dict[int, list[tuple[int, int]]] = {}
    for t, d, p in _notes(chords):
        by_start.setdefault(t, []).append((d, p))
    written = [(s, e, label) for s, e, label in spans if label != "N"]
    assert sorted(by_start) == [s for s, _, _ in written]
    for start, stop, label in written:
        assert by_start[start] == [(stop - start, p) for p in parse_chord_symbol(label).pitches()]


def test_pickup_puts_the_first_full_bar_on_a_bar_line(bwv66):
    chorale, melody, chords, _ = bwv66
    soprano = chorale.parts["Soprano"]
    first, second = soprano.getElementsByClass(stream.Measure)[:2]
    assert first.paddingLeft == 3.0 and pickup_padding(soprano) == 3.0
    downbeat = second.notes[0]  # A4, the first full bar's downbeat, after the pickup's two notes
    note_ = melody.tracks[0].notes[len(first.notes)]
    assert note_.pitch == downbeat.pitch.midi == 69
    tick = note_.time
    assert tick == BAR_44 and tick % BAR_44 == 0
    assert list(melody.time_signatures) == list(chords.time_signatures)
    assert chords.tracks[0].notes[0].time == melody.tracks[0].notes[0].time == 3 * 480


def _satb(time_signature: str, voices: list[list]) -> stream.Score:
    """Four parts, each a list of measures, each a list of (name, quarters, tie) with name None for a rest."""
    parts = []
    for name, measures in zip(("Soprano", "Alto", "Tenor", "Bass"), voices):
        part = stream.Part(id=name)
        for i, items in enumerate(measures):
            m = stream.Measure(number=i)
            if i == 0:
                m.timeSignature = meter.TimeSignature(time_signature)
            for pitch, ql, tie in items:
                n = note.Rest(quarterLength=ql) if pitch is None else note.Note(pitch, quarterLength=ql)
                if tie:
                    n.tie = music21.tie.Tie(tie)
                m.append(n)
            part.append(m)
        parts.append(part)
    return stream.Score(parts)


def test_hand_made_chorale_gives_exact_ticks_and_merged_chords():
    q, h = 1.0, 2.0
    score = _satb("3/4", [
        [[("G4", q, None)], [("C5", h, "start"), ("C5", q, "stop")],
         [(None, q, None), ("D5", q, None), ("E5", q, None)], [("G5", h, None)]],
        [[("D4", q, None)], [("E4", q, None), ("E4", q, None), ("F4", q, None)],
         [(None, q, None), ("D4", q, None), ("C4", q, None)], [("C4", h, None)]],
        [[("B3", q, None)], [("G3", h, None), ("A3", q, None)],
         [(None, q, None), ("B3", q, None), ("G3", q, None)], [("E3", h, None)]],
        [[("G2", q, None)], [("C3", 3.0, None)],
         [(None, q, None), ("G2", q, None), ("C3", q, None)], [("C3", h, None)]],
    ])
    melody, chords, spans = chorales.chorale_to_scores(score)
    # a one-beat pickup in 3/4 ends bar 0 (ticks 960-1440); the tied C5 is one note; the rest is a gap
    assert _notes(melody) == [(960, 480, 67), (1440, 1440, 72), (3360, 480, 74), (3840, 480, 76), (4320, 960, 79)]
    assert [(ts.time, ts.numerator, ts.denominator) for ts in chords.time_signatures] == [(0, 3, 4)]
    # all four voices: C, C merge inside bar 1 (C5 over E4 G3 C3, then over F4 A3 C3: F); the C of bar 3 does not merge with the C before the bar line; all voices rest -> N
    assert spans == [(0, 960, "N"), (960, 1440, "G"), (1440, 2400, "C"), (2400, 2880, "F"), (2880, 3360, "N"),
                     (3360, 3840, "G"), (3840, 4320, "C"), (4320, 5280, "C")]
    assert [(t, d) for t, d, _ in _notes(chords)][::3] == [(s, e - s) for s, e, lab in spans if lab != "N"]


def test_beat_grid_compound_and_changing_meters():
    assert chorales.beat_grid([(0, 6, 8)], 2 * 1440) == [(0, True), (720, False), (1440, True), (2160, False)]
    assert chorales.beat_grid([(0, 12, 8)], 2880) == [(0, True), (720, False), (1440, False), (2160, False)]
    grid = chorales.beat_grid([(0, 3, 4), (1440, 4, 4)], 1440 + 1920 + 480)
    assert [t for t, bar in grid if bar] == [0, 1440, 3360]
    assert [t for t, _ in grid] == [0, 480, 960, 1440, 1920, 2400, 2880, 3360]


def test_three_two_is_written_as_six_four():
    part = _satb("3/2", [[[("C4", 6.0, None)]]] * 4).parts[0]
    assert chorales.time_signatures(part, 0.0) == [(0, 6, 4)]


def test_export_writes_pairs_summary_and_marker(exported):
    out, summary = exported
    assert json.loads((out / "export.json").read_text()) == summary
    assert (out / ".complete").is_file()
    assert summary["written"] == 5 and summary["skipped"] == {"not 4 parts": 1}
    assert summary["skipped_files"][0]["name"] == "bwv1.6" and "Horn 2" in summary["skipped_files"][0]["detail"]
    names = ["bwv10.7", "bwv101.7", "bwv102.7", "bwv103.6", "bwv104.6"]
    for side in ("melody", "chords"):
        assert sorted(p.stem for p in (out / side).glob("*.mid")) == names
    assert summary["time_signatures"] == {"4/4": 5}


def test_exported_chorales_pair_with_equal_bars(exported, tmp_path):
    """REMI writes Bar tokens up to a side's last onset: each side's count is that bar's index + 1.

    Both sides match except where the soprano holds its last note over bars in
    which the lower voices still move (bwv10.7: a 4-bar final G4 over 3 more bars of chords).
    """
    out, summary = exported
    pairs, unpaired = build_pairs(PairSettings(root=str(out), limit=6), tmp_path)
    assert unpaired == [] and len(pairs) == summary["written"]
    bar = build_tokenizer("REMI").vocab["Bar_None"]
    counts = {}
    for pair in pairs:
        counts[pair.name] = int(np.sum(pair.source == bar)), int(np.sum(pair.target == bar))
        for side, count in zip(("chords", "melody"), counts[pair.name]):
            last_onset = Score(str(out / side / f"{pair.name}.mid")).tracks[0].notes[-1].time
            assert count == last_onset // BAR_44 + 1, (pair.name, side)
    assert counts.pop("bwv10.7") == (22, 19)
    assert all(c == m > 8 for c, m in counts.values()), counts
    no_pickup = Score(str(out / "melody" / "bwv10.7.mid"))  # starts on a downbeat: nothing is shifted
    assert no_pickup.tracks[0].notes[0].time == 0


def test_resolve_root_passes_other_roots_and_exports_once(tmp_path, monkeypatch):
    assert chorales.resolve_root("../shared/data/nottingham/MIDI", tmp_path) == "../shared/data/nottingham/MIDI"
    calls = []
    real = chorales.export_chorales

    def small_export(out, limit=None):
        calls.append(out)
        return real(out, limit=2)

    monkeypatch.setattr(chorales, "export_chorales", small_export)
    folder = chorales.resolve_root("music21:bach", tmp_path)
    assert folder == str(tmp_path / "sources" / "music21-bach")
    marker = tmp_path / "sources" / "music21-bach" / ".complete"
    stamp = marker.stat().st_mtime_ns
    assert chorales.resolve_root("music21:bach", tmp_path) == folder
    assert len(calls) == 1 and marker.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (tmp_path / "sources" / "music21-bach" / "melody").iterdir()) == ["bwv10.7.mid"]
    with pytest.raises(UserError, match="music21:bach") as err:
        chorales.resolve_root("music21:nope", tmp_path)
    assert "\n" not in str(err.value) and "nope" in str(err.value)
