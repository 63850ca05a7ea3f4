"""Timelapse benchmark: what recording frames costs a job, and how large the animations come out.

Cost: the CPU `balanced` preset (384 px, 100 steps, 2 scales, medium, average 0.9), random weights
(the arithmetic per step is the same as with real ones), runs with and without a FrameRecorder
alternating, median of the repeats; plus the recorder's own time measured inside the run (which
the machine's load disturbs far less than the difference of two medians), and what packing the
frames (worker) and encoding them (bot) take after the job.

Sizes: frames of a real painting (the VGG16 stand-in, astronaut and The Starry Night at the same
preset, seed 0) encoded as animated WebP and GIF without a budget and within 8 MiB and 25 MiB (the
usual Discord upload limits) and tighter ones; `--gallery FILE` also writes the gallery's WebP.

    python -m benchmarks.timelapse                       # both parts
    python -m benchmarks.timelapse --skip-sizes --repeats 5
    python -m benchmarks.timelapse --skip-cost \
        --gallery docs/gallery/astronaut-starry-timelapse.webp
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from nstbot.engine.timelapse import FrameRecorder
from nstbot.engine.transfer import StyleTransfer
from nstbot.images.animation import AnimationTooLarge, encode_timelapse, pack_frames
from nstbot.params import TransferParams

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "benchmarks" / "images"
STANDIN = ROOT / ".standin" / "vgg16-standin.pth"
BALANCED = {"size": 384, "steps": 100, "scales": 2}
MIB = 1 << 20
BUDGETS: tuple[tuple[str, int | None], ...] = (
    ("none", None), ("25 MiB", 25 * MIB), ("8 MiB", 8 * MIB), ("1 MiB", MIB),
    ("400 KB", 400_000), ("200 KB", 200_000),
)  # fmt: skip


class TimedRecorder(FrameRecorder):
    """A FrameRecorder that adds up the CPU time (all threads) its own calls take."""

    seconds = 0.0

    def add(self, image: torch.Tensor, step: int) -> None:
        start = time.process_time()
        super().add(image, step)
        self.seconds += time.process_time() - start

    def add_picture(self, picture: Image.Image) -> None:
        start = time.process_time()
        super().add_picture(picture)
        self.seconds += time.process_time() - start


def load(name: str) -> Image.Image:
    with Image.open(IMAGES / name) as img:
        return img.convert("RGB")


def pair() -> tuple[Image.Image, Image.Image]:
    return load("content-astronaut.jpg"), load("style-starry-night.jpg")


def measure_cost(repeats: int) -> None:
    engine = StyleTransfer(device="cpu", weights="random", allow_download=False, progress=False)
    content, style = pair()
    params = TransferParams(**BALANCED)  # type: ignore[arg-type]
    engine.stylize(content, [style], params.replace(steps=4, size=128))  # warm-up
    # Wall time and this process's CPU time (all threads): on a shared machine the neighbours'
    # load stretches the wall time of a run far more than its CPU time.
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    own: list[float] = []
    recorder = TimedRecorder.for_steps(params.steps)
    for repeat in range(repeats):
        # Alternate the order so that a drift in the machine's load hits both alike.
        for with_frames in (repeat % 2 == 0, repeat % 2 == 1):
            recorder.seconds = 0.0
            wall, cpu = time.perf_counter(), time.process_time()
            engine.stylize(content, [style], params, frames=recorder if with_frames else None)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            runs[with_frames].append((wall, cpu))
            if with_frames:
                own.append(recorder.seconds)
            label = "with frames" if with_frames else "without"
            print(f"  run {repeat + 1} {label:<12} {wall:7.2f} s wall {cpu:7.2f} s CPU", flush=True)
    frames = recorder.frames
    print(f"balanced preset (384 px, 100 steps, 2 scales), {repeats} repeats, CPU random weights")
    for index, what in ((0, "wall"), (1, "CPU")):
        base = statistics.median(r[index] for r in runs[False])
        with_ = statistics.median(r[index] for r in runs[True])
        print(
            f"  median {what:<4} without {base:7.2f} s, with frames {with_:7.2f} s "
            f"({100 * (with_ / base - 1):+.1f} %)"
        )
    base_cpu = statistics.median(r[1] for r in runs[False])
    inside = statistics.median(own)
    print(
        f"  recorder's own CPU time {1000 * inside:7.1f} ms  ({100 * inside / base_cpu:.2f} % of "
        f"the job's; {len(frames)} frames of {frames[0].width}x{frames[0].height})"
    )
    start = time.process_time()
    packed = pack_frames(frames)
    pack_s = time.process_time() - start
    start = time.process_time()
    webp = encode_timelapse(frames, max_bytes=8 * MIB)
    encode_s = time.process_time() - start
    print(f"  pack_frames (worker)    {1000 * pack_s:7.1f} ms CPU ({len(packed) / 1000:.0f} KB)")
    print(
        f"  encode under 8 MiB (bot) {1000 * encode_s:6.1f} ms CPU ({len(webp.data) / 1000:.0f} KB)"
    )


def measure_sizes(weights: Path, gallery: Path | None, out: Path) -> None:
    engine = StyleTransfer(
        device="cpu", weights=str(weights), model="vgg16", allow_download=False, progress=False
    )
    content, style = pair()
    params = TransferParams(**BALANCED, seed=0)  # type: ignore[arg-type]
    recorder = FrameRecorder.for_steps(params.steps)
    start = time.perf_counter()
    result = engine.stylize(content, [style], params, frames=recorder)
    frames = recorder.frames
    print(
        f"stand-in painting: {result.image.width}x{result.image.height} in "
        f"{time.perf_counter() - start:.0f} s; {len(frames)} frames of "
        f"{frames[0].width}x{frames[0].height} (every {recorder.every} steps)"
    )
    out.mkdir(parents=True, exist_ok=True)
    result.image.save(out / "result.png")
    for index in (0, len(frames) // 4, len(frames) // 2, len(frames) - 1):
        frames[index].save(out / f"frame-{index:02d}.png")
    print(f"  pack_frames: {len(pack_frames(frames)) / 1000:.0f} KB")
    print(f"  {'format':<6} {'budget':<8} {'bytes':>9} {'frames':>6} {'size':>9} {'s':>5} "
          f"{'enc s':>5}")  # fmt: skip
    for fmt in ("webp", "gif"):
        for label, budget in BUDGETS:
            start = time.perf_counter()
            try:
                animation = encode_timelapse(frames, max_bytes=budget, format=fmt)  # type: ignore[arg-type]
            except AnimationTooLarge as exc:
                print(f"  {fmt:<6} {label:<8} {exc}")
                continue
            took = time.perf_counter() - start
            w, h = animation.size
            print(
                f"  {fmt:<6} {label:<8} {len(animation.data):>9} {animation.frames:>6} "
                f"{f'{w}x{h}':>9} {animation.duration_s:>5.2f} {took:>5.1f}"
            )
    if gallery is not None:
        animation = encode_timelapse(frames, max_bytes=400_000, format="webp")
        gallery.parent.mkdir(parents=True, exist_ok=True)
        gallery.write_bytes(animation.data)
        print(f"wrote {gallery} ({len(animation.data) / 1000:.0f} KB, {animation.size})")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.timelapse", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--weights", type=Path, default=STANDIN, help="stand-in weights file")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-sizes", action="store_true")
    parser.add_argument("--gallery", type=Path, help="also write the gallery WebP here")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "timelapse")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.skip_cost:
        measure_cost(args.repeats)
    if not args.skip_sizes:
        if not args.weights.is_file():
            print(
                f"timelapse: no stand-in at {args.weights}; build it with "
                "`python -m benchmarks.standin` or pass --weights",
                file=sys.stderr,
            )
            return 1
        measure_sizes(args.weights, args.gallery, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
