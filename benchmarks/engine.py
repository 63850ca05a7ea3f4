"""Engine benchmark: seconds per optimizer evaluation against the bare network floor, peak memory.

For each size, a fresh child process builds the engine, times the bare forward+backward pass of
the cut VGG19 (the floor no implementation can beat), then times `stylize()` steps (one L-BFGS step
is one evaluation), and reports its own peak memory (RSS on CPU, allocator peak on CUDA).

    python -m benchmarks.engine                       # 256 and 512 px, current device, fp32
    python -m benchmarks.engine --precision bf16      # reduced precision (CUDA)
    python -m benchmarks.engine --weights PATH        # real weights (default: random)

(Run as a module from the repository root: `benchmarks/queue.py` would shadow the standard
library's `queue` if this folder were the script's path.)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 3
CONTENT = ROOT / "tests" / "data" / "content-coffee.jpg"
STYLE = ROOT / "tests" / "data" / "style-brick.jpg"


def child(size: int, device: str, precision: str, weights: str, steps: int, warmup: int) -> dict:
    import torch
    from PIL import Image

    from nstbot.engine.transfer import StyleTransfer
    from nstbot.params import TransferParams

    engine = StyleTransfer(
        device=device, weights=weights, precision=precision, allow_download=False
    )
    dev = engine.torch_device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    content = Image.open(CONTENT).convert("RGB")
    content = content.resize((size, round(size * content.height / content.width)))
    style = Image.open(STYLE).convert("RGB")
    params = TransferParams(size=size, scales=1, steps=warmup + steps, seed=0)

    # Floor: the same cut network, forward and backward to the pixels, nothing else. Both loops
    # synchronize only around the timed block, so the figures are throughput per evaluation.
    extractor = engine.extractor((*params.content_layers, *params.style_layers))
    x = torch.rand(1, 3, content.height, content.width, device=dev, requires_grad=True)

    def floor_pass() -> None:
        with engine._autocast_ctx():
            feats = extractor(engine._layout(x))
        sum(f.float().sum() for f in feats.values()).backward()
        x.grad = None

    for _ in range(warmup):
        floor_pass()
    floor_times = []
    for _ in range(REPEATS):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            floor_pass()
        sync()
        floor_times.append((time.perf_counter() - t0) / steps)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    step_times = []
    for _ in range(REPEATS):
        marks: dict[int, float] = {}

        def on_step(info, marks=marks) -> None:
            if info.step in (warmup, warmup + steps):
                sync()
                marks[info.step] = time.perf_counter()

        engine.stylize(content, [style], params, on_step=on_step)
        step_times.append((marks[warmup + steps] - marks[warmup]) / steps)
    floor = statistics.median(floor_times)
    ours = statistics.median(step_times)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        peak_kind = "CUDA allocator peak"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_kind = "process peak RSS"
    return {
        "size": f"{content.width}x{content.height}",
        "device": engine.device,
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "",
        "precision": precision,
        "floor_s": floor,
        "eval_s": ours,
        "ratio": ours / floor,
        "peak_mb": peak,
        "peak_kind": peak_kind,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: 5 CPU, 30 GPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (at least 1)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(
            args.child, args.device, args.precision, args.weights, args.steps, args.warmup
        )
        print("RESULT " + json.dumps(result))
        return
    rows = []
    for size in args.sizes:
        steps = args.steps
        if not steps:
            steps = 30 if args.device.startswith("cuda") or _has_cuda(args.device) else 5
        cmd = [sys.executable, "-m", "benchmarks.engine", "--child", str(size),
               "--device", args.device, "--precision", args.precision, "--weights", args.weights,
               "--steps", str(steps), "--warmup", str(args.warmup)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"benchmark child failed for {size} px:\n{out.stderr[-2000:]}")
        rows.append(json.loads(line.removeprefix("RESULT ")))
    print(f"engine benchmark (weights={args.weights}; medians; one L-BFGS step = one evaluation)")
    print(
        f"{'size':>9} {'device':>7} {'prec':>5} {'floor s':>9} {'eval s':>9} {'ratio':>6} "
        f"{'peak MB':>8}"
    )
    for r in rows:
        print(
            f"{r['size']:>9} {r['device']:>7} {r['precision']:>5} {r['floor_s']:>9.4f} "
            f"{r['eval_s']:>9.4f} {r['ratio']:>6.3f} {r['peak_mb']:>8.0f}  "
            f"({r['peak_kind']}) {r['gpu']}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def _has_cuda(device: str) -> bool:
    if device != "auto":
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
