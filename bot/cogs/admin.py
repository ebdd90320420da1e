"""Server admins' commands: /ingest, /forget, /stats, and the owner's on-demand command-tree sync.

Permissions are checked here, in code, from ``interaction.permissions`` (what Discord computed for the
member in this channel): ``default_permissions`` only hides the commands in the client and can be changed
by any server admin. A server's documents go to its own scope (``guild_scope``): they are visible only
there, and /forget can only touch them, never the shared corpus or another server's documents."""

from __future__ import annotations

import asyncio
import logging
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot import harvest
from bot.permissions import can_manage, refuse_unless_manager
from bot.render import escape_markdown, plural, trim
from embeddings.errors import QabotError, user_message
from embeddings.models import BASE_SCOPE, guild_scope
from embeddings.service import SUPPORTED_EXTENSIONS, IngestReport, QAService
from embeddings.settings import BotSettings

if TYPE_CHECKING:
    from bot.app import QABot

log = logging.getLogger(__name__)

UPLOAD_TYPES = SUPPORTED_EXTENSIONS
NEEDS_MANAGE_SERVER = "Only members with the **Manage Server** permission can change this server's articles."
ONE_SOURCE = ("Give exactly one of `url:` (an http(s) address), `file:` (a .txt, .md or .html attachment), "
              "`thread:` (a thread or forum post) or `pins:` (a channel whose pinned messages to add).")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def format_report(report: IngestReport) -> str:
    lines = []
    for o in report.outcomes:
        title = escape_markdown(trim(o.title, 200))
        count = plural(o.passages, "passage")
        if o.status == "removed":
            lines.append(f"Removed: **{title}** (none of its messages with text is left).")
        elif o.status == "unchanged":
            lines.append(f"Already indexed, unchanged: **{title}**.")  # not re-read: no passage count
        elif o.same_text_as:
            lines.append(f"{o.status.capitalize()}: **{title}**, {count}: the same text as "
                         f"{escape_markdown(trim(o.same_text_as, 200))}, already indexed (answers show it once).")
        else:
            lines.append(f"{o.status.capitalize()}: **{title}**, {count}. Ask away with /ask.")
    for f in report.failures:
        lines.append(f"Could not ingest {escape_markdown(trim(f.name, 200))}: {f.message}")
    return "\n".join(lines) or "Nothing was ingested."


