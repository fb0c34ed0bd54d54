"""The music21 playlist example: categories from the corpus headers, MIDI out, deterministic, fit -> playlist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import symusic

from melodylm.errors import UserError
from melodylm.data.playlists import read_catalog, read_playlists
from melodylm.playlist.music21set import abc_key, abc_meter, build, read_corpus

from tests.conftest import REPO, run_cli

DEBUG = str(REPO / "configs" / "playlist" / "debug.yaml")
SUBSET = dict(max_tunes=30, per_category=6, seed=0,
              categories=["jigs", "slow airs", "christmas carols", "bach chorales"])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("music21set")
    summary = build(out, **SUBSET)
    assert summary["categories"] == 4 and summary["tracks"] == 120  # 30 each (Essen has just 30 carols)
    return out


def test_headers_give_categories_titles_keys_and_meters():
    tunes = {t["id"]: t for t in read_corpus(["reels", "slow airs", "christmas carols", "bach chorales"])}
    reel = tunes["ryans-7thRegimentReel"]  # R:reel
    assert (reel["title"], reel["category"]) == ("7th Regiment -- Reel", "reels")
    assert (reel["key"], reel["meter"]) == ("A", "2/4")
    air = tunes["oneills-0001"]  # no R:, N: "Very slow"
    assert (air["title"], air["category"], air["key"]) == ("The Enchanted Valley", "slow airs", "Gm")
    assert tunes["bach-bwv101_7"]["title"] == "BWV 101.7"
    assert {t["category"] for t in tunes.values()} == {"reels", "slow airs", "christmas carols", "bach chorales"}
    assert all(t["id"].startswith("essen-") for t in tunes.values() if t["category"] == "christmas carols")


def test_abc_keys_and_meters_are_normalised():
    assert [abc_key(k) for k in ["G", "Gm", "E minor", "Ador", "D Mixolydian", "Bb", "HP", ""]] == \
        ["G", "Gm", "Em", "Ador", "Dmix", "Bb", "", ""]
    assert [abc_meter(m) for m in ["C", "C|", "6/8", " 3/4"]] == ["4/4", "2/2", "6/8", "3/4"]


def test_every_playlist_track_is_a_readable_catalog_midi_file(built):
    cat = read_catalog(built / "catalog.jsonl")
    lists = read_playlists(built / "playlists.jsonl", cat)  # unknown ids would raise
    assert {t for p in lists for t in p.tracks} <= set(cat.ids)
    for tid in cat.ids:
        path = Path(cat.paths[tid])
        assert path.stem == tid  # `melodylm embed` names tracks by file stem
        assert symusic.Score(str(path)).note_num() > 0


def test_playlists_draw_from_the_category_their_title_names(built):
    rows = {r["id"]: r for r in map(json.loads, (built / "catalog.jsonl").read_text().splitlines())}
    lists = [json.loads(line) for line in (built / "playlists.jsonl").read_text().splitlines()]
    assert {p["pid"].rsplit("-", 1)[0] for p in lists} == set(SUBSET["categories"])
    for p in lists:
        category = p["pid"].rsplit("-", 1)[0]
        assert category in p["title"] and 8 <= len(p["tracks"]) <= 25
        assert {rows[t]["category"] for t in p["tracks"]} == {category}
        narrowed = re.search(r" in (G|D|6/8)$", p["title"])
        if narrowed:
            field = "meter" if "/" in narrowed.group(1) else "key"
            assert {rows[t][field] for t in p["tracks"]} == {narrowed.group(1)}
    assert any(re.search(r" in (G|D)$", p["title"]) for p in lists)


def test_same_seed_same_set(built, tmp_path):
    build(tmp_path, **SUBSET)
    for name in ("catalog.jsonl", "playlists.jsonl"):
        assert (tmp_path / name).read_text().replace(str(tmp_path), "OUT") == \
            (built / name).read_text().replace(str(built), "OUT")
    assert sorted(p.name for p in (tmp_path / "midi").iterdir()) == sorted(p.name for p in (built / "midi").iterdir())


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="unknown category 'polkas'"):
        build(tmp_path, categories=["polkas"])
    with pytest.raises(UserError, match="at least 12"):
        build(tmp_path, max_tunes=5)
    proc = run_cli("build-playlists", "music21", "--out", str(tmp_path), "--category", "polkas", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "unknown category" in proc.stderr


@pytest.mark.slow
def test_fit_then_playlist_on_the_built_set(built, tmp_path):
    run_cli("fit", "--config", DEBUG, "--data.init_args.playlists", str(built / "playlists.jsonl"),
            "--data.init_args.catalog", str(built / "catalog.jsonl"), cwd=tmp_path)
    m3u = tmp_path / "out.m3u"
    run_cli("playlist", "--ckpt", str(tmp_path / "checkpoints" / "playlist-debug"), "--title", "slow airs",
            "--n", "10", "--out", str(m3u))
    paths = [ln for ln in m3u.read_text().splitlines() if not ln.startswith("#")]
    assert len(paths) == len(set(paths)) == 10 and all(Path(p).is_file() for p in paths)

    from melodylm.evaluation.playlist import evaluate

    report = tmp_path / "report.json"
    ckpt = str(tmp_path / "checkpoints" / "playlist-debug")
    proc = run_cli("evaluate", "playlist", "--ckpt", ckpt, "--playlists", str(built / "playlists.jsonl"),
                   "--n", "50", "--out", str(report))
    written = json.loads(report.read_text())
    assert json.loads(proc.stdout) == written
    assert set(written["results"]) == {"popularity", "title_match", "model"} and written["catalog"] == 120
    want = evaluate(ckpt, str(built / "playlists.jsonl"), n=50)
    for name, row in want["results"].items():
        assert written["results"][name] == pytest.approx(row)
