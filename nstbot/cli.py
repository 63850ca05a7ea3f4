"""Command line: `nstbot run | stylize | styles | weights | worker | sync | check`.

Exit codes: 0 success, 1 unexpected failure, 2 bad arguments or option values, 3 an input file is
missing or not a usable image, 4 the VGG19 weights are missing or corrupt, 5 the device cannot be
used (or ran out of memory), 6 Discord cannot be reached (network, DNS, proxy), 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nstbot import __version__, cli_styles
from nstbot.config import Config, ConfigError, Precision, load_config
from nstbot.logs import setup_logging
from nstbot.params import Init, Model, Optimizer, ParamsError, Strength, TransferParams

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_WEIGHTS = 4
EXIT_DEVICE = 5
EXIT_NETWORK = 6
EXIT_INTERRUPTED = 130

log = logging.getLogger("nstbot")


class CliError(Exception):
    """A failure to report in one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="nstbot", description="A self-hosted Discord bot for neural style transfer."
    )
    parser.add_argument("--version", action="version", version=f"nstbot {__version__}")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="TOML config file (default: $NSTBOT_CONFIG, else ./config.toml when present)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the Discord bot (the same as `python bot.py`)")
    run.set_defaults(handler=cmd_run)

    _add_stylize_parser(sub)
    cli_styles.add_styles_parser(sub, handler=cmd_styles)

    weights = sub.add_parser("weights", help="download, locate or verify the VGG weights")
    wsub = weights.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    download = wsub.add_parser("download", help="download the weights (hash-checked)")
    download.add_argument("--url", help="download from this URL instead of torchvision's")
    download.add_argument("--dir", type=Path, help="store here instead of the torch hub cache")
    download.add_argument(
        "--skip",
        action="store_true",
        default=_env_flag("NSTBOT_SKIP_WEIGHTS"),
        help="do nothing (for offline or CPU-only image builds; also $NSTBOT_SKIP_WEIGHTS=1)",
    )
    download.add_argument(
        "--features-only",
        action="store_true",
        help="delete the full 548 MB file once the 80 MB features-only copy is written",
    )
    download.set_defaults(handler=cmd_weights_download)
    where = wsub.add_parser("path", help="print where the weights are looked for and found")
    where.set_defaults(handler=cmd_weights_path)
    verify = wsub.add_parser("verify", help="check the weights' hash, keys and shapes")
    verify.add_argument("path", nargs="?", type=Path, help="file to check (default: the one found)")
    verify.set_defaults(handler=cmd_weights_verify)
    for action in (download, where, verify):
        action.add_argument(
            "--model", choices=typing.get_args(Model), help="which network (default: engine.model)"
        )

    worker = sub.add_parser("worker", help="run a Celery GPU worker (executor.backend = celery)")
    worker.add_argument("--device", help="device for this worker (default: engine.device)")
    worker.set_defaults(handler=cmd_worker)

    sync = sub.add_parser("sync", help="register the slash commands with Discord")
    sync.add_argument("--guild", type=int, help="sync to one server only (instant)")
    sync.set_defaults(handler=cmd_sync)

    check = sub.add_parser("check", help="validate config, weights, device and the token")
    check.add_argument("--offline", action="store_true", help="skip the online token check")
    check.set_defaults(handler=cmd_check)
    return parser


