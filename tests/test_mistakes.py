"""A user's mistake ends in one line on stderr and exit status 2, never a traceback; where a sensible default
exists (no logger: no learning-rate monitor), the command runs instead."""

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import REPO, run_cli

DEBUG = str(REPO / "configs" / "debug.yaml")


def _cases(tmp, trained, prepared):
    truncated = tmp / "truncated.ckpt"
    truncated.write_bytes((trained / "last.ckpt").read_bytes()[:2000])
    a_file = tmp / "a_file.mid"
    a_file.write_bytes(b"MThd")
    out = str(tmp / "out")
    ckpt = str(trained)
    return [
        (("fit", "--config", DEBUG, "--data.init_args.data_dir", str(tmp / "nowhere")), "is not a prepared data folder"),
        (("fit", "--config", str(tmp / "none.yaml")), None),
        (("sample", "--ckpt", str(tmp / "none.ckpt"), "--out", out), "does not exist"),
        (("sample", "--ckpt", str(truncated), "--out", out), "is not a PyTorch checkpoint"),
        (("sample", "--ckpt", str(tmp), "--out", out), "no checkpoint"),
        (("sample", "--ckpt", ckpt, "--out", str(a_file)), "is a file, not a folder"),
        (("sample", "--ckpt", ckpt, "--out", out, "--num", "0"), "--num must be >= 1"),
        (("sample", "--ckpt", ckpt, "--out", out, "--temperature", "-1"), "temperature must be > 0"),
        (("sample", "--ckpt", ckpt, "--out", out, "--top-p", "1.5"), None),
        (("sample", "--ckpt", ckpt, "--out", out, "--key", "H major"), None),
        (("sample", "--ckpt", ckpt, "--out", out, "--pitch-range", "high"), "expected LOW:HIGH"),
        (("sample", "--ckpt", ckpt, "--out", out, "--primer", str(a_file)), None),
        (("generate", "--ckpt", ckpt, "--condition", "C G", "--out", out), "holds a language model, not a seq2seq"),
        (("playlist", "--ckpt", ckpt, "--title", "jigs"), "holds a language model, not a playlist"),
        (("bench", "melody", "--ckpt", ckpt, "--data", str(tmp / "nowhere")), "not a prepared data folder"),
        (("bench", "pianoroll", "--data", str(tmp / "none.mat"), "--config", str(REPO / "configs" / "pianoroll" /
                                                                                  "jsb.yaml"), "--out", out),
         "does not exist"),
        (("bench", "pianoroll", "--data", str(tmp / "none.mat"), "--config", str(tmp / "none.yaml"), "--out", out),
         "does not exist"),
        (("evaluate", "samples", str(tmp / "nowhere"), "--reference", str(prepared / "manifest.jsonl")),
         "does not exist"),
        (("prepare", str(tmp / "nowhere"), "--out", out), None),
        (("rescore", "--ckpt", ckpt, "--nbest", str(tmp / "none.jsonl")), None),
    ]


@pytest.mark.slow
def test_every_mistake_is_one_line_and_exit_2(tmp_path, trained, prepared):
    cases = _cases(tmp_path, trained, prepared)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # each case is a process start-up
        procs = list(pool.map(lambda case: run_cli(*case[0], check=False), cases))
    for (args, message), proc in zip(cases, procs):
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        where = f"melodylm {' '.join(args)}:\n{proc.stderr[-2000:]}"
        assert proc.returncode == 2, where
        assert "Traceback" not in proc.stderr, where
        assert lines and "error:" in lines[-1], where
        if message is not None:
            assert message in lines[-1], where
        if not args[-1].startswith("high"):  # argparse's own errors print the usage line first
            assert len([line for line in lines if "error:" in line]) == 1, where


@pytest.mark.slow
def test_a_preset_without_a_logger_drops_its_learning_rate_monitor(tmp_path, prepared):
    run_cli("fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--data.init_args.data_dir", str(prepared),
            "--trainer.logger", "false", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
            "--trainer.val_check_interval", "2", cwd=tmp_path)
    assert (tmp_path / "checkpoints" / "quickstart" / "last.ckpt").is_file()


# Where a fresh clone's user stands: the documented default paths do not exist yet, and ../shared/data is absent.
MISSING = [
    (("bench", "transcription"), "checkpoints/nottingham-melody does not exist: run `make melody-lm` first"),
    (("bench", "melody", "--ckpt", "checkpoints/nottingham-melody", "--data", "datasets/prepared/nottingham-melody-t5"),
     "run `make melody-lm` first"),
    (("sample", "--ckpt", "checkpoints/quickstart", "--out", "samples"), "run `make demo` first"),
    (("evaluate", "playlist", "--ckpt", "checkpoints/playlist-music21-ids", "--playlists", "p.jsonl"),
     "run `make playlist-music21` first"),
    (("generate", "--ckpt", "checkpoints/seq2seq-tagger", "--condition", "C G", "--out", "out"),
     "run `melodylm fit --config configs/seq2seq/tagger.yaml` first"),
    (("prepare", "../shared/data/nottingham/MIDI/melody", "--out", "out"), "../shared/data is not part of a clone"),
    (("bench", "pianoroll", "--data", "../shared/data/pianoroll/JSB_Chorales.mat", "--config",
      str(REPO / "configs" / "pianoroll" / "jsb.yaml"), "--out", "out"), "../shared/data is not part of a clone"),
]


@pytest.mark.parametrize("args,message", MISSING, ids=[" ".join(a[:2]) for a, _ in MISSING])
def test_a_missing_input_names_the_step_that_makes_it(tmp_path, monkeypatch, capsys, args, message):
    from melodylm.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize("target,message", [("bench-melody", "run `make melody-lm` first"),
                                            ("melody-lm", "../shared/data is not part of a clone"),
                                            ("bench-pianoroll", "../shared/data is not part of a clone")])
def test_a_make_target_missing_its_input_says_which_to_run(tmp_path, target, message):
    stamp = REPO / ".venv" / ".installed"  # -o: never reinstall from here
    proc = subprocess.run(["make", "-f", str(REPO / "Makefile"), "-o", str(stamp), target, "SHARED=nowhere"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr
    assert not any(tmp_path.iterdir())  # stopped before writing anything
