"""The optimization loop: Gatys et al. style transfer over several scales."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from nstbot.engine import color
from nstbot.engine.averaging import IterateAverage
from nstbot.engine.device import (
    autocast_dtype,
    is_out_of_memory,
    prepare_device,
    resolve_device,
)
from nstbot.engine.errors import OutOfMemoryError, StylizeCancelled
from nstbot.engine.lbfgs import DeviceLBFGS
from nstbot.engine.losses import ContentLoss, StyleLoss, TVLoss, blend_grams, gram_matrix
from nstbot.engine.style_cache import StyleTargetCache, fingerprint
from nstbot.engine.timelapse import FrameRecorder
from nstbot.engine.vgg import FeatureExtractor
from nstbot.engine.weights import load_features
from nstbot.params import (
    MODEL_LAYERS,
    VGG19_LAYERS,
    ParamsError,
    TransferParams,
    style_side,
    too_long_and_thin,
)

log = logging.getLogger(__name__)

LBFGS_HISTORY = 20  # enough curvature pairs for these problems; 100 (torch's default) wastes memory


@dataclass
class StepInfo:
    """What the step callback receives after every optimizer step.

    `loss` and `losses` are read from the device only when asked for: reading them waits for the
    GPU to finish the step, so a callback that needs them rarely should read them rarely.
    """

    scale: int
    scales: int
    step: int
    total: int
    elapsed: float
    eta: float | None
    size: tuple[int, int]
    _values: torch.Tensor = field(repr=False, default_factory=lambda: torch.zeros(4))
    _preview: Callable[[int], Image.Image] = field(
        repr=False, default=lambda _: Image.new("RGB", (1, 1))
    )

    @functools.cached_property
    def _floats(self) -> list[float]:
        return self._values.tolist()

    @property
    def loss(self) -> float:
        """The weighted total loss after this step's evaluation."""
        return self._floats[0]

    @property
    def losses(self) -> dict[str, float]:
        """The unweighted content, style and total-variation terms."""
        return dict(zip(("content", "style", "tv"), self._floats[1:], strict=True))

    def preview(self, max_side: int = 256) -> Image.Image:
        """The image as it stands now, at most `max_side` pixels on its longest side."""
        return self._preview(max_side)


@dataclass
class StylizeResult:
    """The stylized image and figures about the run (JSON-safe)."""

    image: Image.Image
    stats: dict[str, Any]


StepCallback = Callable[[StepInfo], bool | None]


