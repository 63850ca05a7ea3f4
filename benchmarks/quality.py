"""Quality benchmark: what each strength preset does to real pictures, in figures and sheets.

For each content/style pair, each strength (or explicit style weight) and each size it prints

- `content`: the relative content loss ‖F(x) − F(c)‖² / ‖F(c)‖² on relu4_2 (0 = the photo's
  features untouched, about 1 = nothing of them left);
- `style`: the style loss at the end over the style loss of the content photo itself (Gatys'
  layers, equal weights; 1 = no style taken, 0 = the style's statistics matched);
- `ssim`: SSIM of the luminance at 64 px against the content's: a structure figure that does not
  come from the network (1 = the same picture, about 0 = unrelated; a style that darkens the whole
  picture lowers it even where the subject stays);
- `hf`: the mean absolute Laplacian of the output's luminance at its own size, in 8-bit levels (a
  high-frequency noise figure: L-BFGS leaves pixel-level speckle; compare with the photo's own,
  printed in each pair's first line);

and writes one contact sheet per pair (content, style, then one column per strength) at the
largest size. Needs real weights: by default the VGG16 stand-in (`python -m benchmarks.standin`).

    python -m benchmarks.quality                                 # 5 pairs, 128 and 192 px, 60 steps
    python -m benchmarks.quality --style-weights 1 3 10 30       # columns by explicit weight
    python -m benchmarks.quality --set style_norm=target         # any TransferParams field
    python -m benchmarks.quality --pairs all --sizes 384 --steps 300 --scales 3 --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "benchmarks" / "images"
STANDIN = ROOT / ".standin" / "vgg16-standin.pth"
PAIRS: dict[str, tuple[str, str]] = {
    "astronaut-starry": ("content-astronaut.jpg", "style-starry-night.jpg"),
    "cat-brick": ("content-cat.jpg", "style-brick.jpg"),
    "coffee-matisse": ("content-coffee.jpg", "style-matisse-woman-with-hat.jpg"),
    "rocket-hubble": ("content-rocket.jpg", "style-hubble.jpg"),
    "astronaut-hubble": ("content-astronaut.jpg", "style-hubble.jpg"),
    # Not in the default run:
    "cat-gravel": ("content-cat.jpg", "style-gravel.jpg"),
    "coffee-starry": ("content-coffee.jpg", "style-starry-night.jpg"),
    "rocket-matisse": ("content-rocket.jpg", "style-matisse-woman-with-hat.jpg"),
}
DEFAULT_PAIRS = ("astronaut-starry", "cat-brick", "coffee-matisse", "rocket-hubble",
                 "astronaut-hubble")  # fmt: skip
SSIM_SIDE = 64
TILE = 192


@dataclass
class Run:
    """One stylization and its figures."""

    pair: str
    size: int
    column: str
    style_weight: float
    content: float
    style: float
    ssim: float
    hf: float
    seconds: float
    image: Image.Image

    def row(self) -> dict[str, Any]:
        """The JSON-safe figures."""
        return {k: v for k, v in self.__dict__.items() if k != "image"}


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> float:
    """Mean SSIM (Wang et al. 2004, uniform window) of two (1, 1, H, W) images in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = F.avg_pool2d(a, window, 1), F.avg_pool2d(b, window, 1)
    var_a = F.avg_pool2d(a * a, window, 1) - mu_a**2
    var_b = F.avg_pool2d(b * b, window, 1) - mu_b**2
    cov = F.avg_pool2d(a * b, window, 1) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())


def high_frequency(picture: Image.Image) -> float:
    """Mean absolute 4-neighbour Laplacian of the luminance, in 8-bit levels."""
    luma = torch.frombuffer(bytearray(picture.convert("L").tobytes()), dtype=torch.uint8)
    luma = luma.float().view(1, 1, picture.height, picture.width)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return float(F.conv2d(luma, kernel).abs().mean())


