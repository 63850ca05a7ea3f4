"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of the sample photos and textures (see tests/data/SOURCES.md)."""
    return DATA
