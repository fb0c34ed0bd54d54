"""Exact resume: a ``melodylm fit`` killed (SIGKILL) mid-epoch and resumed with ``--ckpt_path last`` ends with the
weights of the run that was never interrupted, for shuffled windows and for the carried state."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from melodylm.checkpoint import read
from melodylm.data.windows import PieceStreams, ResumableLoader, RollPieces, ShuffledBatches, TransposedWindows
from tests.conftest import REPO

MELODYLM = Path(sys.executable).with_name("melodylm")
EPOCH, EVERY, STEPS = 10, 4, 20  # batches per epoch, steps between checkpoints, steps in all (two epochs)
MID = 12  # the checkpoint the run is killed at: two batches into the second epoch, four steps before the next


def _config(tmp_path: Path) -> Path:
    """The debug preset, shrunk further: epochs of EPOCH batches, a checkpoint every EVERY steps (each kept, as
    ``stepNNN.ckpt``, beside ``last.ckpt``), dropout on (so the random state matters), no logger."""
    config = yaml.safe_load((REPO / "configs" / "debug.yaml").read_text())
    trainer = config["trainer"]
    trainer.update(max_epochs=-1, max_steps=STEPS, limit_train_batches=EPOCH, logger=False)
    steps = next(c for c in trainer["callbacks"] if "every_n_train_steps" in c.get("init_args", {}))
    steps["init_args"].update(every_n_train_steps=EVERY, save_top_k=-1, filename="step{step:03d}",
                              auto_insert_metric_name=False)
    config["model"]["init_args"]["dropout"] = 0.2
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fit(config: Path, data: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    cwd.mkdir(exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([str(MELODYLM), "fit", "--config", str(config), "--data.init_args.data_dir", str(data),
                             *extra], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = read(run / "checkpoints" / "debug" / "last.ckpt")
    assert ckpt["global_step"] == STEPS
    return ckpt["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("carry", [False, True], ids=["shuffled", "carried"])
def test_killed_fit_resumes_to_the_uninterrupted_weights(tmp_path, prepared, carry):
    config = _config(tmp_path)
    extra = ("--data.init_args.carry_state", str(carry).lower())
    _finish(_fit(config, prepared, tmp_path / "straight", *extra))

    killed = _fit(config, prepared, tmp_path / "killed", *extra)
    folder = tmp_path / "killed" / "checkpoints" / "debug"
    while not (folder / f"step{MID:03d}.ckpt").exists():  # then last.ckpt, in the same save
        assert killed.poll() is None, "the run ended before its checkpoint was written"
        time.sleep(0.001)
    while (read_step(folder / "last.ckpt") or 0) < MID:
        time.sleep(0.001)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    resumed_from = read(folder / "last.ckpt")
    assert resumed_from["global_step"] == MID, "the run went past its checkpoint before the kill"
    assert MID % EPOCH and MID > EPOCH  # mid-epoch, after a whole epoch
    assert ("carried_state" in resumed_from) == carry and "rng" in resumed_from

    _finish(_fit(config, prepared, tmp_path / "killed", *extra, "--ckpt_path", "last"))
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.allclose(straight[name], resumed[name]), name
    mid_weights = resumed_from["state_dict"]
    assert not all(torch.allclose(straight[n], mid_weights[n]) for n in straight)  # training went on after the kill


def read_step(path: Path) -> int | None:
    """The global step of the checkpoint at ``path``; None while it is not there."""
    try:
        return read(path)["global_step"]
    except Exception:  # absent (Lightning writes it whole, by renaming a finished file)
        return None


# --- the loader's position, without Lightning ----------------------------------------------------------


def _windows(carry: bool) -> TransposedWindows:
    rng = np.random.default_rng(0)
    pieces = RollPieces([rng.random((int(rng.integers(5, 60)), 88)) < 0.05 for _ in range(7)])
    return TransposedWindows(pieces, seq_len=8, shifts=(0, 0), carry=carry)


def _loader(carry: bool) -> ResumableLoader:
    windows = _windows(carry)
    batches = PieceStreams(windows, batch_size=3, seed=1) if carry else ShuffledBatches(windows, 3, seed=1)
    return ResumableLoader(windows, batch_sampler=batches)


def _epoch(loader: ResumableLoader, epoch: int):
    """A pass over ``epoch``, the epoch set as the trainer sets it; yields the batches' inputs."""
    if isinstance(loader.batch_sampler, ShuffledBatches):
        loader.batch_sampler.sampler.set_epoch(epoch)
    return (x for x, *_ in loader)


def _take(it, n: int) -> list[torch.Tensor]:
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("carry", [False, True], ids=["shuffled", "carried"])
def test_a_loaded_position_serves_what_the_first_loader_would_have(carry):
    first = _loader(carry)
    n = len(first)
    assert n >= 4
    epoch0 = list(_epoch(first, 0))
    epoch1 = _epoch(first, 1)
    _take(epoch1, 2)  # a whole epoch, then two batches of the next: killed here
    state = first.state_dict()
    assert state["served"] == n + 2 and state["served"] - state["epoch_start"] == 2
    rest = list(epoch1)

    again = _loader(carry)
    again.load_state_dict(state)
    resumed = list(_epoch(again, 1))  # the rest of epoch 1 (a carried stream yields on; the trainer stops it)
    assert len(resumed) == (n if carry else n - 2)
    assert all(torch.equal(a, b) for a, b in zip(rest, resumed))
    assert not all(torch.equal(a, b) for a, b in zip(rest, epoch0))  # not epoch 0 over again
    if not carry:
        assert again.state_dict() == first.state_dict()
        assert all(torch.equal(a, b) for a, b in zip(_epoch(first, 2), _epoch(again, 2)))


def test_a_position_saved_at_an_epoch_end_starts_the_next_epoch_whole():
    first = _loader(carry=False)
    list(_epoch(first, 0))
    again = _loader(carry=False)
    again.load_state_dict(first.state_dict())
    first_1, again_1 = list(_epoch(first, 1)), list(_epoch(again, 1))
    assert len(first_1) == len(again_1) == len(first)
    assert all(torch.equal(a, b) for a, b in zip(first_1, again_1))