def luma_ssim(result: Image.Image, content: Image.Image, side: int = SSIM_SIDE) -> float:
    """SSIM of the luminance of `result` and `content` at `side` px on the long side.

    Plain SSIM, brightness term included: a style that darkens the whole picture (the Hubble field)
    lowers it even where the subject's outline stays, so read it together with the sheets.
    """
    from nstbot.engine.transfer import fit_size, image_to_tensor

    size = fit_size(result.width, result.height, side)
    a, b = (
        image_to_tensor(p.convert("L").convert("RGB").resize(size, Image.Resampling.LANCZOS))[:, :1]
        for p in (result, content)
    )
    return ssim(a, b)


class Meter:
    """Content and style figures of a result, measured with the engine's own network."""

    def __init__(self, engine: Any) -> None:
        from nstbot.params import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS

        self.content_layers, self.style_layers = DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS
        self.engine = engine
        self.extractor = engine.extractor((*self.content_layers, *self.style_layers))

    @torch.no_grad()
    def _feats(self, picture: Image.Image, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        from nstbot.engine.transfer import image_to_tensor

        if picture.size != size:
            picture = picture.resize(size, Image.Resampling.LANCZOS)
        return self.extractor(image_to_tensor(picture).to(self.engine.torch_device))

    def figures(
        self, result: Image.Image, content: Image.Image, style: Image.Image
    ) -> tuple[float, float]:
        """(relative content loss, style loss at the end over the content photo's)."""
        from nstbot.engine.losses import ContentLoss, StyleLoss, gram_matrix
        from nstbot.engine.transfer import fit_size

        out, base = self._feats(result, result.size), self._feats(content, result.size)
        targets = self._feats(style, fit_size(style.width, style.height, max(result.size)))
        content_loss = sum(ContentLoss(base[n])(out[n]) for n in self.content_layers)
        losses = [StyleLoss(gram_matrix(targets[n])) for n in self.style_layers]
        end = sum(loss(out[n]) for loss, n in zip(losses, self.style_layers, strict=True))
        start = sum(loss(base[n]) for loss, n in zip(losses, self.style_layers, strict=True))
        return float(content_loss), float(end / start)


def contact_sheet(
    pair: str, content: Image.Image, style: Image.Image, runs: list[Run], note: str
) -> Image.Image:
    """Content, style and each run side by side, labelled with their figures."""
    font = ImageFont.load_default(size=13)
    tiles = [("content", "", content), ("style", "", style)]
    tiles += [
        (
            f"{r.column} (w {r.style_weight:g})",
            f"c {r.content:.2f} s {r.style:.2f} ssim {r.ssim:.2f} hf {r.hf:.1f}",
            r.image,
        )
        for r in runs
    ]
    width = sum(max(1, round(TILE * p.width / p.height)) for *_, p in tiles) + 8 * len(tiles)
    sheet = Image.new("RGB", (width + 8, TILE + 58), "white")
    draw = ImageDraw.Draw(sheet)
    x = 8
    for title, figures, picture in tiles:
        thumb = picture.resize(
            (max(1, round(TILE * picture.width / picture.height)), TILE),
            Image.Resampling.LANCZOS,
        )
        sheet.paste(thumb, (x, 20))
        draw.text((x, 3), title, fill="black", font=font)
        draw.text((x, TILE + 23), figures, fill="black", font=font)
        x += thumb.width + 8
    draw.text((8, TILE + 40), f"{pair}: {note}", fill="gray", font=font)
    return sheet


def load(name: str) -> Image.Image:
    """A benchmark image by file name, as RGB."""
    with Image.open(IMAGES / name) as picture:
        return picture.convert("RGB")


def parse_set(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs (values as JSON where they parse, else strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    parser.add_argument("--weights", default=str(STANDIN), help="weights file (default: stand-in)")
    parser.add_argument("--model", default="vgg16", choices=["vgg19", "vgg16"])
    parser.add_argument("--pairs", nargs="+", default=list(DEFAULT_PAIRS), help="names or 'all'")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 192])
    parser.add_argument("--steps", type=int, default=60, help="(default: the fast preset's 60)")
    parser.add_argument("--scales", type=int, default=1)
    parser.add_argument("--strengths", nargs="+", default=["low", "medium", "high"])
    parser.add_argument("--style-weights", type=float, nargs="+", help="columns by explicit weight")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="param overrides")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "quality")
    args = parser.parse_args(argv)
    pairs = list(PAIRS) if args.pairs == ["all"] else args.pairs
    unknown = [p for p in pairs if p not in PAIRS]
    if unknown:
        parser.error(f"unknown pair {unknown[0]!r}; known: {', '.join(PAIRS)}")
    if args.weights != "random" and not Path(args.weights).is_file():
        print(
            f"quality: no weights at {args.weights}; build the stand-in with "
            "`python -m benchmarks.standin` or pass --weights",
            file=sys.stderr,
        )
        return 1

    torch.set_num_threads(args.threads)
    from nstbot.engine.transfer import StyleTransfer, fit_size
    from nstbot.params import STRENGTH_STYLE_WEIGHTS, TransferParams

    engine = StyleTransfer(
        device=args.device, weights=args.weights, model=args.model, allow_download=False,
        progress=False,
    )  # fmt: skip
    meter = Meter(engine)
    overrides = parse_set(args.set)
    columns: list[tuple[str, dict[str, Any]]]
    if args.style_weights:
        columns = [(f"{w:g}", {"style_weight": w}) for w in args.style_weights]
    else:
        columns = [(s, {"strength": s}) for s in args.strengths]
    note = (
        f"{engine.model}, {Path(args.weights).name}, {args.steps} steps, {args.scales} scale(s)"
        + "".join(f", {k}={v}" for k, v in overrides.items())
    )
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"# {note}")
    print(f"{'pair':<18} {'size':>4} {'column':<8} {'weight':>6} {'content':>7} {'style':>6} "
          f"{'ssim':>5} {'hf':>5} {'s':>6}")  # fmt: skip
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        content, style = (load(name) for name in PAIRS[pair])
        for size in args.sizes:
            photo = content.resize(
                fit_size(content.width, content.height, size), Image.Resampling.LANCZOS
            )
            print(f"{pair:<18} {size:>4} {'photo':<8} {'':>6} {'':>7} {'':>6} {'':>5} "
                  f"{high_frequency(photo):>5.1f}")  # fmt: skip
            runs: list[Run] = []
            for column, change in columns:
                params = TransferParams(
                    size=size, steps=args.steps, scales=args.scales, min_size=min(128, size),
                    seed=0, **{**overrides, **change},
                )  # fmt: skip
                start = time.perf_counter()
                result = engine.stylize(content, [style], params).image
                seconds = time.perf_counter() - start
                c_loss, s_ratio = meter.figures(result, content, style)
                weight = params.style_weight
                if weight is None:
                    weight = STRENGTH_STYLE_WEIGHTS[params.strength]
                run = Run(pair, size, column, weight, c_loss, s_ratio, luma_ssim(result, content),
                          high_frequency(result), seconds, result)  # fmt: skip
                runs.append(run)
                rows.append(run.row())
                print(f"{pair:<18} {size:>4} {column:<8} {weight:>6g} {c_loss:>7.3f} "
                      f"{s_ratio:>6.3f} {run.ssim:>5.2f} {run.hf:>5.1f} {seconds:>6.1f}",
                      flush=True)  # fmt: skip
            if size == max(args.sizes):
                sheet = contact_sheet(pair, content, style, runs, note)
                sheet.save(args.out / f"{pair}.png")
    (args.out / "figures.json").write_text(json.dumps({"note": note, "runs": rows}, indent=1))
    print(f"contact sheets and figures.json in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