def _add_stylize_parser(sub: Any) -> None:
    defaults = TransferParams()
    p = sub.add_parser(
        "stylize",
        help="stylize one image on this machine",
        description="Paint CONTENT in the style of one or more STYLE images or built-in styles.",
    )
    p.add_argument("content", type=Path, help="the photo to repaint")
    p.add_argument("styles", type=Path, nargs="*", metavar="style", help="one or more artworks")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="output image (.png/.jpg/.webp)"
    )
    p.add_argument(
        "--timelapse",
        type=Path,
        metavar="OUT",
        help="also write the painting from photo to result as an animation (.webp or .gif)",
    )
    # Parameter defaults are None here so that TransferParams stays the one place they live.
    g = p.add_argument_group("result")
    g.add_argument("--size", type=int, help=f"longest side in pixels (default {defaults.size})")
    g.add_argument("--steps", type=int, help=f"optimizer steps in all (default {defaults.steps})")
    g.add_argument(
        "--scales", type=int, help=f"number of scales, 1 = single (default {defaults.scales})"
    )
    g.add_argument("--min-size", type=int, help=f"smallest scale (default {defaults.min_size})")
    g.add_argument("--seed", type=int, help="random seed (CPU runs repeat bit for bit)")
    g = p.add_argument_group("style")
    cli_styles.add_style_preset_option(g)
    g.add_argument(
        "--strength",
        choices=typing.get_args(Strength),
        help=f"style weight preset (default {defaults.strength})",
    )
    g.add_argument(
        "--style-weight", type=float, help="explicit style weight (overrides --strength)"
    )
    g.add_argument("--content-weight", type=float, help=f"(default {defaults.content_weight})")
    g.add_argument(
        "--tv-weight", type=float, help=f"total variation weight (default {defaults.tv_weight})"
    )
    g.add_argument(
        "--blend",
        type=float,
        nargs="+",
        metavar="W",
        dest="style_blend",
        help="one weight per style image",
    )
    g.add_argument(
        "--style-scale", type=float, help="style size relative to the output (default 1)"
    )
    g.add_argument(
        "--preserve-colors", action="store_true", default=None, help="keep the content's colours"
    )
    g.add_argument("--content-layers", nargs="+", metavar="LAYER", help="e.g. relu4_2")
    g.add_argument("--style-layers", nargs="+", metavar="LAYER", help="e.g. relu1_1 relu2_1 ...")
    g.add_argument("--style-layer-weights", type=float, nargs="+", metavar="W")
    g = p.add_argument_group("optimization")
    g.add_argument(
        "--optimizer", choices=typing.get_args(Optimizer), help=f"(default {defaults.optimizer})"
    )
    g.add_argument("--lr", type=float, dest="learning_rate", help="Adam's step size")
    g.add_argument(
        "--average",
        type=float,
        metavar="DECAY",
        help=f"moving average of the iterates as the output, 0 = off (default {defaults.average})",
    )
    g.add_argument("--init", choices=typing.get_args(Init), help=f"(default {defaults.init})")
    g.add_argument("--init-image", type=Path, help="start from this image (implies --init image)")
    g = p.add_argument_group("machine")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: engine.device)")
    g.add_argument(
        "--precision", choices=typing.get_args(Precision), help="(CUDA only for bf16/fp16)"
    )
    g.add_argument(
        "--weights", help="auto, random (tests only) or a path (default: engine.weights)"
    )
    g.add_argument(
        "--model", choices=typing.get_args(Model), help="which network (default: engine.model)"
    )
    g.add_argument("--no-download", action="store_true", help="never download missing weights")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_stylize)


PARAM_OPTIONS = (
    "size", "steps", "scales", "min_size", "seed", "strength", "style_weight", "content_weight",
    "tv_weight", "style_scale", "preserve_colors", "optimizer", "learning_rate", "init",
    "content_layers", "style_layers", "style_layer_weights", "style_blend", "average",
)  # fmt: skip
# The flag of each TransferParams field where it is not --field-with-dashes.
FLAGS = {"style_blend": "--blend", "learning_rate": "--lr"}
DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?", re.IGNORECASE)
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def flag_for(field: str) -> str:
    """The stylize option that sets a TransferParams field."""
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def params_from_args(args: argparse.Namespace) -> TransferParams:
    """TransferParams from the options actually given (ParamsError on bad values)."""
    values: dict[str, Any] = {
        name: getattr(args, name) for name in PARAM_OPTIONS if getattr(args, name) is not None
    }
    if args.init_image is not None:
        values["init"] = "image"
    return TransferParams.from_dict(values)


