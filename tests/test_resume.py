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
    (position,) = resumed_from["loops"]["fit_loop"]["state_dict"]["combined_loader"]  # the training loader's
    assert position["served"] == MID and position["served"] - position["epoch_start"] == MID - EPOCH
    assert ("carried_state" in resumed_from) == carry and "rng" in position

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


def _train(loader: ResumableLoader, epoch: int, take: int | None = None) -> list[tuple[torch.Tensor, float]]:
    """What training gets from a pass over ``epoch`` (the epoch set as the trainer sets it): each batch's inputs
    and, after each, a draw from torch's generator (dropout's); ``take``: stop after that many batches."""
    loader.batch_sampler.sampler.set_epoch(epoch)
    out = []
    for x, *_ in loader:
        out.append((x, float(torch.rand(()))))
        if len(out) == take:
            break
    return out


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) and p == q for (x, p), (y, q) in zip(a, b))


@pytest.mark.parametrize("carry", [False, True], ids=["shuffled", "carried"])
def test_a_loaded_position_serves_what_the_first_loader_would_have(carry):
    torch.manual_seed(0)
    straight = _loader(carry)
    n = len(straight)
    assert n >= 4
    want = _train(straight, 0) + _train(straight, 1) + _train(straight, 2)

    torch.manual_seed(0)
    killed = _loader(carry)
    got = _train(killed, 0) + _train(killed, 1, take=2)  # killed two batches into the second epoch
    state = killed.state_dict()
    assert state["served"] == n + 2 and state["epoch_start"] == n and state["epoch"] == 1

    torch.manual_seed(123)  # a new process
    again = _loader(carry)
    again.load_state_dict(state)
    got += _train(again, 1, take=n - 2) + _train(again, 2)
    assert _same(got, want)
    assert again.state_dict()["served"] == 3 * n

    torch.manual_seed(123)
    fresh = _loader(carry)  # without the position: not the rest of the epoch
    assert not _same(_train(fresh, 1, take=n - 2), want[n + 2 : 2 * n])


@pytest.mark.parametrize("carry", [False, True], ids=["shuffled", "carried"])
def test_a_position_saved_at_an_epoch_end_starts_the_next_epoch_whole(carry):
    torch.manual_seed(0)
    straight = _loader(carry)
    want = _train(straight, 0) + _train(straight, 1)
    torch.manual_seed(0)
    killed = _loader(carry)
    got = _train(killed, 0)
    state = killed.state_dict()  # saved at the end of the first epoch
    torch.manual_seed(123)
    again = _loader(carry)
    again.load_state_dict(state)
    got += _train(again, 1)
    assert _same(got, want)


def test_uninterrupted_batches_are_a_plain_shuffling_dataloaders():
    """One process: the order and the draws from torch's generator are ``DataLoader(shuffle=True)``'s."""
    windows = _windows(carry=False)
    torch.manual_seed(5)
    plain = [x for _ in range(2) for x, in zip(torch.utils.data.DataLoader(windows, batch_size=3, shuffle=True))]
    after_plain = torch.rand(())
    torch.manual_seed(5)
    ours = _loader(carry=False)
    mine = [x for e in range(2) for x, in zip(_epoch_batches(ours, e))]
    assert len(mine) == len(plain) and all(torch.equal(a[0], b[0]) for a, b in zip(plain, mine))
    assert torch.equal(torch.rand(()), after_plain)


def _epoch_batches(loader: ResumableLoader, epoch: int):
    loader.batch_sampler.sampler.set_epoch(epoch)
    return iter(loader)