class AdminCog(commands.Cog):
    def __init__(self, bot: QABot | commands.Bot, service: QAService, settings: BotSettings) -> None:
        self.bot = bot
        self.service = service
        self.settings = settings

    # ---- /ingest ---------------------------------------------------------------------------------

    @app_commands.command(name="ingest", description="Add an article to this server's index (Manage Server)")
    @app_commands.describe(url="http(s) address of an article", file="a .txt, .md or .html file (up to 2 MB)",
                           thread="a thread or forum post: its messages become one article",
                           pins="a channel: its pinned messages become one article")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    async def ingest(self, interaction: discord.Interaction, url: str | None = None,
                     file: discord.Attachment | None = None, thread: app_commands.AppCommandThread | None = None,
                     pins: app_commands.AppCommandChannel | app_commands.AppCommandThread | None = None) -> None:
        if await refuse_unless_manager(interaction, NEEDS_MANAGE_SERVER):
            return
        if sum(x is not None for x in (url, file, thread, pins)) != 1:
            await interaction.response.send_message(ONE_SOURCE, ephemeral=True)
            return
        if thread is not None or pins is not None:
            await self._ingest_channel(interaction, thread, pins)
            return
        if file is not None:  # refuse before downloading anything
            suffix = PurePosixPath(file.filename).suffix.lower()
            if suffix not in UPLOAD_TYPES:
                await interaction.response.send_message(
                    f"`{trim(file.filename, 100)}` is not a supported file: use {', '.join(UPLOAD_TYPES)}.",
                    ephemeral=True)
                return
            if file.size > self.settings.max_upload_bytes:
                await interaction.response.send_message(
                    f"`{trim(file.filename, 100)}` is {_size(file.size)}; the limit is "
                    f"{_size(self.settings.max_upload_bytes)}.", ephemeral=True)
                return
        await interaction.response.defer(ephemeral=True, thinking=True)
        scope = guild_scope(interaction.guild_id)
        try:
            if file is not None:
                name = file.filename
                await interaction.edit_original_response(content=f"Downloading `{trim(name, 100)}`…")
                data = await file.read()
                if len(data) > self.settings.max_upload_bytes:  # the size Discord announced was wrong
                    raise QabotError(f"{name} is over the {_size(self.settings.max_upload_bytes)} limit")
                await interaction.edit_original_response(content=f"Indexing `{trim(name, 100)}`…")
                report = await asyncio.to_thread(self.service.ingest_upload, data, name=name, scope=scope)
            else:
                assert url is not None
                await interaction.edit_original_response(content=f"Fetching and indexing <{trim(url, 500)}>…")
                # Never service.ingest: it reads paths, and a server admin must not read the bot host's files.
                report = await asyncio.to_thread(self.service.ingest_urls, [url], scope=scope)
        except discord.HTTPException as exc:
            text = f"Could not download the attachment from Discord ({exc.status}); please try again."
        except Exception as exc:  # noqa: BLE001 - IndexBusy, fetch errors, bugs: all become user text
            if not isinstance(exc, QabotError):
                log.exception("ingest failed")
            text = user_message(exc)
        else:
            text = format_report(report)
        await interaction.edit_original_response(content=trim(text, 2000))

    async def _ingest_channel(self, interaction: discord.Interaction, thread: app_commands.AppCommandThread | None,
                              pins: app_commands.AppCommandChannel | app_commands.AppCommandThread | None) -> None:
        """`/ingest thread:` and `/ingest pins:`: the messages become one document (bot/harvest.py)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        picked = thread or pins
        assert picked is not None and interaction.guild is not None
        guild = interaction.guild
        try:
            channel = guild.get_channel_or_thread(picked.id) or await guild.fetch_channel(picked.id)
            await interaction.edit_original_response(content=f"Reading {channel.mention}…")
            if thread is not None:
                if not isinstance(channel, discord.Thread):
                    raise harvest.CannotRead(f"{channel.mention} is not a thread or forum post.")
                read = await harvest.read_thread(channel, guild.me, self.settings.max_upload_bytes)
            else:
                read = await harvest.read_pins(channel, guild.me, self.settings.max_upload_bytes)
            await interaction.edit_original_response(content=f"Indexing {channel.mention}…")
            report, left_out = await harvest.ingest_harvest(self.service, read, guild_scope(interaction.guild_id),
                                                            self.settings.max_upload_bytes)
        except discord.Forbidden:
            text = harvest.needs_history(f"<#{picked.id}>")
        except discord.HTTPException as exc:
            text = f"Discord would not give me that channel ({exc.status}); please try again."
        except Exception as exc:  # noqa: BLE001 - CannotRead, IndexBusy, bugs: all become user text
            if not isinstance(exc, QabotError):
                log.exception("ingest of channel %s failed", picked.id)
            text = user_message(exc)
        else:
            text = "\n".join([*harvest.harvest_notes(read, intent=self.bot.intents.message_content),
                              format_report(report), *left_out])
        await interaction.edit_original_response(content=trim(text, 2000))

    # ---- /forget ---------------------------------------------------------------------------------

    @app_commands.command(name="forget", description="Remove one of this server's articles (Manage Server)")
    @app_commands.describe(document="start typing its title")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    async def forget(self, interaction: discord.Interaction, document: str) -> None:
        if await refuse_unless_manager(interaction, NEEDS_MANAGE_SERVER):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        scope = guild_scope(interaction.guild_id)
        try:
            own = await asyncio.to_thread(self.service.documents, scope)
            if not any(document in (d.doc_key, d.title, d.source) for d in own):
                text = (f"No article of this server matches `{trim(document, 200)}`: pick one from the list "
                        "that appears while typing (only articles added with /ingest here can be removed).")
            else:
                removed = await asyncio.to_thread(self.service.remove, document, scope=scope)
                text = "Removed: " + ", ".join(f"**{escape_markdown(trim(t, 200))}**" for t in removed)
        except Exception as exc:  # noqa: BLE001
            if not isinstance(exc, QabotError):
                log.exception("forget failed")
            text = user_message(exc)
        await interaction.edit_original_response(content=trim(text, 2000))

    @forget.autocomplete("document")
    async def forget_autocomplete(self, interaction: discord.Interaction,
                                  current: str) -> list[app_commands.Choice[str]]:
        if not can_manage(interaction):
            return []
        docs = await asyncio.to_thread(self.service.documents, guild_scope(interaction.guild_id))
        needle = current.casefold().strip()
        hits = [d for d in reversed(docs) if needle in d.title.casefold() or needle == d.doc_key]
        return [app_commands.Choice(name=trim(d.title or d.source, 100) or d.doc_key, value=d.doc_key)
                for d in hits[:25]]

    # ---- /stats ----------------------------------------------------------------------------------

    @app_commands.command(name="stats", description="What qabot knows here: articles, passages, model")
    async def stats(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = await asyncio.to_thread(self.stats_text, interaction.guild_id)
        await interaction.edit_original_response(content=trim(text, 2000))

    def stats_text(self, guild_id: int | None) -> str:
        base = self.service.documents(BASE_SCOPE)
        own = self.service.documents(guild_scope(guild_id)) if guild_id is not None else []
        stats = self.service.stats()
        lines = []
        if guild_id is not None:
            lines.append(f"**This server:** {plural(len(own), 'document')}, {plural(sum(d.passages for d in own), 'passage')}")
        lines += [
            f"**Shared articles:** {plural(len(base), 'document')}, {plural(sum(d.passages for d in base), 'passage')}",
            f"**Model:** {stats.model} ({stats.dimension} dimensions)",
            f"**Index size:** {_size(stats.index_bytes)}",
        ]
        return "\n".join(lines)


async def setup(bot: QABot) -> None:
    """Extension entry point: QABot.setup_hook loads this module by name."""
    # service is None only under `qabot sync`, which registers the commands and never runs one.
    await bot.add_cog(AdminCog(bot, cast(QAService, bot.service), bot.settings))
