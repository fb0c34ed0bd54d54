"""Music metrics on hand-built notes with exact values; MGEval set comparison; ``melodylm evaluate samples``."""

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from symusic import Note, Score, TimeSignature, Track

from melodylm.commands import evaluate as evaluate_command
from melodylm.errors import UserError
from melodylm.evaluation import samples
from melodylm.evaluation.music import (
    FEATURE_UNITS, NOTE_LENGTH_CLASSES, compare_sets, invalid_token_rate, kde_on_grid, overlap_and_kl,
    piece_metrics, scott_bandwidth,
)

Q = 480  # ticks per quarter note (one beat)


def make_score(notes, tpq=Q, time_signature=None, drums=()) -> Score:
    """notes: (time, duration, pitch) in ticks on one piano track; ``drums`` the same on a drum track."""
    score = Score(tpq)
    for name, items, is_drum in (("piano", notes, False), ("drums", drums, True)):
        if not items:
            continue
        track = Track(name=name, program=0, is_drum=is_drum)
        for t, d, p in items:
            track.notes.append(Note(t, d, p, 80))
        score.tracks.append(track)
    if time_signature:
        score.time_signatures.append(TimeSignature(0, *time_signature))
    return score


def line(pitches, beats=1.0, tpq=Q):
    """A monophonic line of equal notes, ``beats`` long each."""
    step = round(beats * tpq)
    return [(i * step, step, p) for i, p in enumerate(pitches)]


C_MAJOR = [60, 62, 64, 65, 67, 69, 71]


# --- one piece: exact values --------------------------------------------------------


def test_c_major_scale():
    m = piece_metrics(make_score(line(C_MAJOR)))
    assert m["note_count"] == 7 and m["pitch_count"] == 7
    assert m["pitch_class_entropy"] == pytest.approx(math.log2(7))
    assert m["scale_consistency"] == 1.0
    assert m["pitch_range"] == 11
    assert m["mean_abs_interval"] == pytest.approx(11 / 6)  # 2 2 1 2 2 2
    assert m["mean_ioi"] == 1.0
    assert m["empty_beat_rate"] == 0.0
    assert m["polyphony"] == 1.0
    assert m["note_length_hist"] == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # all quarter notes
    assert set(m) == {*FEATURE_UNITS, "note_length_hist"}


def test_chromatic_scale_entropy_and_scale_consistency():
    m = piece_metrics(make_score(line(range(60, 72))))
    assert m["pitch_class_entropy"] == pytest.approx(math.log2(12))
    assert m["scale_consistency"] == pytest.approx(7 / 12)
    # a minor-key melody fits its own natural-minor scale: A minor = C major notes
    assert piece_metrics(make_score(line([57, 59, 60, 62, 64, 65, 67])))["scale_consistency"] == 1.0


