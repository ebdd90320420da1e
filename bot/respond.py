"""Answering an interaction in time when the reply waits on the store.

Discord drops an interaction that gets no first response within 3 seconds ("This interaction failed"). A
settings change or a vote is a write, and a write can wait behind another process's commit (SQLite's
BEGIN IMMEDIATE waits up to its busy timeout; PostgreSQL waits for the row lock). Deferring every such
command would cost each of them an extra round trip and a "thinking..." flash, so ``within_window`` defers
only when the work is still running after ``DEFER_AFTER`` seconds; ``reply`` then sends the reply the way
the interaction's state allows (the first response, or the followup / edit that a deferred one needs).

A form (modal) must be the first response and cannot follow a defer: code that opens one does so before
its slow work (bot/cogs/feedback.py, the 👎 vote)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import discord

T = TypeVar("T")

# Seconds of work after which the interaction is acknowledged first: a second short of Discord's 3, for the
# defer's own round trip.
DEFER_AFTER = 2.0


async def within_window(interaction: discord.Interaction, work: Awaitable[T], *, update: bool = False) -> T:
    """``await work``, acknowledging ``interaction`` meanwhile if it takes longer than ``DEFER_AFTER``: a
    private "thinking..." (``update=False``, the reply will be a new private message) or a silent
    acknowledgement of the component (``update=True``, the reply will edit the message it is on)."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=DEFER_AFTER)
    if not done and not interaction.response.is_done():
        try:
            if update:
                await interaction.response.defer()
            else:
                await interaction.response.defer(ephemeral=True, thinking=True)
        except discord.HTTPException:
            await task  # the interaction is lost, but the work (a change being saved) still finishes
            raise
    return await task


async def reply(interaction: discord.Interaction, *, update: bool = False, **fields: Any) -> None:
    """Send ``fields`` (content, embed, view) as a private message, or with ``update`` as an edit of the
    component's message: as the first response when none was sent yet, else after ``within_window``'s defer."""
    if not interaction.response.is_done():
        if update:
            await interaction.response.edit_message(**fields)
        else:
            await interaction.response.send_message(ephemeral=True, **fields)
    elif update:
        await interaction.edit_original_response(**fields)
    else:
        await interaction.followup.send(ephemeral=True, **fields)
