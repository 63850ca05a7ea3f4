"""The plain-data knobs of one stylization, shared by the engine, the job queue and the bot.

This module imports no torch: the bot process builds and validates parameters without loading the
GPU stack, and a job's parameters travel as JSON (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Optimizer = Literal["lbfgs", "adam"]
Init = Literal["content", "random", "image"]
Strength = Literal["low", "medium", "high"]
Model = Literal["vgg19", "vgg16"]
StyleNorm = Literal["target", "start"]

# VGG19 `features` in the paper's naming; index i is torchvision's `features[i]`.
VGG19_LAYERS: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
)  # fmt: skip

# VGG16 (configuration "D"): three convs in blocks 3 to 5 where VGG19 has four. Every name here is
# also a VGG19 name, so the defaults below mean the same layers in both.
VGG16_LAYERS: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "pool5",
)  # fmt: skip

MODEL_LAYERS: dict[str, tuple[str, ...]] = {"vgg19": VGG19_LAYERS, "vgg16": VGG16_LAYERS}

DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

STRENGTHS: tuple[str, ...] = get_args(Strength)
"""The strength choices, weakest first, for every surface that offers them."""

# Bounds of the knobs, used by TransferParams, the CLI, the slash commands and server settings.
SIZE_MIN = 16
"""Smallest longest side of an output (the deepest default style layer needs 16 px)."""
SIZE_MAX = 8192
"""Largest longest side anyone may ask for; quality presets and server caps lower it."""
REQUEST_SIZE_MIN = 32
"""Smallest size a Discord request or a server's size cap may name (VGG19 wants about 32 px)."""
STEPS_MAX = 100_000
SCALES_MAX = 8

TIMELAPSE_FPS = 12
"""Frames per second of a timelapse of the painting."""
TIMELAPSE_SECONDS = 3.0
"""Target length of a timelapse's painting part; the final frame is then held about a second."""


