"""MIDI -> prepare -> fit (debug preset) -> checkpoint -> sample -> MIDI read back; score; resume."""

import json
import re

import pytest
from symusic import Score

import melodylm
from melodylm.checkpoint import read
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow


def test_fit_writes_best_and_last_checkpoints(trained):
    assert (trained / "last.ckpt").is_file()
    assert list(trained.glob("best-epoch*.ckpt"))
    ckpt = read(trained / "last.ckpt")
    assert ckpt["global_step"] == 8  # debug preset: 2 epochs x 4 batches


def test_sample_writes_midi_with_notes(trained, tmp_path):
    out = tmp_path / "samples"
    proc = run_cli("sample", "--ckpt", str(trained), "--num", "4", "--seed", "0", "--out", str(out),
                   "--max-tokens", "200", "--min-notes", "16")
    assert "wrote 4 samples" in proc.stdout + proc.stderr
    mids = sorted(out.glob("*.mid"))
    assert len(mids) == 4
    for mid in mids:
        score = Score(str(mid))
        notes = score.tracks[0].notes.numpy()
        assert score.note_num() >= 1
        assert ((notes["pitch"] >= 21) & (notes["pitch"] < 109)).all()
        assert mid.with_suffix(".png").stat().st_size > 1000
        meta = json.loads(mid.with_suffix(".json").read_text())
        assert meta["settings"]["seed"] == 0 and meta["tokens"] > 0


def test_same_seed_gives_identical_files(trained, tmp_path):
    for name in ("a", "b"):
        run_cli("sample", "--ckpt", str(trained / "last.ckpt"), "--num", "2", "--seed", "5",
                "--out", str(tmp_path / name), "--max-tokens", "100")
    mids = sorted((tmp_path / "a").glob("*.mid"))
    assert [m.name for m in mids] == ["sample-000.mid", "sample-001.mid"]
    assert sorted(m.name for m in (tmp_path / "b").glob("*.mid")) == [m.name for m in mids]
    for mid in mids:
        assert mid.read_bytes() == (tmp_path / "b" / mid.name).read_bytes()


def test_score_json_contract(trained, oneills_midi, tmp_path):
    files = [str(p) for p in oneills_midi[:3]]
    proc = run_cli("score", "--ckpt", str(trained / "last.ckpt"), "--json", *files)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["path"] for r in rows] == files
    for r in rows:
        assert {"path", "nll_token", "nll_note", "tokens", "notes"} <= r.keys()
        assert 0 < r["nll_token"] < 10 and r["nll_note"] > r["nll_token"]
    lm = melodylm.load(trained / "last.ckpt")
    direct = lm.score(oneills_midi[0])
    assert abs(direct.nll_token - rows[0]["nll_token"]) < 1e-6


def test_score_reports_bad_files_and_exits_nonzero(trained, oneills_midi, tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"nope")
    proc = run_cli("score", "--ckpt", str(trained / "last.ckpt"), "--json", str(oneills_midi[0]), str(bad), check=False)
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert "nll_token" in rows[0] and "not a MIDI file" in rows[1]["error"]


def test_resume_continues_step_count(prepared, tmp_path):
    config = str(REPO / "configs" / "debug.yaml")
    run_cli("fit", "--config", config, "--data.init_args.data_dir", str(prepared), cwd=tmp_path)
    last = tmp_path / "checkpoints" / "debug" / "last.ckpt"
    assert read(last)["global_step"] == 8
    run_cli("fit", "--config", config, "--data.init_args.data_dir", str(prepared),
            "--trainer.max_epochs", "3", "--ckpt_path", "last", cwd=tmp_path)
    resumed = read(last)
    assert resumed["global_step"] == 12 and resumed["epoch"] == 2


def test_validate_and_test_report_nll(trained, prepared, tmp_path):
    proc = run_cli("test", "--config", str(REPO / "configs" / "debug.yaml"), "--data.init_args.data_dir",
                   str(prepared), "--ckpt_path", str(trained / "last.ckpt"), cwd=tmp_path)
    assert re.search(r"test/nll_token\s*│\s*[0-9.]+", proc.stdout)


