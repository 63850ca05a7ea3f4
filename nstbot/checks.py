"""`nstbot check`: validate the config, the weights, the devices and (online) the token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nstbot.config import Config


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    warning: bool = False


def check_weights(config: Config) -> CheckResult:
    """The configured weights exist and are intact (random weights pass with a warning)."""
    from nstbot.engine.weights import find_weights, hub_checkpoint_dir, verify_weights

    setting = config.engine.weights
    if setting == "random":
        return CheckResult("weights", True, "RANDOM weights: for tests only", warning=True)
    found = find_weights(None if setting == "auto" else setting)
    if found is None:
        if setting == "auto" and config.engine.allow_download:
            return CheckResult(
                "weights",
                True,
                f"not in {hub_checkpoint_dir()} yet; the first job downloads them "
                "(or run `nstbot weights download` now)",
                warning=True,
            )
        where = setting if setting != "auto" else str(hub_checkpoint_dir())
        return CheckResult("weights", False, f"not found in {where}: run `nstbot weights download`")
    report = verify_weights(found)
    return CheckResult("weights", report.ok, f"{found}: {report.detail}")


def check_devices(config: Config) -> list[CheckResult]:
    """Every configured worker device exists, with the configured precision."""
    from nstbot.engine.device import autocast_dtype, resolve_device
    from nstbot.engine.errors import DeviceError

    results = []
    for name in config.executor.devices or (config.engine.device,):
        wanted = config.engine.device if name == "auto" else name
        try:
            device = resolve_device(wanted)
            autocast_dtype(device, config.engine.precision)
        except DeviceError as exc:
            results.append(CheckResult(f"device {name}", False, str(exc)))
            continue
        note = f" ({expected_time(config, 'gpu' if device.type == 'cuda' else 'cpu')})"
        results.append(
            CheckResult(f"device {name}", True, f"{device}, {config.engine.precision}{note}")
        )
    return results


def expected_time(config: Config, hardware: str) -> str:
    """What a default request costs on this kind of device, from the quality presets."""
    from nstbot.bot.presets import EXPECT_BASIS, preset_summary

    quality = config.bot.default_quality
    return f"default quality {preset_summary(hardware, quality)}, {EXPECT_BASIS[hardware]}"


def check_token(config: Config) -> CheckResult:
    """The bot token is present and Discord accepts it."""
    from nstbot.bot.client import check_token as online_check

    try:
        return CheckResult("token", True, online_check(config))
    except Exception as exc:  # the message is for the operator; never includes the token
        return CheckResult("token", False, str(exc))


def run_checks(config: Config, *, online: bool = True, out: Callable[[str], None] = print) -> int:
    """Print one line per check; exit status 0 when nothing failed."""
    results = [CheckResult("config", True, "parsed"), check_weights(config), *check_devices(config)]
    if online:
        results.append(check_token(config))
    for r in results:
        mark = "ok  " if r.ok and not r.warning else ("warn" if r.ok else "FAIL")
        out(f"[{mark}] {r.name}: {r.detail}")
    return 0 if all(r.ok for r in results) else 1
