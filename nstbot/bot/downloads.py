"""Attachment downloads: only Discord's attachment hosts, with a timeout and a hard byte cap."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


class DownloadError(Exception):
    """A download failed; the message fits a user."""


def redact_url(url: str) -> str:
    """The URL without its query: attachment URLs carry a signature that must not be logged."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def host_allowed(url: str, hosts: tuple[str, ...] | list[str]) -> bool:
    """Whether the URL is http(s) on one of the allowed hosts."""
    parts = urlsplit(url)
    return parts.scheme in ("https", "http") and (parts.hostname or "") in hosts


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    hosts: tuple[str, ...] | list[str],
) -> bytes:
    """Download at most `max_bytes` from an allowed host; stop reading past the cap."""
    if not host_allowed(url, hosts):
        log.warning("refused to download from %s (not an attachment host)", redact_url(url))
        raise DownloadError("That file is not a Discord attachment.")
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, 10.0))
    try:
        async with session.get(url, timeout=timeout, allow_redirects=False) as resp:
            if resp.status != 200:
                log.warning("download of %s answered %s", redact_url(url), resp.status)
                raise DownloadError("Discord did not hand over the attachment; try again.")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise DownloadError(_too_big(max_bytes))
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(CHUNK):
                buf += chunk
                if len(buf) > max_bytes:
                    raise DownloadError(_too_big(max_bytes))
            return bytes(buf)
    except TimeoutError:
        log.warning("download of %s timed out after %.0fs", redact_url(url), timeout_s)
        raise DownloadError("Downloading the attachment took too long; try again.") from None
    except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
        log.warning("download of %s failed: %s", redact_url(url), type(exc).__name__)
        raise DownloadError("Downloading the attachment failed; try again.") from None


def _too_big(max_bytes: int) -> str:
    return f"That image is larger than {max_bytes / 1_000_000:.0f} MB; send a smaller one."
