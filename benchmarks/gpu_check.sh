#!/usr/bin/env bash
# The GPU checks, in one run on a lent GPU machine (see docs/performance.md):
#   engine tests on CUDA, then the engine benchmark at 256/512 px in fp32, bf16 and fp16.
# Figures go to $OUT (or ./gpu-out) as text and JSON.
set -uo pipefail
out="${OUT:-gpu-out}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$py" -c "import torch, PIL; print('torch', torch.__version__, 'pillow', PIL.__version__)"
} 2>&1 | tee "$out/env.txt"
"$py" -m pytest tests/engine/test_cuda.py -q -p no:cacheprovider -o addopts="" 2>&1 | tee "$out/tests.txt"
for precision in fp32 bf16 fp16; do
    "$py" -m benchmarks.engine --device cuda --precision "$precision" --steps 30 --warmup 5 \
        --json "$out/engine-$precision.json" 2>&1 | tee "$out/engine-$precision.txt"
done
# Whole default jobs (3 scales, 300 steps), as a user sees them: first run, then warm runs.
"$py" - <<'PY' 2>&1 | tee "$out/jobs.txt"
import time
from PIL import Image
from nstbot.engine.transfer import StyleTransfer
from nstbot.params import TransferParams
content = Image.open("tests/data/content-coffee.jpg").convert("RGB")
style = Image.open("tests/data/style-brick.jpg").convert("RGB")
for precision in ("fp32", "bf16"):
    engine = StyleTransfer(device="cuda", weights="random", precision=precision)
    for size in (512, 512, 1024):
        t0 = time.perf_counter()
        r = engine.stylize(content, [style], TransferParams(size=size))
        print(f"{precision} {size}px default job: {time.perf_counter() - t0:.2f} s, {r.image.size}")
PY
