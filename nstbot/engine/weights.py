"""Finding, downloading, verifying and loading the VGG19 ImageNet weights.

The weights are torchvision's `VGG19_Weights.IMAGENET1K_V1` (`vgg19-dcbb9e9d.pth`, 548 MB). Only the
convolutional `features` are used, so after a download a features-only copy (about 80 MB) is written
beside it, named with its own hash prefix the way torchvision names files, and preferred on load.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nstbot.engine.errors import WeightsError

log = logging.getLogger(__name__)

WEIGHTS_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
WEIGHTS_FILENAME = "vgg19-dcbb9e9d.pth"
FEATURES_STEM = "vgg19-features"
RANDOM = "random"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth$")
_FIX_HINT = "run `nstbot weights download` (or set engine.weights to the file's path)"


@dataclass(frozen=True)
class WeightsReport:
    """What `verify_weights` found."""

    path: Path
    ok: bool
    detail: str


def hub_checkpoint_dir() -> Path:
    """torchvision's cache folder for downloaded weights ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


# torchvision's configuration "E" (VGG19): channels per conv, "M" for a 2x2 max pool. The network is
# built here rather than imported: importing torchvision costs each worker ~190 MB of memory, and a
# test checks this layout against torchvision's own `vgg19().features`.
VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
    512, 512, 512, 512, "M",
)  # fmt: skip


def build_features(*, init: bool = True) -> nn.Sequential:
    """VGG19's `features` in torchvision's layout, with its random initialization if `init`."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in VGG19_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1)
        if init:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU(inplace=True)]
        in_channels = int(item)
    return nn.Sequential(*layers)


def find_weights(configured: str | os.PathLike[str] | None = None) -> Path | None:
    """The weights file to use: the configured path, else the hub cache (features copy first)."""
    if configured:
        path = Path(configured).expanduser()
        if path.is_dir():
            return _best_in_dir(path)
        return path if path.is_file() else None
    return _best_in_dir(hub_checkpoint_dir())


def _best_in_dir(folder: Path) -> Path | None:
    copies = sorted(folder.glob(f"{FEATURES_STEM}-*.pth"))
    if copies:
        return copies[-1]
    full = folder / WEIGHTS_FILENAME
    return full if full.is_file() else None


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_hash_prefix(path: Path) -> str | None:
    """The hash prefix a torchvision-style file name carries (`name-<hex>.pth`), if any."""
    match = _HASH_IN_NAME.search(path.name)
    return match.group(1) if match else None


def load_features_state(path: Path, *, check_hash: bool = True) -> dict[str, torch.Tensor]:
    """Read the `features.*` tensors from a weights file, checking hash, keys and shapes."""
    if check_hash:
        prefix = expected_hash_prefix(path)
        if prefix is not None:
            digest = sha256_of(path)
            if not digest.startswith(prefix):
                raise WeightsError(
                    f"VGG19 weights at {path} are corrupt (SHA-256 {digest[:12]}… does not "
                    f"match {prefix}): delete the file and {_FIX_HINT}"
                )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"VGG19 weights not found at {path}: {_FIX_HINT}") from None
    except Exception as exc:  # truncated zip, pickle errors, wrong format
        raise WeightsError(
            f"VGG19 weights at {path} cannot be read ({type(exc).__name__}): "
            f"delete the file and {_FIX_HINT}"
        ) from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path} is not a VGG19 state dict: {_FIX_HINT}")
    features = {
        k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
    }
    reference = build_features_shapes()
    missing = sorted(set(reference) - set(features), key=_key_order)
    if missing:
        raise WeightsError(
            f"{path} lacks VGG19 layer weights (first missing: features.{missing[0]}): {_FIX_HINT}"
        )
    for key, shape in reference.items():
        tensor = features[key]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            raise WeightsError(
                f"{path} has the wrong shape for features.{key} "
                f"({tuple(getattr(tensor, 'shape', ()))} instead of {shape}): {_FIX_HINT}"
            )
    return {key: features[key] for key in reference}


def build_features_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter shapes of VGG19's features, computed without allocating the network."""
    shapes: dict[str, tuple[int, ...]] = {}
    in_channels, index = 3, 0
    for item in VGG19_CFG:
        if item == "M":
            index += 1
            continue
        shapes[f"{index}.weight"] = (int(item), in_channels, 3, 3)
        shapes[f"{index}.bias"] = (int(item),)
        in_channels = int(item)
        index += 2
    return shapes


