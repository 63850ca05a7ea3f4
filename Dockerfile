# syntax=docker/dockerfile:1
#
# nstbot: the Discord bot and its GPU worker processes in one image.
#
#   docker build -t nstbot .                                    # VGG19 weights baked in
#   docker build --build-arg NSTBOT_SKIP_WEIGHTS=1 -t nstbot .  # offline or CPU-only build
#
# The base is PyTorch's own CUDA runtime image: it already holds a CUDA build of torch and
# torchvision with the CUDA and cuDNN libraries they link against (most of the image's size).
# Our other dependencies are small and pure Python. The one thing to get right is that pip must
# never replace that torch with PyPI's (another CUDA build, gigabytes more): see the runtime stage.
# torch 2.7.1 is inside pyproject's range (>=2.4,<3); CUDA 12.8 also runs Blackwell (RTX 50xx)
# cards and needs an NVIDIA driver >= 525 (minor-version compatibility), >= 570 for full support.
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime

# ---- build: our wheel, and the dependency list on its own --------------------------------------
FROM ${BASE_IMAGE} AS build
WORKDIR /build
# README.md* (a glob) because pyproject names README.md, and a missing one must not break the build.
COPY pyproject.toml README.md* ./
# Just the dependency list, so that the layer installing it is rebuilt only when it changes.
RUN python -c "import sys; assert sys.version_info >= (3, 11), 'nstbot needs Python 3.11+'" \
    && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(p['project']['dependencies']))" > requirements.txt
COPY nstbot ./nstbot
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /build/dist /build

# ---- weights: VGG19, downloaded once ----------------------------------------------------------
FROM ${BASE_IMAGE} AS weights
# 1 skips the download (the CLI reads NSTBOT_SKIP_WEIGHTS); the engine then fetches the weights
# on first use, or an operator puts them in $TORCH_HOME/hub/checkpoints (docs/operations.md).
ARG NSTBOT_SKIP_WEIGHTS=0
WORKDIR /src
# Only the modules `nstbot weights download` imports: a code change elsewhere keeps this layer,
# and the 548 MB download, cached. (tests/test_container.py checks this list is enough.)
COPY nstbot/__init__.py nstbot/cli.py nstbot/cli_styles.py nstbot/config.py nstbot/logs.py \
     nstbot/params.py ./nstbot/
COPY nstbot/engine ./nstbot/engine
ENV TORCH_HOME=/weights PYTHONPATH=/src
# --features-only keeps the 80 MB of convolutional weights the engine uses and drops the rest.
RUN mkdir -p /weights && python -m nstbot.cli weights download --features-only

# ---- runtime ------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="nstbot" \
      org.opencontainers.image.description="Self-hosted Discord bot for neural style transfer"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# NSTBOT_WEB_HOST: /healthz and /metrics must be reachable through a published port; the
# container's own network namespace (and compose publishing on 127.0.0.1) keeps them private.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TORCH_HOME=/opt/nstbot/torch \
    NSTBOT_DATA_DIR=/data \
    NSTBOT_WEB_HOST=0.0.0.0

# A fixed uid (10001) so that a bind-mounted data directory can be chowned to match.
RUN groupadd --gid 10001 nstbot \
    && useradd --uid 10001 --gid nstbot --no-log-init --create-home --shell /usr/sbin/nologin nstbot \
    && install -d -o nstbot -g nstbot /data "${TORCH_HOME}"

# Constrain torch and torchvision to exactly the versions the base image has installed, local
# label included (e.g. 2.7.1+cu128): pip can then only keep them, never "upgrade" to PyPI's build.
# The constraint file is made from the image itself, so a new BASE_IMAGE needs no edit here.
COPY --from=build /build/requirements.txt /tmp/requirements.txt
RUN pip list --format=freeze | grep -E '^(torch|torchvision)==' > /tmp/constraints.txt \
    && { [ "$(wc -l < /tmp/constraints.txt)" -eq 2 ] \
         || { echo "BASE_IMAGE must provide torch and torchvision" >&2; exit 1; }; } \
    && pip install --no-cache-dir --constraint /tmp/constraints.txt -r /tmp/requirements.txt \
    && pip list --format=freeze | grep -E '^(torch|torchvision)==' | diff /tmp/constraints.txt - \
    && rm /tmp/requirements.txt /tmp/constraints.txt

# The project itself, dependencies already in place (--no-deps: nothing else can change here).
RUN --mount=type=bind,from=build,source=/build/dist,target=/tmp/dist \
    pip install --no-cache-dir --no-deps /tmp/dist/nstbot-*.whl \
    && python -c "import nstbot.cli, nstbot.web, nstbot.logs, discord, prometheus_client"

# Owned by the runtime user: with the download skipped, the engine writes the weights here later.
COPY --from=weights --chown=10001:10001 /weights/ ${TORCH_HOME}/

# Numeric, so that Kubernetes' runAsNonRoot (and the host) can tell it is not root.
USER 10001:10001
# The data directory is the working directory, so a config.toml put there is read by default.
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8787

# Healthy means: Discord gateway connected and at least one worker alive (nstbot/web.py).
# Starting takes a while (workers import torch and load VGG19), hence the long start period.
# The port follows NSTBOT_WEB_PORT when an operator moves it; urlopen raises on a 503.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('NSTBOT_WEB_PORT', '8787') + '/healthz', timeout=8)"]

CMD ["nstbot", "run"]
