"""Fixtures of the executor-queue tests."""

from __future__ import annotations

import os

import pytest
from jobhelpers import png

# Spawned workers inherit the environment. One torch thread each: these machines are small and
# shared, and a 32 px image gains nothing from more. Test faults are honoured only with this set.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["NSTBOT_TEST_FAULTS"] = "1"


@pytest.fixture
def content() -> bytes:
    return png("red")


@pytest.fixture
def style() -> bytes:
    return png("blue")