def fit_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(w, h) with the longest side `long_side`, keeping the aspect ratio."""
    if width >= height:
        return long_side, max(1, round(height * long_side / width))
    return max(1, round(width * long_side / height)), long_side


def min_side_for(layers: Sequence[str]) -> int:
    """Smallest image side that keeps every pooled layer at least one pixel wide."""
    # Layers common to both models sit behind the same number of poolings, so VGG19's names do.
    deepest = max(VGG19_LAYERS.index(name) for name in layers)
    pools = sum(1 for name in VGG19_LAYERS[:deepest] if name.startswith("pool"))
    return 2**pools


def scale_sizes(width: int, height: int, params: TransferParams) -> list[tuple[int, int]]:
    """The working size at each scale: geometric from min_size up to exactly params.size.

    Small scales are raised where needed so the short side stays wide enough for the deepest
    layer (16 px for relu5_1); scales that end up equal are merged.
    """
    n = params.scales if params.size > params.min_size else 1
    longs = [round(params.min_size * (params.size / params.min_size) ** (i / max(n - 1, 1)))
             for i in range(n)]  # fmt: skip
    longs[-1] = params.size
    floor = min_side_for((*params.content_layers, *params.style_layers))
    final = fit_size(width, height, params.size)
    if too_long_and_thin(width, height, params.size, floor):
        raise ParamsError(
            f"at size {params.size} the image would be {final[0]}x{final[1]}; every side must be "
            f"at least {floor} px: use a larger size or a less elongated image"
        )
    need = math.ceil(floor * max(width, height) / min(width, height))
    sizes: list[tuple[int, int]] = []
    for side in longs:
        size = fit_size(width, height, min(max(side, need), params.size))
        if size not in sizes:
            sizes.append(size)
    return sizes


def split_steps(total: int, scales: int) -> list[int]:
    """Steps per scale, halving at each larger scale (small scales are cheap); sums to `total`."""
    weights = [2.0 ** (scales - 1 - i) for i in range(scales)]
    raw = [total * w / sum(weights) for w in weights]
    steps = [max(1, round(r)) for r in raw]
    steps[0] += total - sum(steps)
    return steps


class Objective(torch.nn.Module):
    """The weighted sum of content, style and total-variation losses at one scale."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        params: TransferParams,
        content_losses: list[ContentLoss],
        style_losses: list[StyleLoss],
        layer_weights: list[float],
        layout: Callable[[torch.Tensor], torch.Tensor],
        autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    ) -> None:
        super().__init__()
        self.extractor = extractor
        self.params = params
        self.content_losses = torch.nn.ModuleList(content_losses)
        self.style_losses = torch.nn.ModuleList(style_losses)
        self.layer_weights = layer_weights
        self.tv_loss = TVLoss()
        self._layout = layout
        self._autocast = autocast

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Total loss, and the detached (content, style, tv) parts."""
        p = self.params
        with self._autocast():
            feats = self.extractor(self._layout(image))
        content = sum(
            loss(feats[name])
            for loss, name in zip(self.content_losses, p.content_layers, strict=True)
        )
        style = sum(
            weight * loss(feats[name])
            for weight, loss, name in zip(
                self.layer_weights, self.style_losses, p.style_layers, strict=True
            )
        )
        tv = self.tv_loss(image)
        total = p.content_weight * content + p.effective_style_weight * style + p.tv_weight * tv
        parts = torch.stack([content.detach(), style.detach(), tv.detach()])  # type: ignore[union-attr]
        return total, parts


class StyleTransfer:
    """A warm VGG19 (or VGG16) on one device; `stylize()` runs one job at a time."""

    def __init__(
        self,
        *,
        device: str = "auto",
        weights: str = "auto",
        model: str = "vgg19",
        precision: str = "fp32",
        allow_download: bool = True,
        cache_bytes: int = 256 << 20,
        progress: bool = True,
    ) -> None:
        self.torch_device = resolve_device(device)
        self.device = str(self.torch_device)
        self.precision = precision
        self._autocast = autocast_dtype(self.torch_device, precision)
        prepare_device(self.torch_device)
        features, self.weights_description = load_features(
            weights, model=model, allow_download=allow_download, progress=progress
        )
        self.model = model
        self._features = features.to(self.torch_device).eval().requires_grad_(False)
        self._channels_last = self.torch_device.type == "cuda"
        if self._channels_last:
            self._features = self._features.to(memory_format=torch.channels_last)
        self.cache = StyleTargetCache(max_bytes=cache_bytes)
        self.style_extractions = 0  # counts feature passes over style images (cache misses)

    def extractor(self, layers: Sequence[str]) -> FeatureExtractor:
        """A feature extractor for `layers` sharing this engine's weights."""
        ordered = sorted(set(layers), key=MODEL_LAYERS[self.model].index)
        return FeatureExtractor(self._features, ordered, self.model).to(self.torch_device)

    def stylize(
        self,
        content: Image.Image,
        styles: Sequence[Image.Image],
        params: TransferParams | None = None,
        *,
        on_step: StepCallback | None = None,
        init_image: Image.Image | None = None,
        frames: FrameRecorder | None = None,
    ) -> StylizeResult:
        """Paint `content` in the style of `styles`; see docs/engine.md for every parameter.

        With `frames`, the recorder collects a timelapse: the start, every k-th step (the image
        the user sees, so the average when averaging is on) and the result.
        """
        params = params or TransferParams()
        params.check_layers_for(self.model)
        if not styles:
            raise ValueError("at least one style image is needed")
        if params.init == "image" and init_image is None:
            raise ValueError("init='image' needs an init_image")
        try:
            return self._stylize(content, list(styles), params, on_step, init_image, frames)
        except Exception as exc:
            if is_out_of_memory(exc):
                if self.torch_device.type == "cuda":
                    torch.cuda.empty_cache()
                raise OutOfMemoryError(
                    f"out of memory on {self.device} at size {params.size}; try a smaller size"
                ) from None
            raise

    def _stylize(
        self,
        content: Image.Image,
        styles: list[Image.Image],
        params: TransferParams,
        on_step: StepCallback | None,
        init_image: Image.Image | None,
        frames: FrameRecorder | None,
    ) -> StylizeResult:
        start = time.perf_counter()
        content = content.convert("RGB")
        styles = [s.convert("RGB") for s in styles]
        blend = params.normalized_blend(len(styles))
        layer_weights = params.normalized_layer_weights()
        extractor = self.extractor((*params.content_layers, *params.style_layers))
        sizes = scale_sizes(content.width, content.height, params)
        steps = split_steps(params.steps, len(sizes))
        work = [w * h * n for (w, h), n in zip(sizes, steps, strict=True)]
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        image: torch.Tensor | None = None
        step = 0
        values = torch.full((4,), math.nan)
        if frames is not None:
            frames.begin(sizes[-1], params.steps)
            if params.init == "content":  # the photo itself, sharper than the small first scale
                frames.add_picture(content)
        for scale, ((w, h), n_steps) in enumerate(zip(sizes, steps, strict=True)):
            content_t = self._to_tensor(content, (w, h))
            net_content = color.luminance(content_t) if params.preserve_colors else content_t
            with torch.no_grad(), self._autocast_ctx():
                content_feats = extractor(self._layout(net_content))
            content_losses = [ContentLoss(content_feats[name]) for name in params.content_layers]
            style_losses = [
                StyleLoss(gram)
                for gram in self._style_targets(
                    extractor, styles, blend, params, (w, h), net_content
                )
            ]
            if params.style_norm == "start":
                for loss, name in zip(style_losses, params.style_layers, strict=True):
                    loss.normalize_at(content_feats[name])
            del content_feats
            image = self._initial(
                image, content_t, net_content, init_image, params, (w, h), generator
            )
            image.requires_grad_(True)
            optimizer = self._optimizer(image, params)
            # With averaging on, each scale's output is its average, which also starts the next
            # scale (upsampled like the image); the average restarts there from that start.
            average = IterateAverage(image, params.average) if params.average > 0 else None
            shown = image if average is None else average.value
            if frames is not None and step == 0 and params.init != "content":
                frames.add(self._finish(shown, content_t, params.preserve_colors), step)

            objective = Objective(
                extractor, params, content_losses, style_losses, layer_weights, self._layout,
                self._autocast_ctx,
            )  # fmt: skip

            for scale_step in range(n_steps):
                values = self._step(optimizer, image, objective)
                if average is not None:
                    average.update(image)
                step += 1
                if frames is not None and frames.due(step):
                    frames.add(self._finish(shown, content_t, params.preserve_colors), step)
                elapsed = time.perf_counter() - start
                if on_step is not None:
                    done = sum(work[:scale]) + w * h * (scale_step + 1)
                    eta = elapsed / done * (sum(work) - done) if done else None
                    info = StepInfo(
                        scale=scale,
                        scales=len(sizes),
                        step=step,
                        total=params.steps,
                        _values=values,
                        elapsed=elapsed,
                        eta=eta,
                        size=(w, h),
                        _preview=self._previewer(shown, content_t, params.preserve_colors),
                    )
                    if on_step(info):
                        raise StylizeCancelled(f"stopped at step {step} of {params.steps}")
            image = shown.detach()
        assert image is not None
        final = self._finish(image, self._to_tensor(content, sizes[-1]), params.preserve_colors)
        loss_value, *parts = values.tolist()
        seconds = time.perf_counter() - start
        stats = {
            "steps": step,
            "scales": [[w, h, n] for (w, h), n in zip(sizes, steps, strict=True)],
            "size": list(sizes[-1]),
            "seconds": round(seconds, 3),
            "loss": loss_value,
            "losses": dict(zip(("content", "style", "tv"), parts, strict=True)),
            "device": self.device,
            "precision": self.precision,
            "model": self.model,
            "weights": self.weights_description,
        }
        log.info("stylized %sx%s in %.1f s (%d steps)", *sizes[-1], seconds, step)
        picture = _to_pil(final)
        if frames is not None:
            frames.add_picture(picture)
        return StylizeResult(image=picture, stats=stats)

    def _step(
        self,
        optimizer: DeviceLBFGS | torch.optim.Optimizer,
        image: torch.Tensor,
        objective: Objective,
    ) -> torch.Tensor:
        """One optimizer step; returns (total, content, style, tv) on the device, unsynchronized."""
        last: list[torch.Tensor] = []

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            total, parts = objective(image)
            total.backward()
            last[:] = [total.detach(), parts]
            return total

        optimizer.step(closure)
        with torch.no_grad():
            image.clamp_(0, 1)
        return torch.cat([last[0].reshape(1).float(), last[1].float()])

    def _optimizer(
        self, image: torch.Tensor, params: TransferParams
    ) -> DeviceLBFGS | torch.optim.Optimizer:
        if params.optimizer == "adam":
            return torch.optim.Adam([image], lr=params.learning_rate)
        # One iteration per step() call: the callback runs between iterations, so a cancel lands
        # within one step; the curvature history lives on across calls.
        return DeviceLBFGS(image, lr=1.0, history_size=LBFGS_HISTORY)

    def _initial(
        self,
        previous: torch.Tensor | None,
        content_t: torch.Tensor,
        net_content: torch.Tensor,
        init_image: Image.Image | None,
        params: TransferParams,
        size: tuple[int, int],
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        w, h = size
        if previous is not None:
            up = F.interpolate(previous, size=(h, w), mode="bicubic", align_corners=False)
            return up.clamp(0, 1).contiguous()
        if params.init == "random":
            noise = torch.rand((1, 3, h, w), generator=generator)
            return noise.to(self.torch_device)
        if params.init == "image" and init_image is not None:
            start = self._to_tensor(init_image.convert("RGB"), size)
            return color.luminance(start) if params.preserve_colors else start
        return net_content.clone(memory_format=torch.contiguous_format)

    def _style_targets(
        self,
        extractor: FeatureExtractor,
        styles: list[Image.Image],
        blend: list[float],
        params: TransferParams,
        size: tuple[int, int],
        net_content: torch.Tensor,
    ) -> list[torch.Tensor]:
        per_style: list[dict[str, torch.Tensor]] = []
        for style in styles:
            key, style_size = self._target_key(style, size, params, net_content)
            grams = self.cache.get(key)
            if grams is None:
                grams = self._extract_grams(extractor, style, style_size, params, net_content)
                self.cache.put(key, grams)
            per_style.append(grams)
        return [blend_grams([g[name] for g in per_style], blend) for name in params.style_layers]

    def warm_style_targets(self, style: Image.Image, params: TransferParams) -> tuple[int, bool]:
        """Cache `style`'s targets for every scale of a job with `params` on a photo of ordinary
        shape, evicting nothing; (targets added, whether all had room)."""
        style = style.convert("RGB")
        extractor = self.extractor((*params.content_layers, *params.style_layers))
        # Only the long side of each scale matters to the targets; a square photo has them all.
        added = 0
        for size in scale_sizes(params.size, params.size, params):
            key, style_size = self._target_key(style, size, params, None)
            if key in self.cache:
                continue
            grams = self._extract_grams(extractor, style, style_size, params, None)
            nbytes = sum(t.numel() * t.element_size() for t in grams.values())
            if self.cache.bytes_used + nbytes > self.cache.max_bytes:
                return added, False
            self.cache.put(key, grams)
            added += 1
        return added, True

    def _target_key(
        self,
        style: Image.Image,
        size: tuple[int, int],
        params: TransferParams,
        net_content: torch.Tensor | None,
    ) -> tuple[tuple[Any, ...], tuple[int, int]]:
        """The cache key of `style`'s targets at one scale of working size `size`, and the size
        the style image is resized to there."""
        long_side = style_side(max(size), params.style_scale)
        style_size = fit_size(style.width, style.height, long_side)
        key: tuple[Any, ...] = (fingerprint(style), style_size, params.style_layers, self.precision)
        if params.preserve_colors:
            if net_content is None:
                raise ValueError("targets with preserve_colors depend on the content image")
            key += ("luma", fingerprint(net_content))
        return key, style_size

    def _extract_grams(
        self,
        extractor: FeatureExtractor,
        style: Image.Image,
        size: tuple[int, int],
        params: TransferParams,
        net_content: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        self.style_extractions += 1
        style_t = self._to_tensor(style, size)
        if params.preserve_colors:
            style_t = color.match_luminance(color.luminance(style_t), net_content)
        with torch.no_grad(), self._autocast_ctx():
            feats = extractor(self._layout(style_t))
            return {name: gram_matrix(feats[name]) for name in params.style_layers}

    def _previewer(
        self, image: torch.Tensor, content_t: torch.Tensor, preserve: bool
    ) -> Callable[[int], Image.Image]:
        def preview(max_side: int) -> Image.Image:
            picture = _to_pil(self._finish(image.detach(), content_t, preserve))
            picture.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            return picture

        return preview

    @staticmethod
    def _finish(image: torch.Tensor, content_t: torch.Tensor, preserve: bool) -> torch.Tensor:
        image = image.detach().clamp(0, 1)
        return color.combine_luminance(image, content_t) if preserve else image

    def _to_tensor(self, picture: Image.Image, size: tuple[int, int]) -> torch.Tensor:
        if picture.size != size:
            picture = picture.resize(size, Image.Resampling.LANCZOS)
        return image_to_tensor(picture).to(self.torch_device)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def _autocast_ctx(self) -> contextlib.AbstractContextManager[Any]:
        if self._autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=self._autocast)


def image_to_tensor(picture: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a (1, 3, H, W) float tensor in [0, 1]."""
    data = torch.frombuffer(bytearray(picture.convert("RGB").tobytes()), dtype=torch.uint8)
    hwc = data.view(picture.height, picture.width, 3)
    return hwc.permute(2, 0, 1).unsqueeze(0).float().div_(255).contiguous()


def _to_pil(image: torch.Tensor) -> Image.Image:
    pixels = image.squeeze(0).float().clamp(0, 1).mul(255).round().byte().cpu()
    hwc = pixels.permute(1, 2, 0).contiguous()
    return Image.fromarray(hwc.numpy())