def test_sample_errors_are_one_line(trained, tmp_path):
    proc = run_cli("sample", "--ckpt", str(trained), "--temperature", "0", "--out", str(tmp_path), check=False)
    assert proc.returncode == 2 and "temperature must be > 0" in proc.stderr
    proc = run_cli("sample", "--ckpt", str(tmp_path / "nothing"), "--out", str(tmp_path), check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_primer_continuation_and_bar_limit(trained, oneills_midi, tmp_path):
    lm = melodylm.load(trained / "last.ckpt")
    primer_file = oneills_midi[0]
    primer = lm.primer_ids(primer_file, bars=2)
    primer_score = lm.to_score(primer)
    samples = lm.sample(num=6, primer=primer, bars=4, max_tokens=400, seed=3)
    bar_id = lm.tokenizer.vocab["Bar_None"]
    for s in samples:
        assert s.stop_reason in {"eos", "bars", "max_tokens"}
        assert s.ids.count(bar_id) <= 4  # at most 4 new bars after the primer
        assert lm.invalid_token_rate(primer + s.ids) == 0.0  # the grammar mask keeps it decodable
        kept = lm.to_score(s.ids, primer=primer, keep_primer=True)
        head = kept.tracks[0].notes.numpy()
        ref = primer_score.tracks[0].notes.numpy()
        n = len(ref["pitch"])
        assert head["pitch"][:n].tolist() == ref["pitch"].tolist()  # the piece starts with the primer
        assert head["time"][:n].tolist() == ref["time"].tolist()
        dropped = lm.to_score(s.ids, primer=primer, keep_primer=False)
        assert dropped.note_num() == kept.note_num() - n
    # The score of the continuation given the primer is the sum the sampler saw.
    s = samples[0]
    lp = lm.decoder.token_logprobs([s.ids], primer=primer)[0]
    total = float(lp.sum()) if s.ended else float(lp[:-1].sum())
    assert abs(total - s.logprob) < 1e-3


def test_sample_cli_with_constraints_writes_wav_and_sidecar(trained, oneills_midi, tmp_path):
    out = tmp_path / "s"
    run_cli("sample", "--ckpt", str(trained), "--num", "3", "--seed", "2", "--out", str(out),
            "--primer", str(oneills_midi[1]), "--primer-bars", "1", "--bars", "4", "--key", "D major",
            "--pitch-range", "55:91", "--max-tokens", "300", "--drop-primer")
    mids = sorted(out.glob("*.mid"))
    assert [m.name for m in mids] == ["sample-000.mid", "sample-001.mid", "sample-002.mid"]
    for mid in mids:
        meta = json.loads(mid.with_suffix(".json").read_text())
        assert meta["invalid_token_rate"] == 0.0 and meta["settings"]["key"] == "D major"
        assert mid.with_suffix(".wav").stat().st_size > 1000
        score = Score(str(mid))
        pitches = score.tracks[0].notes.numpy()["pitch"].astype(int)
        assert meta["primer_tokens"] > 0 and len(pitches) > 0
        assert ((pitches >= 55) & (pitches < 91)).all()
        assert set((pitches % 12).tolist()) <= {2, 4, 6, 7, 9, 11, 1}  # D major
    proc = run_cli("sample", "--ckpt", str(trained), "--key", "C major", "--pitch-range", "61:62",
                   "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and "leaves no pitch" in proc.stderr


def test_beam_search_api(trained):
    lm = melodylm.load(trained / "last.ckpt")
    beams = lm.beam_search(beam_size=3, max_tokens=60)
    assert 1 <= len(beams) <= 3
    ranked = [s.logprob / max(len(s.token_logprobs), 1) for s in beams]
    assert ranked == sorted(ranked, reverse=True)
    assert all(lm.invalid_token_rate(s.ids) == 0.0 for s in beams)
