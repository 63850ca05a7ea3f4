"""Finding, downloading, verifying and loading the VGG19 or VGG16 ImageNet weights.

The weights are torchvision's `VGG19_Weights.IMAGENET1K_V1` (`vgg19-dcbb9e9d.pth`, 548 MB) or
`VGG16_Weights.IMAGENET1K_V1` (`vgg16-397923af.pth`, 528 MB). Only the convolutional `features` are
used, so after a download a features-only copy (about 80 MB / 59 MB) is written beside it, named
with its own hash prefix the way torchvision names files, and preferred on load.
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
from nstbot.params import MODEL_LAYERS

log = logging.getLogger(__name__)

RANDOM = "random"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth$")
_FIX_HINT = "run `nstbot weights download` (or set engine.weights to the file's path)"


@dataclass(frozen=True)
class ModelSpec:
    """One VGG variant: its layout, where torchvision publishes its weights, its layer names."""

    name: str
    cfg: tuple[int | str, ...]
    """Channels per conv, "M" for a 2x2 max pool (torchvision's configuration letters)."""
    url: str
    layers: tuple[str, ...]

    @property
    def label(self) -> str:
        """The name as people write it (VGG19)."""
        return self.name.upper()

    @property
    def filename(self) -> str:
        """torchvision's file name for the full weights."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def features_stem(self) -> str:
        """Name stem of the features-only copy."""
        return f"{self.name}-features"

    @property
    def n_tensors(self) -> int:
        """Weight and bias tensors in `features`."""
        return 2 * sum(1 for item in self.cfg if item != "M")


# The networks are built here rather than imported: importing torchvision costs each worker ~190 MB
# of memory, and a test checks these layouts against torchvision's own `vgg19()` / `vgg16()`.
MODELS: dict[str, ModelSpec] = {
    "vgg19": ModelSpec(
        name="vgg19",
        cfg=(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
             512, 512, 512, 512, "M"),  # configuration "E"
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        layers=MODEL_LAYERS["vgg19"],
    ),
    "vgg16": ModelSpec(
        name="vgg16",
        cfg=(64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
             512, 512, 512, "M"),  # configuration "D"
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        layers=MODEL_LAYERS["vgg16"],
    ),
}  # fmt: skip

VGG19_CFG = MODELS["vgg19"].cfg
WEIGHTS_URL = MODELS["vgg19"].url
WEIGHTS_FILENAME = MODELS["vgg19"].filename
FEATURES_STEM = MODELS["vgg19"].features_stem


def model_spec(model: str) -> ModelSpec:
    """The ModelSpec of `model` (vgg19 or vgg16), with a clear error for anything else."""
    try:
        return MODELS[model]
    except KeyError:
        raise WeightsError(
            f"unknown model {model!r}: engine.model must be one of {', '.join(MODELS)}"
        ) from None


@dataclass(frozen=True)
class WeightsReport:
    """What `verify_weights` found."""

    path: Path
    ok: bool
    detail: str


def hub_checkpoint_dir() -> Path:
    """torchvision's cache folder for downloaded weights ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def build_features(*, init: bool = True, model: str = "vgg19") -> nn.Sequential:
    """The model's `features` in torchvision's layout, with its random initialization if `init`."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in model_spec(model).cfg:
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


def find_weights(
    configured: str | os.PathLike[str] | None = None, *, model: str = "vgg19"
) -> Path | None:
    """The weights file to use: the configured path, else the hub cache (features copy first)."""
    spec = model_spec(model)
    if configured:
        path = Path(configured).expanduser()
        if path.is_dir():
            return _best_in_dir(path, spec)
        return path if path.is_file() else None
    return _best_in_dir(hub_checkpoint_dir(), spec)


def _best_in_dir(folder: Path, spec: ModelSpec) -> Path | None:
    copies = sorted(folder.glob(f"{spec.features_stem}-*.pth"))
    if copies:
        return copies[-1]
    full = folder / spec.filename
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


def load_features_state(
    path: Path, *, check_hash: bool = True, model: str = "vgg19"
) -> dict[str, torch.Tensor]:
    """Read the `features.*` tensors from a weights file, checking hash, keys and shapes."""
    spec = model_spec(model)
    label = spec.label
    if check_hash:
        prefix = expected_hash_prefix(path)
        if prefix is not None:
            digest = sha256_of(path)
            if not digest.startswith(prefix):
                raise WeightsError(
                    f"{label} weights at {path} are corrupt (SHA-256 {digest[:12]}… does not "
                    f"match {prefix}): delete the file and {_FIX_HINT}"
                )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{label} weights not found at {path}: {_FIX_HINT}") from None
    except Exception as exc:  # truncated zip, pickle errors, wrong format
        raise WeightsError(
            f"{label} weights at {path} cannot be read ({type(exc).__name__}): "
            f"delete the file and {_FIX_HINT}"
        ) from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path} is not a {label} state dict: {_FIX_HINT}")
    features = {
        k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
    }
    reference = build_features_shapes(model)
    # A file of the other model fails below; say which setting to check.
    other = " (is it another model's file? check engine.model)"
    missing = sorted(set(reference) - set(features), key=_key_order)
    if missing:
        raise WeightsError(
            f"{path} lacks {label} layer weights (first missing: features.{missing[0]}){other}: "
            f"{_FIX_HINT}"
        )
    for key, shape in reference.items():
        tensor = features[key]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            raise WeightsError(
                f"{path} has the wrong shape for features.{key} "
                f"({tuple(getattr(tensor, 'shape', ()))} instead of {shape}){other}: {_FIX_HINT}"
            )
    extra = sorted(set(features) - set(reference), key=_key_order)
    if extra:
        raise WeightsError(
            f"{path} has more layers than {label} (features.{extra[0]}){other}: {_FIX_HINT}"
        )
    return {key: features[key] for key in reference}


def build_features_shapes(model: str = "vgg19") -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the model's features, computed without allocating the network."""
    shapes: dict[str, tuple[int, ...]] = {}
    in_channels, index = 3, 0
    for item in model_spec(model).cfg:
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
    return (int(index), name) if index.isdigit() else (1 << 30, key)


def load_features(
    weights: str = "auto",
    *,
    model: str = "vgg19",
    allow_download: bool = True,
    url: str | None = None,
    progress: bool = True,
) -> tuple[nn.Sequential, str]:
    """The model's `features` with weights loaded, and a short description of where they came from.

    `weights` is "auto" (the hub cache, downloading when allowed), "random" (tests and benchmarks
    only; says so loudly), or a path to a weights file or a folder holding one.
    """
    spec = model_spec(model)
    if weights == RANDOM:
        warn_random(model)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)  # the same random network in every process, so runs repeat
        features = build_features(model=model)
        torch.random.set_rng_state(generator_state)
        return features, "random (NOT ImageNet: results are meaningless)"
    configured = None if weights in ("", "auto") else weights
    path = find_weights(configured, model=model)
    if path is None:
        if configured is not None:
            raise WeightsError(f"{spec.label} weights not found at {configured}: {_FIX_HINT}")
        if not allow_download:
            raise WeightsError(
                f"{spec.label} weights not found in {hub_checkpoint_dir()} and downloading is off "
                f"(engine.allow_download): {_FIX_HINT}"
            )
        path = download_weights(url=url, model=model, progress=progress)
    features = build_features(init=False, model=model)
    features.load_state_dict(load_features_state(path, model=model))
    log.info("loaded %s weights from %s", spec.label, path)
    return features, f"imagenet {model} ({path.name})"