def _key_order(key: str) -> tuple[int, str]:
    index, _, name = key.partition(".")
    return int(index), name


def load_vgg19_features(
    weights: str = "auto",
    *,
    allow_download: bool = True,
    url: str = WEIGHTS_URL,
    progress: bool = True,
) -> tuple[nn.Sequential, str]:
    """VGG19 `features` with weights loaded, and a short description of where they came from.

    `weights` is "auto" (the hub cache, downloading when allowed), "random" (tests and benchmarks
    only; says so loudly), or a path to a weights file or a folder holding one.
    """
    if weights == RANDOM:
        warn_random()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)  # the same random network in every process, so runs repeat
        features = build_features()
        torch.random.set_rng_state(generator_state)
        return features, "random (NOT ImageNet: results are meaningless)"
    configured = None if weights in ("", "auto") else weights
    path = find_weights(configured)
    if path is None:
        if configured is not None:
            raise WeightsError(f"VGG19 weights not found at {configured}: {_FIX_HINT}")
        if not allow_download:
            raise WeightsError(
                f"VGG19 weights not found in {hub_checkpoint_dir()} and downloading is off "
                f"(engine.allow_download): {_FIX_HINT}"
            )
        path = download_weights(url=url, progress=progress)
    features = build_features(init=False)
    features.load_state_dict(load_features_state(path))
    log.info("loaded VGG19 weights from %s", path)
    return features, f"imagenet ({path.name})"


def warn_random() -> None:
    """Say loudly, in the log (stderr by default), that the network has random weights."""
    log.warning(
        "VGG19 has RANDOM weights (weights = random). This mode exists for tests and "
        "benchmarks; its pictures are not style transfer."
    )


def download_weights(
    *,
    url: str = WEIGHTS_URL,
    dest_dir: Path | None = None,
    progress: bool = True,
    keep_full: bool = True,
) -> Path:
    """Download the weights (hash-checked), write the features-only copy, return its path."""
    dest_dir = Path(dest_dir) if dest_dir is not None else hub_checkpoint_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    filename = url.rstrip("/").rsplit("/", 1)[-1]
    full_path = dest_dir / filename
    if not full_path.is_file():
        prefix = expected_hash_prefix(full_path)
        log.info("downloading VGG19 weights from %s", url)
        try:
            torch.hub.download_url_to_file(url, str(full_path), prefix, progress=progress)
        except RuntimeError as exc:  # torch.hub's hash mismatch
            raise WeightsError(f"download from {url} failed its hash check: {exc}") from None
        except OSError as exc:
            raise WeightsError(
                f"could not download the VGG19 weights from {url} ({exc}). Where this machine "
                f"has no network, copy {WEIGHTS_FILENAME} into {dest_dir} by hand."
            ) from None
    copy = write_features_copy(full_path, dest_dir)
    if not keep_full:
        full_path.unlink()
    return copy


def write_features_copy(full_path: Path, dest_dir: Path) -> Path:
    """Save the `features.*` tensors of a checked weights file as `vgg19-features-<sha>.pth`."""
    state = load_features_state(full_path)
    with tempfile.NamedTemporaryFile(dir=dest_dir, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        torch.save({f"features.{k}": v for k, v in state.items()}, tmp_path)
        target = dest_dir / f"{FEATURES_STEM}-{sha256_of(tmp_path)[:8]}.pth"
        for old in dest_dir.glob(f"{FEATURES_STEM}-*.pth"):
            if old != target:
                old.unlink()
        tmp_path.replace(target)
    finally:
        tmp_path.unlink(missing_ok=True)
    log.info("wrote features-only weights %s", target)
    return target


def verify_weights(path: Path) -> WeightsReport:
    """Check a weights file's hash (when its name carries one), keys and shapes."""
    try:
        load_features_state(path)
    except WeightsError as exc:
        return WeightsReport(path, False, str(exc))
    prefix = expected_hash_prefix(path)
    how = f"hash prefix {prefix} matches, " if prefix else "no hash in its name, "
    return WeightsReport(path, True, f"{how}all 32 VGG19 feature tensors present")
