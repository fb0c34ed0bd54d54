"""prepare: quarantine with reasons, hash splits, cache, isolation from crashes and hangs."""

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from miditok import TokSequence
import pytest

from melodylm.data import prepare as prep
from melodylm.data.prepare import PrepareSettings, prepare, split_of
from melodylm.data.store import Pieces
from tests.conftest import run_cli


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def mixed_folder(tmp_path, oneills_midi) -> Path:
    """Ten real tunes plus every kind of bad file, in nested folders."""
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    for f in oneills_midi[:10]:
        shutil.copy(f, folder / "nested" / f.name)
    good = oneills_midi[0].read_bytes()
    (folder / "empty.mid").write_bytes(b"")
    (folder / "truncated.mid").write_bytes(good[: len(good) // 3])
    (folder / "garbage.mid").write_bytes(os.urandom(2000))
    (folder / "notes.txt").write_text("not music")
    (folder / "copy.midi").write_bytes(good)  # same content as a good file
    return folder


def test_every_file_is_used_or_quarantined_with_reason(mixed_folder, tmp_path):
    out = tmp_path / "prep"
    proc = run_cli("prepare", str(mixed_folder), "--out", str(out), "--melody", "--workers", "2")
    manifest, quarantine = read_jsonl(out / "manifest.jsonl"), read_jsonl(out / "quarantine.jsonl")
    inputs = {str(p) for p in mixed_folder.rglob("*") if p.is_file()}
    listed = [r["path"] for r in manifest + quarantine]
    assert sorted(listed) == sorted(inputs)  # exactly once each
    reasons = {Path(r["path"]).name: r["code"] for r in quarantine}
    assert reasons["empty.mid"] == "empty"
    assert reasons["truncated.mid"] == "unreadable"
    assert reasons["garbage.mid"] == "not_midi"
    assert reasons["notes.txt"] == "not_midi"
    assert list(reasons.values()).count("duplicate") == 1  # copy.midi and its original: one is used
    assert all(r["reason"] for r in quarantine)
    assert len(manifest) == 10
    for row in manifest:
        assert {"path", "sha256", "split", "notes", "duration"} <= row.keys()
        assert row["notes"] >= 16 and row["duration"] > 0
    assert "quarantined" in proc.stdout + proc.stderr
    assert (out / "tokenizer.json").is_file()


def test_split_is_a_function_of_content_only():
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(200)]
    first = [split_of(s, 0.1, 0.1) for s in shas]
    assert first == [split_of(s, 0.1, 0.1) for s in shas]
    assert set(first) == {"train", "val", "test"}


def test_adding_files_never_moves_existing_ones(tmp_path, oneills_midi):
    small, big = tmp_path / "small", tmp_path / "big"
    for folder, files in ((small, oneills_midi[:20]), (big, oneills_midi[:40])):
        folder.mkdir()
        for f in files:
            shutil.copy(f, folder / f.name)
    splits = {}
    for folder in (small, big):
        prepare([str(folder)], tmp_path / f"out-{folder.name}", PrepareSettings(), workers=1)
        splits[folder.name] = {Path(r["path"]).name: r["split"]
                               for r in read_jsonl(tmp_path / f"out-{folder.name}" / "manifest.jsonl")}
    for name, split in splits["small"].items():
        assert splits["big"][name] == split


def test_rerun_reuses_cache_and_gives_identical_arrays(tmp_path, oneills_midi, monkeypatch):
    out = tmp_path / "out"
    settings = PrepareSettings(transpose=(-1, 1))
    first = prepare([str(oneills_midi[0].parent)], out, settings, workers=2)
    arrays = {s: Pieces(out, s).flat.copy() for s in ("train", "val", "test")}

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached file was parsed again")

    monkeypatch.setattr(prep, "_run_workers", must_not_run)
    start = time.perf_counter()
    second = prepare([str(oneills_midi[0].parent)], out, settings, workers=2)
    assert time.perf_counter() - start < 30  # generous: it only reads the cache
    assert first["tokens"] == second["tokens"]
    for s, flat in arrays.items():
        np.testing.assert_array_equal(Pieces(out, s).flat, flat)


def test_transposition_only_augments_training_split(tmp_path, oneills_midi):
    folder = oneills_midi[0].parent
    plain = prepare([str(folder)], tmp_path / "a", PrepareSettings(), workers=2)
    aug = prepare([str(folder)], tmp_path / "b", PrepareSettings(transpose=(-2, 2)), workers=2)
    assert aug["pieces"]["val"] == plain["pieces"]["val"] and aug["pieces"]["test"] == plain["pieces"]["test"]
    assert plain["pieces"]["train"] < aug["pieces"]["train"] <= 5 * plain["pieces"]["train"]


def test_bpe_shortens_sequences_and_decodes_to_the_same_notes(tmp_path, oneills_midi):
    from melodylm.data.tokenizer import load_tokenizer

    folder = oneills_midi[0].parent
    base = prepare([str(folder)], tmp_path / "base", PrepareSettings(), workers=2)
    bpe = prepare([str(folder)], tmp_path / "bpe", PrepareSettings(bpe_vocab=800), workers=2)
    assert bpe["vocab_size"] == 800
    assert bpe["tokens"]["train"] < base["tokens"]["train"]
    tok_base, tok_bpe = load_tokenizer(tmp_path / "base" / "tokenizer.json"), load_tokenizer(tmp_path / "bpe" / "tokenizer.json")
    for i in range(3):
        a = tok_base.decode([Pieces(tmp_path / "base", "train")[i].tolist()])
        b = tok_bpe.decode([Pieces(tmp_path / "bpe", "train")[i].tolist()])
        assert a.tracks[0].notes.numpy()["pitch"].tolist() == b.tracks[0].notes.numpy()["pitch"].tolist()


# --- isolation: a worker that crashes or hangs costs one file, not the job -------------


def crashing_or_hanging_inspect(path, split, settings):
    name = Path(path).name
    if name.startswith("crash"):
        os._exit(11)
    if name.startswith("hang"):
        time.sleep(60)
    return {"status": "ok", "notes": 20, "duration": 1.0, "dropped_out_of_range": 0,
            "tokens": 3, "ids": [4, 5, 6], "augmented": []}


def test_crash_and_hang_are_quarantined(tmp_path, oneills_midi, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("crash.mid", "hang.mid", "fine.mid"):
        shutil.copy(oneills_midi[{"crash.mid": 0, "hang.mid": 1, "fine.mid": 2}[name]], folder / name)
    monkeypatch.setattr(prep, "inspect_file", crashing_or_hanging_inspect)
    summary = prepare([str(folder)], tmp_path / "out", PrepareSettings(), workers=2, timeout=3)
    codes = {Path(r["path"]).name: r["code"] for r in read_jsonl(tmp_path / "out" / "quarantine.jsonl")}
    assert codes == {"crash.mid": "crash", "hang.mid": "timeout"}
    assert summary["used"] == 1


def test_user_errors_are_one_line(tmp_path):
    proc = run_cli("prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing does not exist" in proc.stderr
    proc = run_cli("prepare", "music21:nosuchcorpus", "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "no corpus named" in proc.stderr


def test_cache_is_keyed_on_the_vocabulary(tmp_path, oneills_midi, monkeypatch):
    """Changing how the tokenizer is built (same options) must not reuse cached ids."""
    from melodylm.data import tokenizer as tok

    folder = str(oneills_midi[0].parent)
    prepare([folder], tmp_path / "out", PrepareSettings(), workers=1)
    original = tok.build_tokenizer

    def coarser(kind="REMI", pitch_range=(21, 109), velocities=0, beat_res=None):
        return original(kind, pitch_range, velocities, beat_res={(0, 4): 8, (4, 12): 4})

    monkeypatch.setattr(prep, "build_tokenizer", coarser)
    summary = prepare([folder], tmp_path / "out", PrepareSettings(), workers=1)
    from melodylm.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tmp_path / "out" / "tokenizer.json")
    assert summary["vocab_size"] == len(tokenizer)
    for i in range(3):
        assert tokenizer.tokens_errors(TokSequence(ids=Pieces(tmp_path / "out", "train")[i].tolist())) == 0
    assert int(Pieces(tmp_path / "out", "train").flat.max()) < len(tokenizer)
