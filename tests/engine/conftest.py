"""Engine fixtures: one random-weights CPU engine for the whole session (loading costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from nstbot.engine.transfer import StyleTransfer


@pytest.fixture(scope="session")
def engine() -> Iterator[StyleTransfer]:
    torch.set_num_threads(2)
    yield StyleTransfer(device="cpu", weights="random", allow_download=False)


@pytest.fixture(scope="session")
def content(data_dir: Path) -> Image.Image:
    with Image.open(data_dir / "content-coffee.jpg") as img:
        return img.convert("RGB").resize((72, 48))


@pytest.fixture(scope="session")
def style(data_dir: Path) -> Image.Image:
    with Image.open(data_dir / "style-brick.jpg") as img:
        return img.convert("RGB").resize((64, 64))


@pytest.fixture(scope="session")
def style2(data_dir: Path) -> Image.Image:
    with Image.open(data_dir / "style-gravel.jpg") as img:
        return img.convert("RGB").resize((64, 64))
