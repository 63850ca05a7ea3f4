"""GPU checks: run where CUDA is present (the lent GPU machine), skipped elsewhere."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from nstbot.engine.errors import DeviceError, OutOfMemoryError
from nstbot.engine.transfer import StyleTransfer
from nstbot.params import TransferParams

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def gpu_engine() -> StyleTransfer:
    return StyleTransfer(device="cuda", weights="random", allow_download=False)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_stylize_on_cuda(content, style, precision: str) -> None:
    engine = StyleTransfer(device="cuda:0", weights="random", precision=precision)
    losses: list[float] = []
    params = TransferParams(size=128, min_size=64, scales=2, steps=20)
    result = engine.stylize(content, [style], params, on_step=lambda i: losses.append(i.loss))
    assert result.image.size == (128, 85)
    assert result.stats["device"].startswith("cuda") and result.stats["precision"] == precision
    assert all(x == x for x in losses)  # no NaN
    assert losses[-1] < losses[0]
    assert not torch.backends.cudnn.benchmark  # per-shape autotuning costs seconds per job


def test_cuda_and_cpu_agree_roughly(gpu_engine: StyleTransfer, engine, content, style) -> None:
    params = TransferParams(size=64, scales=1, steps=3, seed=1)
    a = gpu_engine.stylize(content, [style], params).image
    b = engine.stylize(content, [style], params).image
    diff = sum(abs(x - y) for x, y in zip(a.tobytes(), b.tobytes(), strict=True)) / len(a.tobytes())
    assert diff < 3.0  # TF32 and cuDNN differ from the CPU only in low bits


def test_out_of_memory_becomes_its_own_error(gpu_engine: StyleTransfer, style) -> None:
    huge = Image.new("RGB", (64, 64), (120, 60, 30))
    params = TransferParams(size=2048, scales=1, steps=1)
    free, _ = torch.cuda.mem_get_info()
    # Leave about 1 GB free, whatever the card's size, so a 2048 px step cannot fit.
    blocker = torch.empty(max(free - (1 << 30), 0), dtype=torch.uint8, device="cuda")
    with pytest.raises(OutOfMemoryError, match="smaller size"):
        gpu_engine.stylize(huge, [style], params)
    del blocker
    # The engine still works after the failure.
    small = gpu_engine.stylize(huge, [style], TransferParams(size=64, scales=1, steps=1))
    assert small.image.size == (64, 64)


def test_missing_gpu_index_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match="does not exist"):
        StyleTransfer(device=f"cuda:{torch.cuda.device_count()}", weights="random")


def test_frames_on_cuda_match_the_cpu_path(gpu_engine: StyleTransfer, content, style) -> None:
    # Frames are copied to pinned host memory without a wait; reading them must see the pixels.
    from nstbot.engine.timelapse import FrameRecorder

    frames = FrameRecorder(every=1)
    params = TransferParams(size=48, scales=1, steps=6, average=0.9)
    previews: list[Image.Image] = []
    result = gpu_engine.stylize(
        content, [style], params, frames=frames, on_step=lambda i: previews.append(i.preview(99))
    )
    pictures = frames.frames
    assert len(pictures) == 1 + params.steps
    assert pictures[-1].tobytes() == result.image.tobytes()
    for picture, preview in zip(pictures[1:-1], previews[:-1], strict=True):
        assert picture.tobytes() == preview.tobytes()
