"""A throwaway redis-server on 127.0.0.1 for tests and benchmarks: free port, temp dir, no disk."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

REDIS_BINARY = "redis-server"


class RedisServer(NamedTuple):
    """A running server: its URL, and its CA file when it speaks TLS."""

    url: str
    ca_certs: str | None = None


def redis_available() -> bool:
    """Whether the redis-server binary is on PATH."""
    return shutil.which(REDIS_BINARY) is not None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_certificates(folder: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 in `folder` (openssl); returns the CA file."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    key = ["-nodes", "-newkey", "rsa:2048"]
    run("req", "-x509", *key, "-days", "2", "-subj", "/CN=nstbot-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", *key, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "s.csr")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "s.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return folder / "ca.crt"


@contextlib.contextmanager
def redis_server(
    timeout: float = 10.0, *, password: str | None = None, tls: bool = False
) -> Iterator[RedisServer]:
    """Run redis-server until the block ends; yields its URL (redis://127.0.0.1:PORT/0).

    With `tls`, it listens for TLS only, the URL is rediss:// and `ca_certs` names the CA file.
    """
    binary = shutil.which(REDIS_BINARY)
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="nstbot-redis-") as folder:
        port = free_port()
        args = [
            binary, "--bind", "127.0.0.1", "--dir", folder,
            "--save", "", "--appendonly", "no", "--protected-mode", "yes",
            "--loglevel", "warning", "--logfile", str(Path(folder) / "redis.log"),
        ]  # fmt: skip
        if password:
            args += ["--requirepass", password]
        if tls:
            ca = make_certificates(Path(folder))
            args += ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no",
                     "--tls-cert-file", str(ca.with_name("server.crt")),
                     "--tls-key-file", str(ca.with_name("server.key")),
                     "--tls-ca-cert-file", str(ca)]  # fmt: skip
        else:
            args += ["--port", str(port)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for(port, proc, timeout, Path(folder) / "redis.log", tls=tls)
            auth = f":{password}@" if password else ""
            scheme = "rediss" if tls else "redis"
            ca_certs = str(Path(folder) / "ca.crt") if tls else None
            yield RedisServer(f"{scheme}://{auth}127.0.0.1:{port}/0", ca_certs)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _wait_for(
    port: int, proc: subprocess.Popen[bytes], timeout: float, logfile: Path, *, tls: bool
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = logfile.read_text() if logfile.exists() else ""
            raise RuntimeError(f"redis-server exited with {proc.returncode}: {text[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
            if tls:
                return  # accepting connections; the TLS handshake is the client's business
            s.sendall(b"PING\r\n")
            if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout:g} s")
