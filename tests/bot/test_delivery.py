"""Delivery data, token lifetime and error classification."""

from __future__ import annotations

import json
from types import SimpleNamespace

import discord

from nstbot.bot.delivery import Deliverer, DeliveryInfo, token_dead, too_large


def http_error(status: int, code: int = 0) -> discord.HTTPException:
    response = SimpleNamespace(status=status, reason="x")
    return discord.HTTPException(response, {"code": code, "message": "m"})  # type: ignore[arg-type]


def info(**changes: object) -> DeliveryInfo:
    base = DeliveryInfo(
        kind="interaction",
        channel_id=3,
        user_id=4,
        guild_id=5,
        application_id=6,
        interaction_token="tok",
        token_created=1000.0,
        message_id=7,
        upload_limit=8_000_000,
        summary="fast · 48 px",
        requested_at=999.0,
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_delivery_info_round_trips_through_json() -> None:
    original = info()
    data = json.loads(json.dumps(original.to_dict()))
    assert DeliveryInfo.from_dict(data) == original
    assert DeliveryInfo.from_dict(data | {"added_later": 1}) == original


def test_token_validity_follows_the_clock() -> None:
    now = [1000.0]
    d = Deliverer(None, clock=lambda: now[0], token_lifetime_s=900, token_margin_s=60)  # type: ignore[arg-type]
    assert d.token_valid(info())
    now[0] = 1000.0 + 839
    assert d.token_valid(info())
    now[0] = 1000.0 + 840  # inside the margin: treated as expired
    assert not d.token_valid(info())
    assert not d.token_valid(info(kind="message"))
    assert not d.token_valid(info(interaction_token=None))


def test_a_dead_token_stays_dead() -> None:
    d = Deliverer(None, clock=lambda: 1000.0)  # type: ignore[arg-type]
    i = info()
    d._mark_dead(i)
    assert not d.token_valid(i)
    assert d.token_valid(info(interaction_token="other"))


def test_error_classification() -> None:
    assert token_dead(http_error(401, 50027))
    assert token_dead(http_error(404, 10015))
    assert not token_dead(http_error(404, 10008))
    assert too_large(http_error(413, 40005))
    assert too_large(http_error(400, 40005))
    assert not too_large(http_error(403, 50013))