def warn_random(model: str = "vgg19") -> None:
    """Say loudly, in the log (stderr by default), that the network has random weights."""
    log.warning(
        "%s has RANDOM weights (weights = random). This mode exists for tests and "
        "benchmarks; its pictures are not style transfer.",
        model.upper(),
    )


def download_weights(
    *,
    url: str | None = None,
    model: str = "vgg19",
    dest_dir: Path | None = None,
    progress: bool = True,
    keep_full: bool = True,
) -> Path:
    """Download the weights (hash-checked), write the features-only copy, return its path."""
    spec = model_spec(model)
    url = url or spec.url
    dest_dir = Path(dest_dir) if dest_dir is not None else hub_checkpoint_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    filename = url.rstrip("/").rsplit("/", 1)[-1]
    full_path = dest_dir / filename
    if not full_path.is_file():
        prefix = expected_hash_prefix(full_path)
        log.info("downloading %s weights from %s", spec.label, url)
        try:
            torch.hub.download_url_to_file(url, str(full_path), prefix, progress=progress)
        except RuntimeError as exc:  # torch.hub's hash mismatch
            raise WeightsError(f"download from {url} failed its hash check: {exc}") from None
        except OSError as exc:
            raise WeightsError(
                f"could not download the {spec.label} weights from {url} ({exc}). Where this "
                f"machine has no network, copy {spec.filename} into {dest_dir} by hand."
            ) from None
    copy = write_features_copy(full_path, dest_dir, model=model)
    if not keep_full:
        full_path.unlink()
    return copy


def write_features_copy(full_path: Path, dest_dir: Path, *, model: str = "vgg19") -> Path:
    """Save the `features.*` tensors of a checked weights file as `<model>-features-<sha>.pth`."""
    spec = model_spec(model)
    state = load_features_state(full_path, model=model)
    with tempfile.NamedTemporaryFile(dir=dest_dir, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        torch.save({f"features.{k}": v for k, v in state.items()}, tmp_path)
        target = dest_dir / f"{spec.features_stem}-{sha256_of(tmp_path)[:8]}.pth"
        for old in dest_dir.glob(f"{spec.features_stem}-*.pth"):
            if old != target:
                old.unlink()
        tmp_path.replace(target)
    finally:
        tmp_path.unlink(missing_ok=True)
    log.info("wrote features-only weights %s", target)
    return target


def verify_weights(path: Path, *, model: str = "vgg19") -> WeightsReport:
    """Check a weights file's hash (when its name carries one), keys and shapes."""
    spec = model_spec(model)
    try:
        load_features_state(path, model=model)
    except WeightsError as exc:
        return WeightsReport(path, False, str(exc))
    prefix = expected_hash_prefix(path)
    how = f"hash prefix {prefix} matches, " if prefix else "no hash in its name, "
    detail = f"{how}all {spec.n_tensors} {spec.label} feature tensors present"
    return WeightsReport(path, True, detail)
