"""Frames of the painting for a timelapse: the start, every k-th step and the result, kept small.

The engine hands the recorder its image on the device; the recorder shrinks it there to the frame
size and copies only those few pixels to the host (asynchronously on CUDA, so a frame costs no
wait for the GPU). Memory stays bounded: when `max_frames` are held, every other frame is dropped
and k doubles, so a run of any length keeps an even spread from the photo to the result.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nstbot.params import timelapse_every


class FrameRecorder:
    """Collects RGB frames, all one size (the output's aspect ratio, at most `max_side` px)."""

    def __init__(self, *, every: int, max_side: int = 320, max_frames: int = 64) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        if max_side < 8:
            raise ValueError("max_side must be at least 8")
        if max_frames < 3:
            raise ValueError("max_frames must be at least 3 (the start, one step, the result)")
        self.every = every
        self.max_side = max_side
        self.max_frames = max_frames
        self.size: tuple[int, int] | None = None
        """(width, height) of every frame, known once the engine has begun a run."""
        self._total = 0
        self._frames: list[torch.Tensor] = []  # (H, W, 3) uint8 on the host
        self._pending: torch.cuda.Event | None = None
        self._pictures: list[Image.Image] | None = None

    @classmethod
    def for_steps(cls, total_steps: int, max_side: int = 320) -> FrameRecorder:
        """A recorder whose k yields about TIMELAPSE_FPS * TIMELAPSE_SECONDS frames."""
        return cls(every=timelapse_every(total_steps), max_side=max_side)

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def frames(self) -> list[Image.Image]:
        """The frames so far, oldest first."""
        if self._pictures is None:
            if self._pending is not None:
                self._pending.synchronize()
                self._pending = None
            self._pictures = [Image.fromarray(f.numpy()) for f in self._frames]
        return list(self._pictures)

    def begin(self, output_size: tuple[int, int], total_steps: int) -> None:
        """Start a run whose result is `output_size` (w, h) after `total_steps` steps."""
        w, h = output_size
        shrink = min(1.0, self.max_side / max(w, h))
        self.size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
        self._total = total_steps
        self._frames = []
        self._pictures = None

    def due(self, step: int) -> bool:
        """Whether the image after `step` (0 = the start) makes a frame; the last step does not,
        the result (`add_picture`) stands for it."""
        return step % self.every == 0 and step < self._total

    def add(self, image: torch.Tensor, step: int) -> None:
        """Record `image` ((1, 3, H, W) in [0, 1], any device) as the frame of `step`."""
        if not self._make_room(final=False) and step % self.every != 0:
            return  # k doubled, and this step is no longer one of its multiples
        width, height = self._frame_size()
        with torch.no_grad():
            small = image.detach().float()
            if small.shape[-2:] != (height, width):
                small = F.interpolate(
                    small, size=(height, width), mode="bilinear", antialias=True,
                    align_corners=False,
                )  # fmt: skip
            pixels = small[0].clamp(0, 1).mul(255).round().to(torch.uint8)
            pixels = pixels.permute(1, 2, 0).contiguous()
            if pixels.device.type == "cuda":
                host = torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True)
                host.copy_(pixels, non_blocking=True)
                self._pending = torch.cuda.Event()
                self._pending.record()
            else:  # the CPU (a new tensor already) or MPS
                host = pixels.cpu()
        self._store(host)

    def add_picture(self, picture: Image.Image) -> None:
        """Record a PIL image (the content photo at the start, or the result at the end)."""
        self._make_room(final=True)
        size = self._frame_size()
        picture = picture.convert("RGB")
        if picture.size != size:
            picture = picture.resize(size, Image.Resampling.LANCZOS)
        self._store(torch.from_numpy(np.array(picture, dtype=np.uint8)))

    def _frame_size(self) -> tuple[int, int]:
        if self.size is None:
            raise RuntimeError("begin() must be called before frames are added")
        return self.size

    def _make_room(self, *, final: bool) -> bool:
        """Thin the frames when full (one slot is kept for the result); True if nothing changed."""
        limit = self.max_frames if final else self.max_frames - 1
        if len(self._frames) < limit:
            return True
        self._frames = self._frames[::2]
        self.every *= 2
        return False

    def _store(self, frame: torch.Tensor) -> None:
        self._frames.append(frame)
        self._pictures = None
