"""Every failure ends in one clear message to the right person: the one who clicked or typed the command,
privately, and never a "thinking…" left hanging. Used by the command tree's error handler (bot/app.py), the
buttons and the modal (bot/cogs/ask.py)."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.render import trim
from embeddings.errors import QabotError, user_message

log = logging.getLogger(__name__)

SOMETHING_BROKE = "Something went wrong on my side, sorry; please try again in a moment."


def failure_text(error: BaseException) -> str:
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Please try again in {max(1, round(error.retry_after))} s."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works in a server, not in direct messages."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    if isinstance(error, QabotError):
        return user_message(error)
    return SOMETHING_BROKE


async def tell(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral message to whoever caused the interaction, whether or not it was answered yet. A public
    "thinking…" placeholder (a defer) is removed first, so the failure is neither public nor hanging."""
    text = trim(text, 2000)
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True)
        return
    if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
        try:
            original = await interaction.original_response()
            if original.flags.loading:
                await original.delete()
        except discord.HTTPException:
            pass
    await interaction.followup.send(text, ephemeral=True)


async def report(interaction: discord.Interaction, error: BaseException, what: str) -> None:
    """Log ``error`` (unless it is the user's, a QabotError) and tell the user, never raising."""
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if not isinstance(original, (QabotError, app_commands.CheckFailure)):
        log.error("%s failed", what, exc_info=original)
    try:
        await tell(interaction, failure_text(original))
    except discord.HTTPException as exc:
        log.warning("could not tell the user that %s failed: %s", what, exc)
