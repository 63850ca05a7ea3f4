"""Attachment downloads: allowed hosts, byte cap, timeout, redaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from nstbot.bot.downloads import DownloadError, fetch, host_allowed, redact_url

CHUNK = 64 * 1024


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[str, dict[str, int]]]:
    sent = {"stream": 0}

    async def small(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1000)

    async def stream(request: web.Request) -> web.StreamResponse:
        # No Content-Length: the cap must be enforced while reading.
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            for _ in range(200):
                await resp.write(b"y" * CHUNK)
                sent["stream"] += CHUNK
                await asyncio.sleep(0.005)
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b"z" * 5000)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(body=b"late")

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    for path, handler in [
        ("/small", small),
        ("/stream", stream),
        ("/declared", declared),
        ("/slow", slow),
        ("/missing", missing),
    ]:
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", sent
    await runner.cleanup()


HOSTS = ("127.0.0.1",)


async def test_small_file_downloads(server: tuple[str, dict[str, int]]) -> None:
    base, _ = server
    async with aiohttp.ClientSession() as session:
        data = await fetch(
            session, base + "/small?hm=sig", max_bytes=2000, timeout_s=5, hosts=HOSTS
        )
    assert data == b"x" * 1000


async def test_stream_is_cut_at_the_cap(server: tuple[str, dict[str, int]]) -> None:
    base, sent = server
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DownloadError, match="larger than"):
            await fetch(session, base + "/stream", max_bytes=3 * CHUNK, timeout_s=5, hosts=HOSTS)
    await asyncio.sleep(0.1)
    assert sent["stream"] < 200 * CHUNK  # we stopped reading long before the end


async def test_declared_length_over_cap_is_refused(server: tuple[str, dict[str, int]]) -> None:
    base, _ = server
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DownloadError):
            await fetch(session, base + "/declared", max_bytes=4000, timeout_s=5, hosts=HOSTS)


async def test_timeout_and_http_errors(server: tuple[str, dict[str, int]]) -> None:
    base, _ = server
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DownloadError, match="too long"):
            await fetch(session, base + "/slow", max_bytes=100, timeout_s=0.2, hosts=HOSTS)
        with pytest.raises(DownloadError, match="did not hand over"):
            await fetch(session, base + "/missing", max_bytes=100, timeout_s=5, hosts=HOSTS)


async def test_other_hosts_are_never_contacted() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DownloadError, match="not a Discord attachment"):
            await fetch(
                session,
                "http://10.255.255.1/x.png",
                max_bytes=10,
                timeout_s=5,
                hosts=("cdn.discordapp.com",),
            )


def test_host_allowed_and_redaction() -> None:
    hosts = ("cdn.discordapp.com",)
    assert host_allowed("https://cdn.discordapp.com/attachments/1/2/a.png?ex=1", hosts)
    assert not host_allowed("https://cdn.discordapp.com.evil.example/a.png", hosts)
    assert not host_allowed("file:///etc/passwd", hosts)
    assert not host_allowed("https://user@evil.example/a.png", hosts)
    url = "https://cdn.discordapp.com/attachments/1/2/a.png?ex=1&is=2&hm=secret"
    assert redact_url(url) == "https://cdn.discordapp.com/attachments/1/2/a.png"
