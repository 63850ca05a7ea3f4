"""Buttons on job messages. They are `DynamicItem`s: the custom_id carries the job and requester,
so a button keeps working after the bot restarts (no in-memory view is needed to route it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import discord

if TYPE_CHECKING:
    from discord.interactions import Interaction

TEMPLATE = (
    r"nst:(?P<action>cancel|again|timelapse):(?P<job>[0-9A-Za-z_-]{1,40}):(?P<user>[0-9]{1,20})"
)
ACTIONS: dict[str, tuple[str, discord.ButtonStyle]] = {
    "cancel": ("Cancel", discord.ButtonStyle.danger),
    "again": ("Run again", discord.ButtonStyle.secondary),
    "timelapse": ("Timelapse", discord.ButtonStyle.secondary),
}


class ButtonHandler(Protocol):
    """What the buttons call; the bot's JobRunner implements it."""

    async def on_cancel_pressed(
        self, interaction: Interaction[Any], job_id: str, owner_id: int
    ) -> None: ...

    async def on_again_pressed(
        self, interaction: Interaction[Any], job_id: str, owner_id: int
    ) -> None: ...

    async def on_timelapse_pressed(
        self, interaction: Interaction[Any], job_id: str, owner_id: int
    ) -> None: ...


def may_cancel(actor_id: int, owner_id: int, permissions: discord.Permissions | None) -> bool:
    """The requester may cancel their job, and so may members with Manage Messages."""
    if actor_id == owner_id:
        return True
    if permissions is None:
        return False
    return bool(permissions.manage_messages or permissions.administrator)


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """Cancel a waiting or running job, run a finished one again, or show its timelapse."""

    def __init__(self, action: str, job_id: str, owner_id: int) -> None:
        label, style = ACTIONS[action]
        custom_id = f"nst:{action}:{job_id}:{owner_id}"
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=custom_id))
        self.action = action
        self.job_id = job_id
        self.owner_id = owner_id

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> JobButton:
        """Rebuild the button from its custom_id."""
        return cls(match["action"], match["job"], int(match["user"]))

    async def callback(self, interaction: Interaction[Any]) -> None:
        """Hand the press to the runner."""
        handler: ButtonHandler = interaction.client.runner  # type: ignore[attr-defined]
        if self.action == "cancel":
            await handler.on_cancel_pressed(interaction, self.job_id, self.owner_id)
        elif self.action == "timelapse":
            await handler.on_timelapse_pressed(interaction, self.job_id, self.owner_id)
        else:
            await handler.on_again_pressed(interaction, self.job_id, self.owner_id)


def _view(action: str, job_id: str, owner_id: int, *more: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for name in (action, *more):
        view.add_item(JobButton(name, job_id, owner_id))
    return view


def cancel_view(job_id: str, owner_id: int) -> discord.ui.View:
    """The view of a running job: one Cancel button."""
    return _view("cancel", job_id, owner_id)


def again_view(job_id: str, owner_id: int, *, timelapse: bool = False) -> discord.ui.View:
    """The view of a finished job: Run again, and Timelapse while its frames are kept."""
    return _view("again", job_id, owner_id, *(["timelapse"] if timelapse else []))