def test_empty_bar_counts_four_empty_beats():
    notes = line([60, 62, 64, 65]) + [(8 * Q, 4 * Q, 67)]  # bar 1 full, bar 2 silent, bar 3 one whole note
    assert piece_metrics(make_score(notes))["empty_beat_rate"] == pytest.approx(4 / 12)
    # a note from beat 0.5 to 1.5 sounds in beats 0 and 1; beat 2 is empty, beat 3 sounds
    notes = [(Q // 2, Q, 60), (3 * Q, Q, 62)]
    assert piece_metrics(make_score(notes))["empty_beat_rate"] == pytest.approx(1 / 4)


def test_groove_identical_bars_and_one_difference():
    bar = [0, 1, 2, 3.5]  # onsets in beats
    same = [(round((b + 4 * k) * Q), Q // 2, 60) for k in range(2) for b in bar]
    assert piece_metrics(make_score(same))["groove_consistency"] == 1.0
    differ = same[:-1]  # bar 2 lacks the onset at beat 3.5: one of 96 grid steps differs
    assert piece_metrics(make_score(differ))["groove_consistency"] == pytest.approx(1 - 1 / 96)
    three_bars = same + [(8 * Q, Q, 60)]  # bar 3 has one onset; pairs differ by 0 and 3 steps
    assert piece_metrics(make_score(three_bars))["groove_consistency"] == pytest.approx(1 - (0 + 3 / 96) / 2)


def test_groove_follows_the_time_signature():
    eighths = line([60] * 12, beats=0.5)  # six beats of eighth notes
    assert piece_metrics(make_score(eighths, time_signature=(6, 8)))["groove_consistency"] == 1.0
    # in the default 4/4, bar 1 has 8 onsets and bar 2 only 4 of them: 4 of 96 steps differ
    assert piece_metrics(make_score(eighths))["groove_consistency"] == pytest.approx(1 - 4 / 96)
    # a single bar has no neighbour
    assert math.isnan(piece_metrics(make_score(line(C_MAJOR[:4])))["groove_consistency"])


def test_polyphony_ioi_and_intervals_with_a_chord():
    notes = [(0, Q, 60), (0, Q, 64), (0, Q, 67), (Q, Q, 72), (3 * Q, Q, 60)]  # 3 notes, 1 note, rest, 1 note
    m = piece_metrics(make_score(notes))
    assert m["polyphony"] == pytest.approx((3 + 1 + 1) / 3)  # the silent beat does not count
    assert m["mean_ioi"] == pytest.approx((1 + 2) / 2)  # distinct onsets 0, 1, 3
    assert m["mean_abs_interval"] == pytest.approx((4 + 3 + 5 + 12) / 4)  # onset order, then pitch
    assert m["empty_beat_rate"] == pytest.approx(1 / 4)
    assert m["pitch_count"] == 4 and m["note_count"] == 5 and m["pitch_range"] == 12


def test_note_length_histogram_classes():
    beats = [4, 1, 1.5, 1 / 3, 1 / 3, 1 / 3, 0.26]  # whole, quarter, dotted quarter, 3 triplet 8ths, ~16th
    notes, t = [], 0
    for b in beats:
        notes.append((t, round(b * Q), 60))
        t += round(b * Q)
    hist = piece_metrics(make_score(notes))["note_length_hist"]
    expected = np.zeros(12)
    for b in beats:
        expected[np.abs(NOTE_LENGTH_CLASSES - b).argmin()] += 1 / len(beats)
    assert expected[[0, 2, 6, 11, 4]] == pytest.approx([1 / 7, 1 / 7, 1 / 7, 3 / 7, 1 / 7])
    assert hist == pytest.approx(expected.tolist())


def test_drums_ignored_tracks_merged_and_resolution_free():
    a = make_score(line(C_MAJOR), drums=[(0, Q, 36), (Q, Q, 38)])
    b = make_score(line(C_MAJOR, tpq=96), tpq=96)
    assert piece_metrics(a) == piece_metrics(b)
    two = make_score([(0, 2 * Q, 48)])  # a second track under the melody
    two.tracks.append(make_score(line([60, 62])).tracks[0])
    m = piece_metrics(two)
    assert m["note_count"] == 3 and m["polyphony"] == 2.0 and m["pitch_range"] == 14


def test_empty_and_one_note_pieces_give_nan_not_errors():
    m = piece_metrics(make_score([]))
    assert m["note_count"] == 0 and m["pitch_count"] == 0 and sum(m["note_length_hist"]) == 0
    assert all(math.isnan(m[k]) for k in FEATURE_UNITS if k not in ("note_count", "pitch_count"))
    one = piece_metrics(make_score([(0, Q, 60)]))
    assert one["pitch_class_entropy"] == 0.0 and one["empty_beat_rate"] == 0.0
    assert math.isnan(one["mean_abs_interval"]) and math.isnan(one["mean_ioi"])


# --- kernel densities and set comparison --------------------------------------------


def test_kde_matches_the_direct_sum_and_integrates_to_one():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 1.5, 200)
    bw = scott_bandwidth(x)
    assert bw == pytest.approx(np.std(x, ddof=1) * 200 ** -0.2)
    grid = np.linspace(-10, 14, 2048)
    density = kde_on_grid(x, grid, bw)
    direct = np.exp(-0.5 * ((grid[:, None] - x) / bw) ** 2).sum(1) / (len(x) * bw * math.sqrt(2 * math.pi))
    assert np.abs(density - direct).max() < 1e-3 * direct.max()
    assert density.sum() * (grid[1] - grid[0]) == pytest.approx(1.0, abs=1e-6)
    assert scott_bandwidth(np.ones(5)) == 0.0
    with pytest.raises(ValueError):
        kde_on_grid(np.ones(5), grid, 0.0)


def test_overlap_and_kl_extremes():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 300)
    oa, kl = overlap_and_kl(a, a)
    assert oa == pytest.approx(1.0, abs=1e-6) and kl == pytest.approx(0.0, abs=1e-9)
    oa, kl = overlap_and_kl(a, a + 100)
    assert oa < 1e-6 and kl > 10
    oa, _ = overlap_and_kl(a, rng.normal(0, 1, 500))
    assert 0.85 < oa < 1.0
    assert overlap_and_kl(np.zeros(4), np.zeros(9)) == pytest.approx((1.0, 0.0), abs=1e-6)  # zero variance
    assert overlap_and_kl(np.zeros(4), np.full(9, 3.0))[0] < 1e-6


def _pieces(rng, n, ranges):
    return [piece_metrics(make_score(line(rng.integers(60, 60 + r, 16).tolist(), beats=rng.choice([0.5, 1]))))
            for r in rng.choice(ranges, n)]


def test_compare_sets_self_near_one_far_apart_near_zero():
    rng = np.random.default_rng(2)
    ref = _pieces(rng, 40, [8, 10, 12, 14])
    same = compare_sets(ref, ref)
    for key, row in same.items():
        assert row["oa"] > 0.9, key  # only the n self-distances (0) set the inter-set density apart
        assert row["generated_mean"] == row["reference_mean"]
    far = [{**p, "pitch_range": p["pitch_range"] + 60, "mean_ioi": p["mean_ioi"] * 50} for p in ref[:20]]
    cmp = compare_sets(far, ref)
    assert cmp["pitch_range"]["oa"] < 0.01 and cmp["mean_ioi"]["oa"] < 0.01
    assert cmp["pitch_range"]["kl"] > 5 and cmp["pitch_range"]["generated_mean"] > 60
    assert len(cmp["note_length_hist"]["generated_mean"]) == 12


def test_compare_sets_drops_nan_pieces_and_needs_two_references():
    ref = [piece_metrics(make_score(line(C_MAJOR))), piece_metrics(make_score([(0, Q, 60)]))]
    out = compare_sets(ref, ref)
    assert out["mean_ioi"]["reference_pieces"] == 1 and math.isnan(out["mean_ioi"]["oa"])
    assert out["pitch_range"]["reference_pieces"] == 2 and not math.isnan(out["pitch_range"]["oa"])


def test_invalid_token_rate_from_sidecars(tmp_path):
    paths = []
    for i, sidecar in enumerate([{"invalid_token_rate": 0.1}, {"invalid_token_rate": 0.3}, {"tokens": 5}, None]):
        path = tmp_path / f"sample-{i:03d}.mid"
        make_score(line(C_MAJOR)).dump_midi(str(path))
        if sidecar is not None:
            path.with_suffix(".json").write_text(json.dumps(sidecar))
        paths.append(path)
    assert invalid_token_rate(paths) == (pytest.approx(0.2), 2)
    assert invalid_token_rate(paths[2:]) == (None, 0)


# --- melodylm evaluate samples -------------------------------------------------------


def _args(*argv):
    parser = argparse.ArgumentParser()
    evaluate_command.add_arguments(parser)
    return parser.parse_args(["samples", *(str(a) for a in argv)])


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(3)
    gen, ref = tmp_path / "samples", tmp_path / "reference" / "nested"
    gen.mkdir()
    ref.mkdir(parents=True)
    for i in range(4):
        make_score(line(rng.integers(60, 72, 12).tolist())).dump_midi(str(gen / f"sample-{i:03d}.mid"))
    (gen / "sample-000.json").write_text(json.dumps({"invalid_token_rate": 0.25}))
    (gen / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00")
    (gen / "notes.txt").write_text("not music")
    for i in range(6):
        make_score(line(rng.integers(55, 79, 16).tolist())).dump_midi(str(ref / f"tune-{i}.midi"))
    return gen, tmp_path / "reference"


def test_evaluate_prints_table_lists_skipped_and_writes_json(folders, tmp_path, capsys, caplog):
    gen, ref = folders
    out = tmp_path / "report" / "metrics.json"
    assert evaluate_command.main(_args(gen, "--reference", ref, "--json", out, "--workers", 1)) == 0
    text = capsys.readouterr().out
    assert "generated: 4 pieces" in text and "(1 skipped)" in text and "reference: 6 pieces" in text
    for key in FEATURE_UNITS:
        assert key in text
    assert "invalid_token_rate: 0.2500 (mean of 1 of 5 sample sidecars)" in text
    assert "broken.mid" in caplog.text  # skipped files are named, never dropped silently
    report = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert report["samples"]["skipped"][0]["path"].endswith("broken.mid")
    assert report["reference"]["pieces"] == 6
    assert set(report["features"]["pitch_range"]) >= {"generated_mean", "reference_mean", "oa", "kl"}
    assert 0 <= report["features"]["pitch_range"]["oa"] <= 1
    assert [p["path"].endswith(".mid") for p in report["per_file"]["samples"]] == [True] * 4


def test_json_safe_turns_nan_into_null_at_any_depth():
    nan = float("nan")
    assert samples.json_safe({"a": nan, "b": [1.0, {"c": nan}], "d": "x"}) == {"a": None, "b": [1.0, {"c": None}],
                                                                               "d": "x"}


def crashing_or_hanging_metrics(path: str) -> dict:
    """Stands in for samples.file_metrics (read_set's ``measure``) inside the (forked) worker processes."""
    name = Path(path).name
    if name.startswith("crash"):
        os._exit(11)
    if name.startswith("hang"):
        time.sleep(60)
    return {"note_count": 1.0}


def test_parser_crash_and_hang_cost_one_file(tmp_path):
    for name in ("crash.mid", "hang.mid", "fine.mid"):
        make_score(line(C_MAJOR)).dump_midi(str(tmp_path / name))
    files = samples.midi_files(tmp_path, "samples")
    pieces, skipped = samples.read_set(files, "samples", workers=2, timeout=2, measure=crashing_or_hanging_metrics)
    assert [p["path"].endswith("fine.mid") for p in pieces] == [True]
    reasons = {Path(s["path"]).name: s["reason"] for s in skipped}
    assert "timed out" in reasons["hang.mid"] and "ProcessExpired" in reasons["crash.mid"]


def test_max_files_is_a_deterministic_spread(folders):
    _, ref = folders
    picked = samples.midi_files(ref, "reference", max_files=3)
    assert [p.name for p in picked] == ["tune-0.midi", "tune-2.midi", "tune-5.midi"]  # 0, 2.5 -> 2, 5
    assert picked == samples.midi_files(ref, "reference", max_files=3)


def test_missing_or_empty_folders_are_user_errors(folders, tmp_path):
    gen, ref = folders
    with pytest.raises(UserError, match="does not exist"):
        evaluate_command.main(_args(gen, "--reference", tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no music here")
    with pytest.raises(UserError, match="no MIDI files"):
        evaluate_command.main(_args(tmp_path / "empty", "--reference", ref))


# --- real music ---------------------------------------------------------------------


def test_real_melodies_have_plausible_metrics(oneills_midi):
    pieces = [piece_metrics(Score(str(p))) for p in oneills_midi[:60]]
    assert all(p["note_count"] > 16 for p in pieces)
    assert np.mean([p["scale_consistency"] for p in pieces]) > 0.95  # folk tunes stay in their key
    assert all(p["polyphony"] == pytest.approx(1.0) for p in pieces)  # single melodic lines
    assert all(0.5 < p["groove_consistency"] <= 1 for p in pieces)
    first, second = pieces[:30], pieces[30:]
    cmp = compare_sets(first, second)
    assert all(row["oa"] > 0.5 for row in cmp.values() if not math.isnan(row["oa"]))


def test_reference_can_be_a_manifest_split(tmp_path, oneills_midi):
    import json

    from melodylm.evaluation.samples import midi_files

    manifest = tmp_path / "manifest.jsonl"
    rows = [{"path": str(p), "split": "test" if i % 3 == 0 else "train"} for i, p in enumerate(oneills_midi[:9])]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert midi_files(manifest, "reference", split="test") == sorted(oneills_midi[i] for i in (0, 3, 6))
    assert len(midi_files(manifest, "reference")) == 9