def check_stylize_options(args: argparse.Namespace, *, model: str = "vgg19") -> TransferParams:
    """The parameters, once every option and combination that needs nothing loaded is checked."""
    if args.init == "image" and args.init_image is None:
        raise CliError("bad option: --init image needs --init-image FILE", EXIT_USAGE)
    if args.init_image is not None and args.init not in (None, "image"):
        raise CliError(
            f"bad option: --init-image starts from an image, --init {args.init} does not: "
            "give one of them",
            EXIT_USAGE,
        )
    if args.device is not None and not DEVICE_NAME.fullmatch(args.device.strip()):
        raise CliError(
            f"bad option: --device {args.device}: use auto, cpu, cuda, cuda:N or mps", EXIT_USAGE
        )
    if args.output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise CliError(
            f"bad option: -o {args.output}: the output must end in .png, .jpg, .jpeg or .webp",
            EXIT_USAGE,
        )
    if args.timelapse is not None:
        from nstbot.cli_timelapse import timelapse_format

        try:
            timelapse_format(args.timelapse)
        except ValueError as exc:
            raise CliError(f"bad option: {exc}", EXIT_USAGE) from None
    try:
        params = params_from_args(args)
        params.normalized_blend(len(style_inputs(args)))
        params.check_layers_for(model)
    except ParamsError as exc:
        raise _option_error(exc) from None
    return params


def style_inputs(args: argparse.Namespace) -> list[Path]:
    """The style files of a stylize run: STYLE files as given, then each --style-preset's."""
    from nstbot.styles import StyleRefused

    try:
        return cli_styles.style_files(args.styles, args.style_presets)
    except StyleRefused as exc:
        raise CliError(f"bad option: {exc}", EXIT_USAGE) from None


def _option_error(exc: ParamsError) -> CliError:
    where = f"{flag_for(exc.field)} {exc.problem}" if exc.field else str(exc)
    return CliError(f"bad option: {where}", EXIT_USAGE)


def cmd_stylize(args: argparse.Namespace, config: Config) -> int:
    """Run one stylization and write the result."""
    from nstbot import images

    params = check_stylize_options(args, model=args.model or config.engine.model)
    limits = images.ImageLimits.from_config(config.images)
    content = _read_image(args.content, limits, params.size)
    styles = [_read_image(path, limits, None) for path in style_inputs(args)]
    init = _read_image(args.init_image, limits, None) if args.init_image else None
    if args.weights:
        _check_weights_file(args.weights, "--weights")
    else:
        _check_weights_file(config.engine.weights, "engine.weights")
    engine = _make_engine(args, config)
    frames = None
    if args.timelapse is not None:
        from nstbot.cli_timelapse import recorder_for

        frames = recorder_for(params)
    result = _run_with_progress(engine, content, styles, init, params, args.quiet, frames)
    _save(result.image, content.alpha, args.output, params)
    seconds = result.stats["seconds"]
    random_note = ", RANDOM WEIGHTS" if result.stats["weights"].startswith("random") else ""
    print(
        f"wrote {args.output} ({result.image.width}x{result.image.height}, "
        f"{seconds:.1f} s{random_note})"
    )
    if frames is not None:
        from nstbot.cli_timelapse import write_timelapse

        try:
            print(write_timelapse(frames.frames, args.timelapse))
        except OSError as exc:
            raise CliError(f"{args.timelapse}: cannot write ({exc})", EXIT_FAILURE) from None
    return 0


def cmd_styles(args: argparse.Namespace, config: Config) -> int:
    """List the built-in styles (`--sheet` writes their contact sheet)."""
    from nstbot.styles import StyleRefused

    try:
        cli_styles.check_sheet_path(args.sheet)
    except StyleRefused as exc:
        raise CliError(f"bad option: {exc}", EXIT_USAGE) from None
    try:
        cli_styles.show_builtins(args.sheet)
    except StyleRefused as exc:
        raise CliError(str(exc), EXIT_FAILURE) from None
    return 0


def _read_image(path: Path, limits: Any, working_size: int | None) -> Any:
    from nstbot import images

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file", EXIT_INPUT) from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read ({exc.strerror})", EXIT_INPUT) from None
    try:
        decoded = images.decode(data, limits=limits, working_size=working_size)
    except images.ImageRejected as exc:
        raise CliError(f"{path} {exc.plain}", EXIT_INPUT) from None
    for note in decoded.notes:
        print(f"note: {path}: {note}", file=sys.stderr)
    return decoded