def timelapse_every(total_steps: int) -> int:
    """Record every k-th step, k chosen so that a run of `total_steps` yields about
    TIMELAPSE_FPS * TIMELAPSE_SECONDS frames (the start, every k-th step and the result)."""
    target = round(TIMELAPSE_FPS * TIMELAPSE_SECONDS)
    total = max(1, total_steps)

    def frames(k: int) -> int:
        return 1 + -(-total // k)  # the start, then ceil(total / k) frames ending at the result

    near = max(1, total // (target - 1))
    return min((near, near + 1), key=lambda k: (abs(frames(k) - target), k))


# Style weight per strength preset, relative to a content weight of 1, for start-normalized style
# terms (style_norm = "start"); calibrated on real ImageNet features, see docs/quality.md.
STRENGTH_STYLE_WEIGHTS: dict[str, float] = {"low": 1.0, "medium": 3.0, "high": 10.0}


class ParamsError(ValueError):
    """A parameter value is out of range; the message names the parameter and fits a user.

    `field` is the parameter's name (None when the problem involves the image, not one knob) and
    `problem` the message without it, so that each surface can name the parameter its own way
    (the CLI says `--blend` where the field is `style_blend`).
    """

    def __init__(self, problem: str, field: str | None = None) -> None:
        super().__init__(f"{field} {problem}" if field else problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class TransferParams:
    """Every knob of one stylization, with its default; the one place defaults live."""

    size: int = 512
    """Longest side of the output, in pixels."""
    steps: int = 300
    """Optimizer iterations across all scales."""
    scales: int = 3
    """Number of scales (1 = single scale at `size`)."""
    min_size: int = 128
    """Longest side at the smallest scale."""
    strength: Strength = "medium"
    """Preset for the style weight; ignored when `style_weight` is set."""
    style_weight: float | None = None
    content_weight: float = 1.0
    tv_weight: float = 1.0
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None
    """One weight per style layer; default equal weights. Normalized to sum to 1."""
    style_blend: tuple[float, ...] | None = None
    """One weight per style image; default equal. Normalized to sum to 1."""
    style_scale: float = 1.0
    """Style image size relative to the output's size at each scale."""
    style_norm: StyleNorm = "start"
    """Divide each style layer's term by its target's norm only (target), or also by its value on
    the content image (start), so that a style weight means the same for every style image."""
    preserve_colors: bool = False
    """Transfer luminance only: the output keeps the content's colours."""
    optimizer: Optimizer = "lbfgs"
    learning_rate: float = 0.02
    """Adam's step size, in pixel units of [0, 1] images."""
    average: float = 0.9
    """Decay of an exponential moving average of the iterates, which is then the output (0 = off,
    the last iterate is the output); it smooths the optimizer's pixel-level speckle. 0.9 was
    chosen on real features, see docs/quality.md."""
    init: Init = "content"
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Free-form labels carried along (not used by the engine)."""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def effective_style_weight(self) -> float:
        """The style weight in force: the explicit one, else the strength preset's."""
        if self.style_weight is not None:
            return self.style_weight
        return STRENGTH_STYLE_WEIGHTS[self.strength]

    def validate(self) -> None:
        """Raise ParamsError naming the first bad parameter."""
        _check(
            SIZE_MIN <= self.size <= SIZE_MAX,
            "size",
            f"must be between {SIZE_MIN} and {SIZE_MAX} pixels",
        )
        _check(1 <= self.steps <= STEPS_MAX, "steps", f"must be between 1 and {STEPS_MAX}")
        _check(1 <= self.scales <= SCALES_MAX, "scales", f"must be between 1 and {SCALES_MAX}")
        _check(self.min_size >= SIZE_MIN, "min_size", f"must be at least {SIZE_MIN} pixels")
        # At or below min_size every scale is the same size and the engine merges them into one.
        used_scales = self.scales if self.size > self.min_size else 1
        _check(
            used_scales <= self.steps,
            "steps",
            f"must be at least the number of scales ({used_scales})",
        )
        _check(self.strength in STRENGTHS, "strength", f"must be {_or(STRENGTHS)}")
        for name in ("content_weight", "tv_weight"):
            _check(_finite_nonneg(getattr(self, name)), name, "must be a non-negative number")
        if self.style_weight is not None:
            _check(
                _finite_nonneg(self.style_weight), "style_weight", "must be a non-negative number"
            )
        _check(0.05 <= self.style_scale <= 4.0, "style_scale", "must be between 0.05 and 4")
        _check(self.style_norm in get_args(StyleNorm), "style_norm", "must be target or start")
        _check(self.optimizer in ("lbfgs", "adam"), "optimizer", "must be lbfgs or adam")
        _check(0 < self.learning_rate <= 1, "learning_rate", "must be in (0, 1]")
        _check(
            _finite_nonneg(self.average) and self.average < 1,
            "average",
            "must be at least 0 and below 1",
        )
        _check(
            self.init in ("content", "random", "image"), "init", "must be content, random or image"
        )
        if self.seed is not None:
            _check(0 <= self.seed < 2**63, "seed", "must be between 0 and 2^63-1")
        for name in ("content_layers", "style_layers"):
            layers = getattr(self, name)
            _check(bool(layers), name, "must not be empty")
            # Any model's names pass here (VGG16's are a subset of VGG19's); the engine, which
            # knows its model, calls check_layers_for() before it runs.
            for layer in layers:
                _check(layer in VGG19_LAYERS, name, f"has an unknown VGG19 layer {layer!r}")
        if self.style_layer_weights is not None:
            _check(
                len(self.style_layer_weights) == len(self.style_layers),
                "style_layer_weights",
                "needs one weight per style layer",
            )
            check_blend(self.style_layer_weights, what="style_layer_weights")
        if self.style_blend is not None:
            check_blend(self.style_blend, what="style_blend")

    def check_layers_for(self, model: str) -> None:
        """Raise ParamsError if a content or style layer does not exist in `model`."""
        names = MODEL_LAYERS.get(model)
        _check(names is not None, "model", f"must be one of {', '.join(MODEL_LAYERS)}")
        assert names is not None
        for name in ("content_layers", "style_layers"):
            for layer in getattr(self, name):
                _check(layer in names, name, f"has an unknown {model.upper()} layer {layer!r}")

    def normalized_blend(self, n_styles: int) -> list[float]:
        """Per-style-image weights summing to 1, checked against the number of style images."""
        if self.style_blend is None:
            return [1.0 / n_styles] * n_styles
        if len(self.style_blend) != n_styles:
            given = len(self.style_blend)
            raise ParamsError(
                f"has {_count(given, 'weight')} for {_count(n_styles, 'style image')}",
                "style_blend",
            )
        total = sum(self.style_blend)
        return [w / total for w in self.style_blend]

    def normalized_layer_weights(self) -> list[float]:
        """Per-style-layer weights summing to 1."""
        weights = self.style_layer_weights or (1.0,) * len(self.style_layers)
        total = sum(weights)
        return [w / total for w in weights]

    def replace(self, **changes: Any) -> TransferParams:
        """A copy with some fields changed (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransferParams:
        """Build from `to_dict` output (or a subset); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParamsError(f"unknown parameter(s): {', '.join(unknown)}")
        values = {}
        for key, value in data.items():
            values[key] = tuple(value) if isinstance(value, list) else value
        try:
            return cls(**values)
        except TypeError as exc:  # wrong types that comparisons trip over
            raise ParamsError(f"bad parameter value: {exc}") from exc


def style_side(long_side: int, style_scale: float) -> int:
    """Longest side of the style images for an output (or scale) whose longest side is given."""
    return max(SIZE_MIN, round(long_side * style_scale))


def too_long_and_thin(width: int, height: int, long_side: int, min_short: int) -> bool:
    """Whether scaling the long side to `long_side` leaves the short side under `min_short`."""
    return round(min(width, height) * long_side / max(width, height)) < min_short


def check_blend(weights: tuple[float, ...] | list[float], *, what: str = "blend weights") -> None:
    """Blend weights must be finite, non-negative and not all zero."""
    _check(len(weights) > 0, what, "must not be empty")
    _check(all(_finite_nonneg(w) for w in weights), what, "must be non-negative numbers")
    _check(sum(weights) > 0, what, "must not all be zero")


def _finite_nonneg(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value >= 0
        and value != float("inf")
        and value == value  # not NaN
    )


def _or(choices: tuple[str, ...]) -> str:
    return f"{', '.join(choices[:-1])} or {choices[-1]}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _check(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise ParamsError(problem, field)
