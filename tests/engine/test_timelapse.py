"""Frame recording for timelapses, on CPU with random weights and tiny images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nstbot.engine.errors import StylizeCancelled
from nstbot.engine.timelapse import FrameRecorder
from nstbot.engine.transfer import StepInfo, StyleTransfer, fit_size
from nstbot.params import TIMELAPSE_FPS, TransferParams


def pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("RGB"), dtype=np.float64)


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b.resize(a.size))).mean())


@pytest.mark.parametrize(
    ("steps", "scales"), [(30, 1), (45, 2), (72, 3), (100, 2)], ids=lambda v: str(v)
)
def test_a_run_yields_two_to_four_seconds_at_the_output_aspect(
    engine: StyleTransfer, content, style, steps: int, scales: int
) -> None:
    frames = FrameRecorder.for_steps(steps, max_side=40)
    params = TransferParams(size=60, min_size=24, scales=scales, steps=steps)
    result = engine.stylize(content, [style], params, frames=frames)
    pictures = frames.frames
    assert 2.0 <= len(pictures) / TIMELAPSE_FPS <= 4.0
    expected = fit_size(*result.image.size, 40)
    assert {p.size for p in pictures} == {expected}
    assert {p.mode for p in pictures} == {"RGB"}
    # The first frame is the photo, the last the result (resized to the frame size).
    assert mean_difference(pictures[0], content) < 4
    assert pictures[-1].tobytes() == result.image.resize(expected, Image.LANCZOS).tobytes()
    # It paints: the result is further from the photo than the first step is.
    assert mean_difference(pictures[-1], pictures[0]) > 2 * mean_difference(
        pictures[1], pictures[0]
    )


def test_last_frame_is_the_result_and_frames_show_the_average(
    engine: StyleTransfer, content, style
) -> None:
    previews: list[Image.Image] = []

    def on_step(info: StepInfo) -> None:
        previews.append(info.preview(max_side=1000))

    frames = FrameRecorder(every=1)
    params = TransferParams(size=48, scales=1, steps=8, average=0.9)
    result = engine.stylize(content, [style], params, on_step=on_step, frames=frames)
    pictures = frames.frames
    assert len(pictures) == 1 + params.steps
    assert pictures[-1].tobytes() == result.image.tobytes()
    # Each step's frame is what the user saw at that step: the averaged image.
    for picture, preview in zip(pictures[1:-1], previews[:-1], strict=True):
        assert picture.tobytes() == preview.tobytes()
    plain = FrameRecorder(every=1)
    engine.stylize(content, [style], params.replace(average=0), frames=plain)
    assert plain.frames[3].tobytes() != pictures[3].tobytes()


def test_memory_stays_bounded_for_huge_step_counts(engine: StyleTransfer, content, style) -> None:
    frames = FrameRecorder(every=1, max_side=32, max_frames=9)
    params = TransferParams(size=48, scales=2, min_size=32, steps=70)
    result = engine.stylize(content, [style], params, frames=frames)
    assert 5 <= len(frames) <= 9
    assert frames.every == 16  # doubled each time it filled up: 1 -> 2 -> 4 -> 8 -> 16
    assert mean_difference(frames.frames[0], content) < 4
    size = frames.frames[0].size
    assert frames.frames[-1].tobytes() == result.image.resize(size, Image.LANCZOS).tobytes()


def test_recorder_thins_to_an_even_spread() -> None:
    recorder = FrameRecorder(every=1, max_side=16, max_frames=8)
    recorder.begin((32, 16), total_steps=100_000)
    recorder.add(torch.zeros(1, 3, 16, 32), 0)
    for step in range(1, 100_000):
        if recorder.due(step):
            recorder.add(torch.full((1, 3, 16, 32), step / 100_000), step)
    recorder.add_picture(Image.new("RGB", (32, 16), "white"))
    assert len(recorder) <= 8
    levels = [p.getpixel((0, 0))[0] for p in recorder.frames]
    assert levels == sorted(levels) and levels[0] == 0 and levels[-1] == 255
    gaps = np.diff(levels[:-1])
    assert gaps.max() <= 2 * gaps.min() + 1
    assert {p.size for p in recorder.frames} == {(16, 8)}


def test_random_init_starts_from_the_noise(engine: StyleTransfer, content, style) -> None:
    frames = FrameRecorder(every=2)
    params = TransferParams(size=48, scales=1, steps=4, init="random", seed=1)
    engine.stylize(content, [style], params, frames=frames)
    assert len(frames) == 3  # the noise, step 2, the result
    assert mean_difference(frames.frames[0], content) > 30


def test_cancelled_run_keeps_its_frames_so_far(engine: StyleTransfer, content, style) -> None:
    frames = FrameRecorder(every=1)
    params = TransferParams(size=48, scales=1, steps=10)
    with pytest.raises(StylizeCancelled):
        engine.stylize(content, [style], params, on_step=lambda i: i.step == 3, frames=frames)
    assert len(frames) == 4  # the photo and steps 1 to 3


def test_bad_recorder_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="every"):
        FrameRecorder(every=0)
    with pytest.raises(ValueError, match="max_frames"):
        FrameRecorder(every=1, max_frames=2)
    with pytest.raises(RuntimeError, match="begin"):
        FrameRecorder(every=1).add_picture(Image.new("RGB", (4, 4)))
