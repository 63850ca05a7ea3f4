"""`nstbot stylize --timelapse OUT`: the animation's format from its name, and writing it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nstbot.images.animation import AnimationFormat, encode_timelapse, webp_animation_available
from nstbot.params import TransferParams

if TYPE_CHECKING:
    from PIL import Image

    from nstbot.engine.timelapse import FrameRecorder

SUFFIXES: dict[str, AnimationFormat] = {".webp": "webp", ".gif": "gif"}


def timelapse_format(path: Path) -> AnimationFormat:
    """The format a timelapse file's suffix asks for; ValueError, fit for the user, otherwise."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"--timelapse {path}: the timelapse must end in .webp or .gif")
    if fmt == "webp" and not webp_animation_available():
        raise ValueError(
            f"--timelapse {path}: this Pillow cannot write animated WebP; use a .gif name"
        )
    return fmt


def recorder_for(params: TransferParams) -> FrameRecorder:
    """A frame recorder sized for a run of these parameters (imports the engine)."""
    from nstbot.engine.timelapse import FrameRecorder

    return FrameRecorder.for_steps(params.steps)


def write_timelapse(frames: Sequence[Image.Image], path: Path) -> str:
    """Encode the frames into `path` (OSError when it cannot be written); a line saying so."""
    animation = encode_timelapse(frames, format=timelapse_format(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(animation.data)
    width, height = animation.size
    return (
        f"wrote {path} (timelapse, {animation.frames} frames, {width}x{height}, "
        f"{animation.duration_s:.1f} s, {len(animation.data) / 1000:.0f} KB)"
    )
