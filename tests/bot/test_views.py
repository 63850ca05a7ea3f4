"""Button permissions and custom_id templates."""

from __future__ import annotations

import re

import discord

from nstbot.bot.views import TEMPLATE, again_view, cancel_view, may_cancel


def test_requester_may_cancel_without_any_permission() -> None:
    assert may_cancel(1, 1, discord.Permissions.none())
    assert may_cancel(1, 1, None)


def test_moderator_may_cancel_someone_elses_job() -> None:
    assert may_cancel(2, 1, discord.Permissions(manage_messages=True))
    assert may_cancel(2, 1, discord.Permissions(administrator=True))


def test_others_may_not_cancel() -> None:
    assert not may_cancel(2, 1, discord.Permissions(send_messages=True, manage_guild=True))
    assert not may_cancel(2, 1, None)


def test_custom_ids_match_their_templates() -> None:
    (cancel,) = cancel_view("abc123", 987).children
    (again,) = again_view("abc123", 987).children
    m = re.fullmatch(TEMPLATE, cancel.custom_id)
    assert m and (m["action"], m["job"], m["user"]) == ("cancel", "abc123", "987")
    m = re.fullmatch(TEMPLATE, again.custom_id)
    assert m and (m["action"], m["job"]) == ("again", "abc123")
    assert (cancel.item.label, again.item.label) == ("Cancel", "Run again")
    assert len(cancel.custom_id) <= 100  # Discord's limit
    assert re.fullmatch(TEMPLATE, "nst:cancel:../x:1") is None
    assert re.fullmatch(TEMPLATE, "nst:delete:abc:1") is None


def test_views_do_not_time_out() -> None:
    assert cancel_view("a", 1).timeout is None
    assert again_view("a", 1).timeout is None


def test_a_result_whose_frames_are_kept_offers_a_timelapse_button() -> None:
    again, timelapse = again_view("abc123", 987, timelapse=True).children
    m = re.fullmatch(TEMPLATE, timelapse.custom_id)
    assert m and (m["action"], m["job"], m["user"]) == ("timelapse", "abc123", "987")
    assert (again.item.label, timelapse.item.label) == ("Run again", "Timelapse")
    assert len(again_view("abc123", 987).children) == 1
