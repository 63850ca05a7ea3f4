"""Choosing the torch device and its performance switches."""

from __future__ import annotations

import torch

from nstbot.engine.errors import DeviceError

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a device name (auto, cpu, cuda, cuda:N, mps) into an available torch.device."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name} was asked for, but CUDA is not available here")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps_available():
        raise DeviceError("device mps was asked for, but MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for a precision setting, or None for plain fp32."""
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if device.type != "cuda":
        # Reduced precision on CPU is slower and less accurate than fp32; refuse loudly.
        raise DeviceError(f"precision {precision} needs a CUDA device (got {device})")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise DeviceError("this GPU does not support bf16; use fp16 or fp32")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def prepare_device(device: torch.device) -> None:
    """Turn on the per-device speed switches that never change results' meaning."""
    if device.type == "cuda":
        # cudnn.benchmark stays off: it autotunes every new input shape (2-7 s each on an H200),
        # and every job and every scale brings new shapes, so it costs more than it saves.
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is a device out-of-memory error."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())
