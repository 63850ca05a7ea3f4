"""Fixtures of the executor-queue tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from jobhelpers import png
from redis_server import redis_available, redis_server

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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server of this test session on 127.0.0.1 (skips when it is not installed)."""
    if not redis_available():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with redis_server() as server:
        yield server.url