def _check_weights_file(setting: str, where: str) -> None:
    """Refuse a weights path that is missing or plainly not a PyTorch file, before loading torch."""
    from nstbot import images

    if setting in ("auto", "random"):
        return
    path = Path(setting)
    try:
        with path.open("rb") as file:
            head = file.read(4096)
    except FileNotFoundError:
        raise CliError(f"{where} {path}: no such file", EXIT_WEIGHTS) from None
    except OSError as exc:
        raise CliError(f"{where} {path}: cannot read ({exc.strerror})", EXIT_WEIGHTS) from None
    # torch.save writes a ZIP archive; files from before PyTorch 1.6 are a bare pickle.
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        raise CliError(
            f"{where} {path} is {images.describe_bytes(head)}, not a PyTorch weights file: give "
            "the VGG19 .pth file (`nstbot weights download` fetches it) or leave it out",
            EXIT_WEIGHTS,
        )


def _make_engine(args: argparse.Namespace, config: Config) -> Any:
    from nstbot.engine.errors import DeviceError, WeightsError
    from nstbot.engine.transfer import StyleTransfer

    try:
        return StyleTransfer(
            device=args.device or config.engine.device,
            weights=args.weights or config.engine.weights,
            model=args.model or config.engine.model,
            precision=args.precision or config.engine.precision,
            allow_download=config.engine.allow_download and not args.no_download,
            cache_bytes=config.engine.style_cache_mb << 20,
        )
    except WeightsError as exc:
        raise CliError(str(exc), EXIT_WEIGHTS) from None
    except DeviceError as exc:
        raise CliError(str(exc), EXIT_DEVICE) from None


def _run_with_progress(
    engine: Any,
    content: Any,
    styles: list[Any],
    init: Any,
    params: TransferParams,
    quiet: bool,
    frames: Any = None,
) -> Any:
    from tqdm import tqdm

    from nstbot.engine.errors import OutOfMemoryError
    from nstbot.engine.transfer import StepInfo

    with tqdm(total=params.steps, unit="step", disable=quiet, dynamic_ncols=True) as bar:

        def on_step(info: StepInfo) -> None:
            # Reading the loss waits for the GPU, so only every tenth step (and the last).
            if info.step % 10 == 0 or info.step == info.total:
                bar.set_postfix(scale=f"{info.scale + 1}/{info.scales}", loss=f"{info.loss:.4g}")
            bar.update(1)

        try:
            return engine.stylize(
                content.image,
                [s.image for s in styles],
                params,
                on_step=on_step,
                init_image=init.image if init else None,
                frames=frames,
            )
        except OutOfMemoryError as exc:
            raise CliError(str(exc), EXIT_DEVICE) from None
        except ParamsError as exc:  # judged against the content image's shape
            raise _option_error(exc) from None


def _save(image: Any, alpha: Any, output: Path, params: TransferParams) -> None:
    from PIL import PngImagePlugin

    if alpha is not None and output.suffix.lower() in (".png", ".webp"):
        image = image.copy()
        image.putalpha(alpha.resize(image.size))
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        if output.suffix.lower() == ".png":
            info = PngImagePlugin.PngInfo()
            info.add_text("nstbot:params", json.dumps(params.to_dict(), sort_keys=True))
            info.add_text("Software", f"nstbot {__version__}")
            image.save(output, pnginfo=info)
        else:
            image.convert("RGB" if output.suffix.lower() != ".webp" else image.mode).save(
                output, quality=95
            )
    except OSError as exc:
        raise CliError(f"{output}: cannot write ({exc})", EXIT_FAILURE) from None


def cmd_weights_download(args: argparse.Namespace, config: Config) -> int:
    """Download the weights and write the features-only copy."""
    if args.skip:
        print("skipping the VGG19 weights download (--skip / NSTBOT_SKIP_WEIGHTS)")
        return 0
    from nstbot.engine.errors import WeightsError
    from nstbot.engine.weights import download_weights

    model = args.model or config.engine.model
    try:
        path = download_weights(
            url=args.url, model=model, dest_dir=args.dir, keep_full=not args.features_only
        )
    except WeightsError as exc:
        raise CliError(str(exc), EXIT_WEIGHTS) from None
    print(f"{model.upper()} weights ready: {path}")
    return 0


