"""Learning from Discord: the message context menu **Add to qabot's articles** (Manage Server). `/ingest
thread:` and `/ingest pins:` are options of /ingest (bot/cogs/admin.py); both read through bot/harvest.py.

The message comes with the interaction (text included, with or without the Message Content intent); its text
becomes a document (its link as source), its .txt/.md/.html attachments are ingested as files and its http(s)
links through QAService.ingest_urls (public addresses only, never a local file). All of it goes to this
server's own scope; adding the same message again replaces what it added."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot import harvest
from bot.cogs.admin import NEEDS_MANAGE_SERVER, format_report
from bot.permissions import refuse_unless_manager
from bot.render import trim
from embeddings.errors import QabotError, user_message
from embeddings.models import guild_scope
from embeddings.service import SUPPORTED_EXTENSIONS, QAService
from embeddings.settings import BotSettings

if TYPE_CHECKING:
    from bot.app import QABot

log = logging.getLogger(__name__)

ADD_MENU = "Add to qabot's articles"
NOTHING_TO_ADD = (f"That message has nothing I can learn: no text, no {', '.join(SUPPORTED_EXTENSIONS)} "
                  "attachment, no http(s) link.")


class LearnCog(commands.Cog):
    def __init__(self, bot: QABot | commands.Bot, service: QAService, settings: BotSettings) -> None:
        self.bot = bot
        self.service = service
        self.settings = settings

    async def cog_load(self) -> None:
        # A context menu cannot be a cog method: it is built here and added to the tree by hand.
        self.add_menu = app_commands.ContextMenu(name=ADD_MENU, callback=self.add_message)
        self.bot.tree.add_command(self.add_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(ADD_MENU, type=discord.AppCommandType.message)

    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    async def add_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if await refuse_unless_manager(interaction, NEEDS_MANAGE_SERVER):  # default_permissions only hides the menu
            return
        limit = self.settings.max_upload_bytes
        parts = harvest.message_parts(message, limit)
        if parts.empty:
            await interaction.response.send_message("\n".join([NOTHING_TO_ADD, *parts.skipped]), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            report = await harvest.ingest_message(self.service, message, parts, guild_scope(interaction.guild_id),
                                                  limit)
        except Exception as exc:  # noqa: BLE001 - IndexBusy, bugs: all become user text
            if not isinstance(exc, QabotError):
                log.exception("adding message %s failed", message.id)
            text = user_message(exc)
        else:
            text = "\n".join([format_report(report), *(f"Skipped {s}." for s in parts.skipped)])
        await interaction.edit_original_response(content=trim(text, 2000))


async def setup(bot: QABot) -> None:
    """Extension entry point: QABot.setup_hook loads this module by name."""
    # service is None only under `qabot sync`, which registers the commands and never runs one.
    await bot.add_cog(LearnCog(bot, cast(QAService, bot.service), bot.settings))
