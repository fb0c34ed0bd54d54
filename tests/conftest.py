"""Shared fixtures: real melodies from music21's corpus, prepared once per test session.

Nothing here touches the network: the O'Neill's 1850 tunes ship inside the
music21 package. ``../shared/data`` (override: MELODYLM_SHARED_DATA) is only
used by tests that skip without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MELODYLM_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("WANDB_MODE", "disabled")


def run_cli(*args: str, cwd: Path | None = None, check: bool = True,
            wandb_mode: str | None = "disabled") -> subprocess.CompletedProcess:
    """Run ``python -m melodylm ARGS`` as a user would; output captured as text.

    ``wandb_mode=None`` leaves ``WANDB_MODE`` unset, as on a user's machine.
    """
    env = {**os.environ, "WANDB_MODE": wandb_mode or "", "COLUMNS": "200"}
    if wandb_mode is None:
        del env["WANDB_MODE"]
    proc = subprocess.run([sys.executable, "-m", "melodylm", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"melodylm {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def oneills_midi(tmp_path_factory) -> list[Path]:
    """The first O'Neill's 1850 source file (about 100 tunes) exported to MIDI."""
    from melodylm.data.corpus import export_corpus

    root = tmp_path_factory.mktemp("export")
    files = export_corpus("oneills1850", root, max_files=1, workers=2)
    assert len(files) >= 50
    return files


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, oneills_midi) -> Path:
    """Those tunes prepared as melodies, 30% held out so every split has pieces."""
    out = tmp_path_factory.mktemp("prepared") / "oneills"
    run_cli("prepare", str(oneills_midi[0].parent), "--melody", "--out", str(out),
            "--val-frac", "0.15", "--test-frac", "0.15", "--workers", "2")
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory, prepared) -> Path:
    """A run folder holding a debug-preset checkpoint trained on ``prepared``."""
    run_dir = tmp_path_factory.mktemp("run")
    run_cli("fit", "--config", str(REPO / "configs" / "debug.yaml"),
            "--data.init_args.data_dir", str(prepared), cwd=run_dir)
    return run_dir / "checkpoints" / "debug"
