"""A fake Discord for end-to-end tests: REST routes, a gateway websocket and a CDN on 127.0.0.1.

It keeps just enough state (messages, interaction responses, DM channels) for a real discord.py
client to work against it, records every request, injects gateway events, and can be told to
answer particular routes with errors (429, 401/50027, 413, 403/50013...).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DISCORD_EPOCH_MS = 1_420_070_400_000
API = "/api/v10"
ALL_PERMISSIONS = str((1 << 50) - 1)
# VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | USE_APPLICATION_COMMANDS
MEMBER_PERMISSIONS = str((1 << 10) | (1 << 11) | (1 << 16) | (1 << 31))
MANAGE_MESSAGES = 1 << 13
SEND_MESSAGES = 1 << 11
ATTACH_FILES = 1 << 15


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    """Path without the /api/v10 prefix (CDN paths start with /cdn)."""
    query: dict[str, str]
    json: Any
    files: list[tuple[str, bytes]]
    """(filename, data) of every uploaded file."""
    at: float
    """time.perf_counter() on arrival."""
    status: int = 0
    response: Any = None
    """The JSON the fake answered with."""


@dataclass
class Rule:
    """Answer matching requests with an error instead of the normal response."""

    method: str
    pattern: re.Pattern[str]
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    times: int
    """How many matching requests get the error (then the route behaves normally)."""
    when: Callable[[Recorded], bool] | None = None
    """Extra condition on the request (its body, its files)."""
    hits: int = 0

    def matches(self, rec: Recorded) -> bool:
        """Whether this rule answers the request."""
        return (
            self.hits < self.times
            and self.method == rec.method
            and self.pattern.search(rec.path) is not None
            and (self.when is None or self.when(rec))
        )


@dataclass
class FakeDiscord:
    """The whole fake: start() it, point the bot at api_base, drive it with the helpers."""

    guild_id: int = 0
    channel_id: int = 0
    other_channel_id: int = 0
    bot_id: int = 0
    owner_id: int = 0
    requests: list[Recorded] = field(default_factory=list)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    files: dict[int, list[tuple[str, bytes]]] = field(default_factory=dict)
    """Message id → uploaded files, newest upload last."""
    originals: dict[str, int] = field(default_factory=dict)
    """Interaction token → id of its original response message."""
    identifies: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    bot_denied: dict[int, int] = field(default_factory=dict)
    """Channel id → permission bits the bot's member is denied there (a channel overwrite)."""

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self.guild_id = self.guild_id or self.snowflake()
        self.channel_id = self.channel_id or self.snowflake()
        self.other_channel_id = self.other_channel_id or self.snowflake()
        self.bot_id = self.bot_id or self.snowflake()
        self.owner_id = self.owner_id or self.snowflake()
        self.rules: list[Rule] = []
        self.cdn: dict[str, tuple[bytes, str]] = {}
        self.ws: web.WebSocketResponse | None = None
        self.seq = 0
        self.session_id = "fake-session"
        self.ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.app = web.Application(client_max_size=64 << 20)
        self.app.router.add_get("/gateway", self._gateway)
        self.app.router.add_route("*", "/cdn/{path:.*}", self._cdn)
        self.app.router.add_route("*", API + "/{path:.*}", self._rest)
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = [
            ("GET", re.compile(r"/users/@me"), self._me),
            ("GET", re.compile(r"/oauth2/applications/@me"), self._application),
            ("GET", re.compile(r"/gateway/bot"), self._gateway_bot),
            ("POST", re.compile(r"/interactions/(\d+)/([^/]+)/callback"), self._callback),
            ("PATCH", re.compile(r"/webhooks/(\d+)/([^/]+)/messages/([^/]+)"), self._wh_edit),
            ("GET", re.compile(r"/webhooks/(\d+)/([^/]+)/messages/([^/]+)"), self._wh_get),
            ("DELETE", re.compile(r"/webhooks/(\d+)/([^/]+)/messages/([^/]+)"), self._wh_delete),
            ("POST", re.compile(r"/webhooks/(\d+)/([^/]+)"), self._wh_followup),
            ("POST", re.compile(r"/channels/(\d+)/messages"), self._ch_create),
            ("PATCH", re.compile(r"/channels/(\d+)/messages/(\d+)"), self._ch_edit),
            ("GET", re.compile(r"/channels/(\d+)/messages/(\d+)"), self._ch_get),
            ("DELETE", re.compile(r"/channels/(\d+)/messages/(\d+)"), self._ch_delete),
            ("PUT", re.compile(r"/channels/(\d+)/messages/(\d+)/reactions/([^/]+)/@me"), _none),
            ("POST", re.compile(r"/users/@me/channels"), self._dm_open),
            ("GET", re.compile(r"/users/(\d+)"), self._user_get),
            ("PUT", re.compile(r"/applications/(\d+)(?:/guilds/\d+)?/commands"), self._commands),
            ("GET", re.compile(r"/applications/(\d+)(?:/guilds/\d+)?/commands"), self._no_commands),
        ]

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close the gateway and the server."""
        if self.ws is not None:
            await self.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """What the bot's `bot.api_base` must be."""
        return self.base + API

    @property
    def gateway_url(self) -> str:
        """The websocket URL /gateway/bot answers."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    # --- payload builders -----------------------------------------------------------------

    def snowflake(self) -> int:
        """A fresh id with a real timestamp (discord.py derives created_at from it)."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    @staticmethod
    def user(uid: int, name: str = "user", *, bot: bool = False) -> dict[str, Any]:
        """A user payload."""
        return {
            "id": str(uid),
            "username": name,
            "discriminator": "0",
            "global_name": name,
            "avatar": None,
            "bot": bot,
            "flags": 0,
            "public_flags": 0,
        }

    @property
    def bot_user(self) -> dict[str, Any]:
        """The bot's own user payload."""
        return self.user(self.bot_id, "nstbot", bot=True)

    def member(self, uid: int, *, permissions: str | None = None) -> dict[str, Any]:
        """A guild member payload (with resolved permissions, as interactions carry)."""
        out: dict[str, Any] = {
            "user": self.user(uid, f"user{uid % 1000}"),
            "roles": [],
            "joined_at": _now_iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
        }
        if permissions is not None:
            out["permissions"] = permissions
        return out

    def channel(self, cid: int | None = None) -> dict[str, Any]:
        """A text channel payload."""
        cid = cid or self.channel_id
        return {
            "id": str(cid),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": f"chan-{cid % 1000}",
            "position": 0,
            "permission_overwrites": self._overwrites(cid),
            "nsfw": False,
            "parent_id": None,
            "permissions": ALL_PERMISSIONS,
        }

    def _overwrites(self, cid: int) -> list[dict[str, Any]]:
        denied = self.bot_denied.get(cid, 0)
        if not denied:
            return []
        return [{"id": str(self.bot_id), "type": 1, "allow": "0", "deny": str(denied)}]

    async def deny_bot(self, channel_id: int, permissions: int) -> None:
        """Deny the bot `permissions` in a channel (0: lift), as a CHANNEL_UPDATE tells it."""
        if permissions:
            self.bot_denied[channel_id] = permissions
        else:
            self.bot_denied.pop(channel_id, None)
        await self.dispatch("CHANNEL_UPDATE", self.channel(channel_id))

    def guild(self) -> dict[str, Any]:
        """The GUILD_CREATE payload of the one test server."""
        everyone = {
            "id": str(self.guild_id),
            "name": "@everyone",
            "permissions": MEMBER_PERMISSIONS,
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        return {
            "id": str(self.guild_id),
            "name": "Test server",
            "icon": None,
            "owner_id": str(self.owner_id),
            "roles": [everyone],
            "channels": [self.channel(self.channel_id), self.channel(self.other_channel_id)],
            "members": [self.member(self.bot_id) | {"user": self.bot_user}],
            "member_count": 3,
            "features": [],
            "premium_tier": 0,
            "unavailable": False,
            "large": False,
            "emojis": [],
            "stickers": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "voice_states": [],
            "presences": [],
            "mfa_level": 0,
            "verification_level": 0,
            "explicit_content_filter": 0,
            "default_message_notifications": 0,
            "system_channel_flags": 0,
            "afk_timeout": 300,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": _now_iso(),
        }

    def attachment(
        self,
        data: bytes,
        filename: str = "image.jpg",
        content_type: str | None = "image/jpeg",
        *,
        width: int | None = None,
        height: int | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        """Serve `data` on the fake CDN and return its attachment payload (declared metadata
        may lie, as a client can)."""
        aid = self.snowflake()
        path = f"attachments/{self.channel_id}/{aid}/{filename}"
        self.cdn[path] = (data, content_type or "application/octet-stream")
        url = f"{self.base}/cdn/{path}?ex=abc&is=def&hm=secret-signature"
        out: dict[str, Any] = {
            "id": str(aid),
            "filename": filename,
            "size": len(data) if size is None else size,
            "url": url,
            "proxy_url": url,
        }
        if content_type is not None:
            out["content_type"] = content_type
        if width is not None:
            out["width"] = width
            out["height"] = height
        return out

    def message(
        self,
        *,
        author_id: int,
        content: str = "",
        attachments: list[dict[str, Any]] | None = None,
        channel_id: int | None = None,
        reference: dict[str, Any] | None = None,
        bot_author: bool = False,
    ) -> dict[str, Any]:
        """A message payload (stored, so the bot can fetch it)."""
        mid = self.snowflake()
        cid = channel_id or self.channel_id
        author = self.bot_user if bot_author else self.user(author_id, f"user{author_id % 1000}")
        msg: dict[str, Any] = {
            "id": str(mid),
            "channel_id": str(cid),
            "guild_id": str(self.guild_id),
            "author": author,
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": [],
            "pinned": False,
            "type": 0 if reference is None else 19,
            "flags": 0,
            "components": [],
        }
        if reference is not None:
            msg["message_reference"] = {
                "message_id": reference["id"],
                "channel_id": reference["channel_id"],
                "guild_id": str(self.guild_id),
            }
            msg["referenced_message"] = reference
        self.messages[mid] = msg
        return msg

    def interaction(
        self,
        data: dict[str, Any],
        *,
        user_id: int,
        itype: int = 2,
        permissions: str = MEMBER_PERMISSIONS,
        channel_id: int | None = None,
        message: dict[str, Any] | None = None,
        upload_limit: int = 10 * 1024 * 1024,
        guild_id: int | None = None,
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload in the test server (or, with `guild_id`, in another
        server the bot has no cache of, as Discord sends for a server it was just added to)."""
        iid = self.snowflake()
        cid = channel_id or self.channel_id
        gid = guild_id or self.guild_id
        channel = self.channel(cid) | {"guild_id": str(gid)}
        out: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.bot_id),
            "type": itype,
            "token": f"itok-{iid}",
            "version": 1,
            "guild_id": str(gid),
            "channel_id": str(cid),
            "channel": channel,
            "member": self.member(user_id, permissions=permissions),
            "app_permissions": ALL_PERMISSIONS,
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(gid)},
            "context": 0,
            "attachment_size_limit": upload_limit,
            "data": data,
        }
        if message is not None:
            out["message"] = message
        return out

    def slash(
        self, name: str, options: list[dict[str, Any]], attachments: list[dict[str, Any]] = ()
    ) -> dict[str, Any]:
        """Interaction data of a chat-input command."""
        data: dict[str, Any] = {"id": str(self.snowflake()), "name": name, "type": 1}
        data["options"] = options
        if attachments:
            data["resolved"] = {"attachments": {a["id"]: a for a in attachments}}
        return data

    # --- driving --------------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any]) -> float:
        """Send a DISPATCH event to the connected bot; returns time.perf_counter() at send."""
        assert self.ws is not None and not self.ws.closed, "no bot connected"
        self.seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": self.seq, "d": data})
        sent = time.perf_counter()
        await self.ws.send_str(frame)
        return sent

    def fail(
        self,
        method: str,
        pattern: str,
        status: int,
        *,
        code: int = 0,
        message: str = "fake error",
        retry_after: float | None = None,
        times: int = 1,
        when: Callable[[Recorded], bool] | None = None,
    ) -> Rule:
        """Answer the next `times` requests matching `method` and the path regex with an error."""
        body: dict[str, Any] = {"code": code, "message": message}
        headers: dict[str, str] = {}
        if retry_after is not None:
            body.update({"retry_after": retry_after, "global": False})
            # discord.py retries a 429 only when it carries Via (else it suspects Cloudflare).
            headers.update({"Retry-After": f"{retry_after}", "Via": "1.1 google"})
        rule = Rule(method, re.compile(pattern), status, body, headers, times, when)
        self.rules.append(rule)
        return rule

    def find(self, method: str | None = None, pattern: str | None = None) -> list[Recorded]:
        """Recorded requests matching a method and a path regex (searched)."""
        rx = re.compile(pattern) if pattern else None
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (rx is None or rx.search(r.path))
        ]

    async def wait_for(
        self, method: str | None, pattern: str, *, count: int = 1, timeout: float = 60.0
    ) -> list[Recorded]:
        """Wait until `count` matching requests have arrived; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(method, pattern)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                seen = "\n".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-30:])
                raise AssertionError(f"timed out waiting for {method} {pattern}; last:\n{seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=0.5)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait until `predicate()` is true, re-checking after each request."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for a condition")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=0.5)

    # --- gateway --------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws = ws
        self.connections += 1
        # Plain-text JSON frames: discord.py only decompresses binary frames.
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}})
        async for msg in ws:
            if msg.type != web.WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            op = payload.get("op")
            if op == 1:
                await ws.send_json({"op": 11})
            elif op == 2:
                self.identifies.append(payload["d"])
                await self._send_ready(ws)
            elif op == 6:
                self.seq += 1
                await ws.send_json({"op": 0, "t": "RESUMED", "s": self.seq, "d": {}})
        if self.ws is ws:
            self.ready.clear()
        return ws

    async def _send_ready(self, ws: web.WebSocketResponse) -> None:
        self.seq += 1
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": self.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.bot_id), "flags": 0},
        }
        await ws.send_json({"op": 0, "t": "READY", "s": self.seq, "d": ready})
        self.seq += 1
        await ws.send_json({"op": 0, "t": "GUILD_CREATE", "s": self.seq, "d": self.guild()})
        self.ready.set()

    # --- REST -----------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        payload, files = await _read_body(request)
        rec = Recorded(
            request.method, path, dict(request.query), payload, files, time.perf_counter()
        )
        self.requests.append(rec)
        try:
            for rule in self.rules:
                if rule.matches(rec):
                    rule.hits += 1
                    rec.status = rule.status
                    return _json(rule.body, status=rule.status, headers=rule.headers)
            for method, rx, handler in self._routes:
                m = rx.fullmatch(path)
                if m and method == request.method:
                    result = handler(rec, *m.groups())
                    if result is None:
                        rec.status = 204
                        return web.Response(status=204)
                    rec.status = 200
                    rec.response = result
                    return _json(result)
            rec.status = 404
            return _json({"code": 0, "message": f"fake: no route {path}"}, status=404)
        except _Unknown:
            rec.status = 404
            return _json({"code": 10008, "message": "Unknown Message"}, status=404)
        finally:
            self._changed.set()

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        rec = Recorded(
            request.method, "/cdn/" + path, dict(request.query), None, [], time.perf_counter()
        )
        self.requests.append(rec)
        self._changed.set()
        if path not in self.cdn:
            rec.status = 404
            return web.Response(status=404)
        data, ctype = self.cdn[path]
        rec.status = 200
        return web.Response(body=data, content_type=ctype.split(";")[0])

    def _me(self, rec: Recorded) -> dict[str, Any]:
        return self.bot_user

    def _application(self, rec: Recorded) -> dict[str, Any]:
        return {
            "id": str(self.bot_id),
            "name": "nstbot",
            "icon": None,
            "description": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.user(self.owner_id, "owner"),
            "verify_key": "00",
            "flags": 0,
            "team": None,
        }

    def _gateway_bot(self, rec: Recorded) -> dict[str, Any]:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    def _new_bot_message(self, cid: int, body: dict[str, Any], files: list[Any]) -> dict[str, Any]:
        msg = self.message(author_id=self.bot_id, channel_id=cid, bot_author=True)
        self._apply(msg, body, files)
        return msg

    def _apply(self, msg: dict[str, Any], body: dict[str, Any] | None, files: list[Any]) -> None:
        body = body or {}
        for key in ("content", "components", "embeds", "flags"):
            if key in body and body[key] is not None:
                msg[key] = body[key]
        if "attachments" in body or files:
            mid = int(msg["id"])
            if files:
                self.files[mid] = list(files)
            elif not body.get("attachments"):
                self.files.pop(mid, None)
            msg["attachments"] = [
                {"id": str(i), "filename": name, "size": len(data), "url": "", "proxy_url": ""}
                for i, (name, data) in enumerate(self.files.get(mid, []))
            ]
        msg["edited_timestamp"] = _now_iso()

    def _callback(self, rec: Recorded, iid: str, token: str) -> dict[str, Any]:
        body = rec.json or {}
        rtype = body.get("type")
        data = body.get("data") or {}
        out: dict[str, Any] = {
            "interaction": {"id": iid, "type": 2},
            "resource": {"type": rtype},
        }
        if rtype in (4, 5):
            msg = self._new_bot_message(self.channel_id, data, rec.files)
            if rtype == 5:
                msg["flags"] = int(data.get("flags", 0)) | 128  # loading
            self.originals[token] = int(msg["id"])
            out["interaction"].update(
                response_message_id=msg["id"],
                response_message_loading=rtype == 5,
                response_message_ephemeral=bool(int(data.get("flags", 0)) & 64),
            )
            out["resource"]["message"] = msg
        return out

    def _wh_message(self, token: str, ref: str) -> dict[str, Any]:
        mid = self.originals.get(token) if ref == "@original" else int(ref)
        if mid is None or mid not in self.messages:
            raise _Unknown()
        return self.messages[mid]

    def _wh_edit(self, rec: Recorded, app: str, token: str, ref: str) -> dict[str, Any]:
        msg = self._wh_message(token, ref)
        msg["flags"] = int(msg.get("flags", 0)) & ~128
        self._apply(msg, rec.json, rec.files)
        return msg

    def _wh_get(self, rec: Recorded, app: str, token: str, ref: str) -> dict[str, Any]:
        return self._wh_message(token, ref)

    def _wh_delete(self, rec: Recorded, app: str, token: str, ref: str) -> None:
        msg = self._wh_message(token, ref)
        msg["deleted"] = True

    def _wh_followup(self, rec: Recorded, app: str, token: str) -> dict[str, Any]:
        return self._new_bot_message(self.channel_id, rec.json or {}, rec.files)

    def _ch_create(self, rec: Recorded, cid: str) -> dict[str, Any]:
        return self._new_bot_message(int(cid), rec.json or {}, rec.files)

    def _ch_edit(self, rec: Recorded, cid: str, mid: str) -> dict[str, Any]:
        msg = self._ch_message(mid)
        self._apply(msg, rec.json, rec.files)
        return msg

    def _ch_get(self, rec: Recorded, cid: str, mid: str) -> dict[str, Any]:
        return self._ch_message(mid)

    def _ch_delete(self, rec: Recorded, cid: str, mid: str) -> None:
        self._ch_message(mid)["deleted"] = True

    def _ch_message(self, mid: str) -> dict[str, Any]:
        if int(mid) not in self.messages:
            raise _Unknown()
        return self.messages[int(mid)]

    def _dm_open(self, rec: Recorded) -> dict[str, Any]:
        uid = int((rec.json or {})["recipient_id"])
        return {
            "id": str(self.dm_channel_id(uid)),
            "type": 1,
            "recipients": [self.user(uid)],
            "last_message_id": None,
        }

    def dm_channel_id(self, user_id: int) -> int:
        """The id of the DM channel with a user (stable per user)."""
        return user_id + 7

    def _user_get(self, rec: Recorded, uid: str) -> dict[str, Any]:
        return self.user(int(uid))

    def _commands(self, rec: Recorded, app: str) -> list[dict[str, Any]]:
        out = []
        for cmd in rec.json or []:
            ids = {"id": str(self.snowflake()), "application_id": app, "version": "1"}
            out.append({"description": "", "type": 1} | cmd | ids)
        return out

    def _no_commands(self, rec: Recorded, app: str) -> list[Any]:
        return []


def _none(rec: Recorded, *groups: str) -> None:
    return None


class _Unknown(Exception):
    """The message a route names does not exist."""


async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
    if request.content_type.startswith("multipart/"):
        payload: Any = None
        files: list[tuple[str, bytes]] = []
        reader = await request.multipart()
        async for part in reader:
            data = await part.read()  # type: ignore[union-attr]
            if part.name == "payload_json":  # type: ignore[union-attr]
                payload = json.loads(data)
            elif part.filename:  # type: ignore[union-attr]
                files.append((part.filename, bytes(data)))  # type: ignore[union-attr]
        return payload, files
    raw = await request.read()
    if not raw:
        return None, []
    try:
        return json.loads(raw), []
    except ValueError:
        return raw.decode("utf-8", "replace"), []


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py parses JSON only when Content-Type is exactly application/json (no charset).
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
