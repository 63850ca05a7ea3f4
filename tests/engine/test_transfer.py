"""The optimization loop on CPU with random weights and tiny images."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from nstbot.engine.averaging import IterateAverage
from nstbot.engine.errors import StylizeCancelled
from nstbot.engine.transfer import (
    StepInfo,
    StyleTransfer,
    fit_size,
    image_to_tensor,
    scale_sizes,
    split_steps,
)
from nstbot.params import ParamsError, TransferParams

TINY = {"size": 48, "min_size": 24, "scales": 1}


def run(engine: StyleTransfer, content: Image.Image, styles: list[Image.Image], **kw: object):
    infos: list[StepInfo] = []
    params = TransferParams(**{**TINY, "steps": 6, **kw})  # type: ignore[arg-type]
    result = engine.stylize(content, styles, params, on_step=infos.append)
    return result, infos


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_loss_falls(engine: StyleTransfer, content, style, optimizer: str) -> None:
    _, infos = run(engine, content, [style], optimizer=optimizer, steps=12, learning_rate=0.05)
    assert len(infos) == 12
    assert infos[-1].loss < 0.5 * infos[0].loss
    assert infos[-1].losses["style"] < infos[0].losses["style"]


def test_seed_makes_cpu_runs_repeat_bit_for_bit(engine: StyleTransfer, content, style) -> None:
    a, _ = run(engine, content, [style], init="random", seed=7)
    b, _ = run(engine, content, [style], init="random", seed=7)
    c, _ = run(engine, content, [style], init="random", seed=8)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.image.tobytes() != c.image.tobytes()


@pytest.mark.parametrize("shape", [(100, 60), (60, 100), (64, 64)])
def test_multiscale_reaches_exact_size_and_aspect(engine: StyleTransfer, style, shape) -> None:
    content = Image.new("RGB", shape, (200, 30, 30))
    params = TransferParams(size=56, min_size=28, scales=3, steps=6)
    seen: list[tuple[int, int]] = []
    result = engine.stylize(content, [style], params, on_step=lambda i: seen.append(i.size))
    expected = fit_size(*shape, 56)
    assert result.image.size == expected
    assert max(expected) == 56
    assert abs(expected[0] / expected[1] - shape[0] / shape[1]) < 0.05
    assert len(set(seen)) == 3 and seen[-1] == expected
    assert [s[2] for s in result.stats["scales"]] == [3, 2, 1]
    assert max(seen[0]) == 28


def test_scale_plan() -> None:
    assert split_steps(300, 3) == [171, 86, 43]
    assert sum(split_steps(7, 3)) == 7 and min(split_steps(7, 3)) >= 1
    sizes = scale_sizes(400, 200, TransferParams(size=512, min_size=128, scales=3))
    assert sizes == [(128, 64), (256, 128), (512, 256)]
    # A request smaller than min_size runs at one scale.
    assert scale_sizes(400, 200, TransferParams(size=64, min_size=128)) == [(64, 32)]


def test_narrow_images_keep_every_scale_wide_enough(engine: StyleTransfer, style) -> None:
    sizes = scale_sizes(100, 25, TransferParams(size=128, min_size=32, scales=3))
    assert all(min(s) >= 16 for s in sizes)  # relu5_1 sits behind four 2x poolings
    assert sizes[-1] == (128, 32) and len(sizes) == len(set(sizes))
    content = Image.new("RGB", (100, 25), (10, 120, 200))
    params = TransferParams(size=80, min_size=24, scales=3, steps=3)
    assert engine.stylize(content, [style], params).image.size == (80, 20)
    with pytest.raises(ParamsError, match="at least 16 px"):
        engine.stylize(content, [style], TransferParams(size=48, scales=1, steps=1))


def _chroma(img: Image.Image) -> torch.Tensor:
    ycc = torch.frombuffer(bytearray(img.convert("YCbCr").tobytes()), dtype=torch.uint8)
    return ycc.view(-1, 3)[:, 1:].float()


def test_preserve_colors_keeps_content_chroma(engine: StyleTransfer, content, style) -> None:
    kept, _ = run(engine, content, [style], preserve_colors=True, strength="high", steps=10)
    free, _ = run(engine, content, [style], preserve_colors=False, strength="high", steps=10)
    reference = content.resize(kept.image.size, Image.Resampling.LANCZOS)
    kept_err = (_chroma(kept.image) - _chroma(reference)).abs().mean().item()
    free_err = (_chroma(free.image) - _chroma(reference)).abs().mean().item()
    assert kept_err < 1.5  # rounding to 8 bits only
    assert free_err > 2 * kept_err + 1


def test_blend_weights_validated_and_used(engine: StyleTransfer, content, style, style2) -> None:
    for bad in ((-1.0, 2.0), (0.0, 0.0), (float("nan"), 1.0)):
        with pytest.raises(ParamsError):
            TransferParams(style_blend=bad)
    with pytest.raises(ParamsError, match="2 weights for 1"):
        engine.stylize(content, [style], TransferParams(**TINY, steps=1, style_blend=(1.0, 1.0)))
    only_a, _ = run(engine, content, [style, style2], style_blend=(1.0, 0.0), seed=1)
    plain_a, _ = run(engine, content, [style], seed=1)
    mixed, _ = run(engine, content, [style, style2], style_blend=(0.5, 0.5), seed=1)
    assert only_a.image.tobytes() == plain_a.image.tobytes()
    assert mixed.image.tobytes() != plain_a.image.tobytes()


def test_callback_stops_within_one_step(engine: StyleTransfer, content, style) -> None:
    calls: list[int] = []

    def stop_at_three(info: StepInfo) -> bool:
        calls.append(info.step)
        return info.step == 3

    with pytest.raises(StylizeCancelled):
        engine.stylize(content, [style], TransferParams(**TINY, steps=50), on_step=stop_at_three)
    assert calls == [1, 2, 3]


def test_step_info_and_preview(engine: StyleTransfer, content, style) -> None:
    _, infos = run(engine, content, [style], steps=4)
    last = infos[-1]
    assert (last.step, last.total, last.scale, last.scales) == (4, 4, 0, 1)
    assert last.eta == pytest.approx(0.0, abs=1e-6)
    assert infos[0].eta is not None and infos[0].eta > 0
    assert infos[1].elapsed >= infos[0].elapsed
    preview = last.preview(max_side=20)
    assert max(preview.size) == 20 and preview.mode == "RGB"


def test_style_cache_hit_skips_extraction(engine: StyleTransfer, content, style, style2) -> None:
    engine.cache.clear()
    before = engine.style_extractions
    run(engine, content, [style], steps=2)
    assert engine.style_extractions == before + 1
    run(engine, content, [style], steps=2, seed=5)
    assert engine.style_extractions == before + 1  # same style, same size: cache hit
    run(engine, content, [style2], steps=2)
    assert engine.style_extractions == before + 2
    run(engine, content, [style], steps=2, style_scale=0.5)
    assert engine.style_extractions == before + 3  # another style size is another target


def test_style_cache_is_bounded() -> None:
    from nstbot.engine.style_cache import StyleTargetCache

    cache = StyleTargetCache(max_bytes=100)
    cache.put("a", {"x": torch.zeros(10)})  # 40 bytes
    cache.put("b", {"x": torch.zeros(10)})
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", {"x": torch.zeros(10)})  # 120 bytes > 100: evicts b
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.bytes_used == 80
    cache.put("huge", {"x": torch.zeros(100)})
    assert cache.get("huge") is None


def test_init_image_and_result_stats(engine: StyleTransfer, content, style) -> None:
    start = Image.new("RGB", (10, 10), (0, 255, 0))
    params = TransferParams(**TINY, steps=1, init="image", tv_weight=0.0)
    result = engine.stylize(content, [style], params, init_image=start)
    r, g, _ = result.image.resize((1, 1)).getpixel((0, 0))
    assert g > 150 and r < 100  # one step moves the green start only a little
    assert result.stats["steps"] == 1
    assert result.stats["device"] == "cpu"
    assert result.stats["weights"].startswith("random")
    with pytest.raises(ValueError, match="init_image"):
        engine.stylize(content, [style], params)


def test_vgg16_engine_runs_and_checks_its_own_layer_names(content, style) -> None:
    engine = StyleTransfer(device="cpu", weights="random", model="vgg16", allow_download=False)
    result, infos = run(engine, content, [style], steps=4)
    assert result.stats["model"] == "vgg16" and max(result.image.size) == 48
    assert infos[-1].loss < infos[0].loss
    # conv3_4 exists in VGG19 only: the parameters pass, the VGG16 engine refuses them.
    params = TransferParams(**TINY, steps=2, style_layers=("relu1_1", "conv3_4"))
    with pytest.raises(ParamsError, match="unknown VGG16 layer 'conv3_4'"):
        engine.stylize(content, [style], params)


def test_start_normalized_style_begins_at_one(engine: StyleTransfer, content, style) -> None:
    # One Adam step with a tiny rate barely moves the image: every layer's term reads about 1, so
    # their weighted sum does too, whatever the layer weights.
    _, infos = run(engine, content, [style], style_norm="start", optimizer="adam",
                   learning_rate=1e-6, steps=1, style_layer_weights=(1, 2, 3, 4, 5))  # fmt: skip
    assert infos[0].losses["style"] == pytest.approx(1.0, rel=1e-3)


def _iterates(engine: StyleTransfer, content, style, **kw: object):
    """The result and each step's image (8-bit, full size), rendered as the step ends."""
    frames: list[torch.Tensor] = []

    def keep(info: StepInfo) -> None:
        frames.append(image_to_tensor(info.preview(max_side=max(info.size))))

    params = TransferParams(**{**TINY, "steps": 8, "seed": 0, **kw})  # type: ignore[arg-type]
    result = engine.stylize(content, [style], params, on_step=keep)
    return image_to_tensor(result.image), frames