def cmd_weights_path(args: argparse.Namespace, config: Config) -> int:
    """Say where the weights are looked for and which file would be used."""
    from nstbot.engine.weights import find_weights, hub_checkpoint_dir

    configured = None if config.engine.weights in ("auto", "random") else config.engine.weights
    if configured:
        print(f"configured: {configured}")
    print(f"hub cache:  {hub_checkpoint_dir()}")
    found = find_weights(configured, model=args.model or config.engine.model)
    if found is None:
        print("found:      none (run `nstbot weights download`)")
        return EXIT_WEIGHTS
    print(f"found:      {found}")
    return 0


def cmd_weights_verify(args: argparse.Namespace, config: Config) -> int:
    """Check a weights file and say whether it is intact."""
    from nstbot.engine.weights import find_weights, verify_weights

    configured = None if config.engine.weights in ("auto", "random") else config.engine.weights
    model = args.model or config.engine.model
    path = args.path or find_weights(configured, model=model)
    if path is None:
        raise CliError(
            f"no {model.upper()} weights found: run `nstbot weights download`", EXIT_WEIGHTS
        )
    report = verify_weights(Path(path), model=model)
    print(f"{'ok' if report.ok else 'BAD'}: {report.path}: {report.detail}")
    return 0 if report.ok else EXIT_WEIGHTS


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    """Run the bot until stopped, retrying a start-up that cannot reach Discord."""
    from nstbot.bot.client import run_bot

    return run_with_retries(
        lambda: run_bot(config),
        api_base=config.bot.api_base,
        attempts=config.bot.connect_attempts,
        backoff_s=config.bot.connect_backoff_s,
    )


def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    """Register the application commands."""
    from nstbot.bot.client import sync_commands, unreachable_reason

    try:
        return sync_commands(config, args.guild)
    except Exception as exc:
        reason = unreachable_reason(exc)
        if reason is None:
            raise
        raise CliError(_unreachable_message(config.bot.api_base, reason), EXIT_NETWORK) from None


BACKOFF_CAP_S = 60.0


def run_with_retries(
    start: Callable[[], int],
    *,
    api_base: str,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Call `start`, again after backoff_s, 2 * backoff_s, ... while Discord cannot be reached."""
    from nstbot.bot.client import unreachable_reason

    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        try:
            return start()
        except Exception as exc:
            reason = unreachable_reason(exc)
            if reason is None:
                raise
            if attempt == attempts:
                message = _unreachable_message(api_base, reason)
                raise CliError(f"{message} (tried {attempts} times)", EXIT_NETWORK) from None
            delay = min(BACKOFF_CAP_S, backoff_s * 2 ** (attempt - 1))
            log.warning(
                "cannot reach Discord (%s); try %d of %d in %g s",
                reason,
                attempt + 1,
                attempts,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # the loop always returns or raises


def _unreachable_message(api_base: str, reason: str) -> str:
    return (
        f"cannot reach Discord at {api_base}: {reason}; check the network, DNS, any proxy or "
        "firewall, and bot.api_base"
    )


def cmd_worker(args: argparse.Namespace, config: Config) -> int:
    """Run a Celery worker for one device."""
    from nstbot.jobs.celery.worker import run_worker

    return int(run_worker(config, device=args.device))


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    """Validate the config, the weights, the device and (online) the token."""
    from nstbot.checks import run_checks

    return run_checks(config, online=not args.offline)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _config_path(arg: str | None) -> str | None:
    if arg:
        return arg
    if os.environ.get("NSTBOT_CONFIG"):
        return os.environ["NSTBOT_CONFIG"]
    return "config.toml" if Path("config.toml").is_file() else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nstbot` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(_config_path(args.config))
        logging_config = config.logging
        if args.command in ("stylize", "weights") and logging_config.level.upper() == "INFO":
            # One-shot commands print their own outcome; INFO lines would only repeat it.
            logging_config = dataclasses.replace(logging_config, level="WARNING")
        setup_logging(logging_config, force=False)
        return int(args.handler(args, config) or 0)
    except ConfigError as exc:
        print(f"nstbot: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"nstbot: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("nstbot: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
