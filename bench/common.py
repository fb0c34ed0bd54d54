"""Helpers shared by the speed and throughput scripts (not part of the package)."""

from __future__ import annotations

import os
from pathlib import Path

from melodylm.evaluation.report import machine, table  # noqa: F401  (re-exported for the scripts)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MELODYLM_SHARED_DATA", REPO.parent / "shared" / "data"))
