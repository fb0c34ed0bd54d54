"""Checkpoints load without Lightning, refuse code, and refuse foreign data."""

import pickle
import subprocess
import sys

import pytest
import torch

import melodylm
from melodylm.checkpoint import read
from melodylm.errors import UserError
from tests.conftest import REPO, run_cli


class Payload:
    """Unpickling this runs code: exactly what a checkpoint must not be able to do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"melodylm": {"format": 1}, "state_dict": {}, "x": Payload(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(UserError, match="refusing to load"):
        read(evil)
    assert not marker.exists()
    proc = run_cli("sample", "--ckpt", str(evil), "--out", str(tmp_path / "s"), check=False)
    assert proc.returncode == 2 and "refusing to load" in proc.stderr and not marker.exists()


def test_plain_pickle_and_garbage_and_foreign_checkpoints(tmp_path):
    (tmp_path / "a.ckpt").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "b.ckpt").write_bytes(b"hello")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "c.ckpt")
    for name, message in (("a.ckpt", "not a PyTorch checkpoint|refusing"), ("b.ckpt", "not a PyTorch checkpoint"),
                          ("c.ckpt", "not a melodylm checkpoint")):
        with pytest.raises(UserError, match=message):
            read(tmp_path / name)
    with pytest.raises(UserError, match="does not exist"):
        read(tmp_path / "missing.ckpt")


def test_load_needs_no_lightning(trained):
    code = (
        "import sys, melodylm\n"
        f"lm = melodylm.load({str(trained / 'last.ckpt')!r})\n"
        "s = lm.sample(num=2, max_tokens=40, seed=1)\n"
        "assert len(s) == 2\n"
        "assert not any(m.startswith(('lightning', 'pytorch_lightning')) for m in sys.modules), 'lightning imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_checkpoint_carries_tokenizer_and_config(trained, prepared):
    ckpt = read(trained / "last.ckpt")
    meta = ckpt["melodylm"]
    assert meta["model"]["cell"] == "lstm" and meta["model"]["vocab_size"] > 100
    assert meta["tokenizer"] == (prepared / "tokenizer.json").read_text()
    assert meta["prepare"]["clean"]["melody"] is True
    lm = melodylm.load(trained / "last.ckpt")
    assert len(lm.tokenizer) == meta["model"]["vocab_size"]


def test_tokenizer_mismatch_gives_clear_error(trained, oneills_midi, tmp_path):
    other = tmp_path / "tsd"
    run_cli("prepare", str(oneills_midi[0].parent), "--tokenizer", "TSD", "--out", str(other),
            "--val-frac", "0.2", "--test-frac", "0.2")
    proc = run_cli("validate", "--config", str(REPO / "configs" / "debug.yaml"),
                   "--data.init_args.data_dir", str(other), "--ckpt_path", str(trained / "last.ckpt"),
                   cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "does not match the tokenizer" in proc.stderr
    assert "Traceback" not in proc.stderr