def test_without_averaging_the_output_is_the_last_iterate(engine, content, style) -> None:
    result, frames = _iterates(engine, content, style, average=0.0)
    assert torch.equal(result, frames[-1])
    assert not torch.equal(frames[-1], frames[-2])


def test_averaging_outputs_the_moving_average_of_the_iterates(engine, content, style) -> None:
    decay = 0.7
    plain, frames = _iterates(engine, content, style, average=0.0)
    averaged, _ = _iterates(engine, content, style, average=decay)
    # The iterates themselves do not depend on the average (one scale), so their EMA, taken here
    # from the 8-bit frames of the plain run, is the averaged run's output up to rounding.
    size = fit_size(*content.size, TINY["size"])
    start = image_to_tensor(content.resize(size, Image.Resampling.LANCZOS))
    expected = IterateAverage(start, decay)
    for frame in frames:
        expected.update(frame)
    assert (averaged - expected.value).abs().max() <= 1.01 / 255
    assert (averaged - plain).abs().mean() > 2 / 255


def test_iterate_average_weights_recent_iterates_more() -> None:
    average = IterateAverage(torch.zeros(2), 0.5)
    average.update(torch.full((2,), 3.0))
    assert torch.allclose(average.value, torch.full((2,), 2.0))  # (0·0.5 + 3) / 1.5
    average.update(torch.full((2,), 7.0))
    assert torch.allclose(average.value, torch.full((2,), 8.5 / 1.75))  # (0·¼ + 3·½ + 7) / 1.75
    with pytest.raises(ValueError, match="decay"):
        IterateAverage(torch.zeros(1), 1.0)


def test_averaging_runs_across_scales(engine: StyleTransfer, content, style) -> None:
    params = TransferParams(size=64, min_size=32, scales=2, steps=6, seed=0, average=0.8)
    result = engine.stylize(content, [style], params)
    assert max(result.image.size) == 64
    assert result.stats["steps"] == 6
