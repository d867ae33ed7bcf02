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
