"""Shared test set-up. Fixtures live in ``tests/fixtures/*`` (one module per real service)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.ray",
    "tests.fixtures.s3",
    "tests.fixtures.mlflow",
]

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL_DATA = SHARED / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """``../shared/data/real`` (copyrighted clips: read in place, never copied); skip when absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"{REAL_DATA} is absent")
    return REAL_DATA


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny test models run faster on one intra-op thread, and torch's spinning worker threads
    degrade badly when the 2 cores are shared with Ray workers (measured: 9 s vs 300 s for the
    overfit test under load). Ray worker processes set their own thread counts."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
