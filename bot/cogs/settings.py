"""`/qabot`: a server's own settings, by its members with Manage Server (issue 15, item 3). Where qabot
answers (`/qabot channels`: allow / deny lists), how (`/qabot mode` per channel: mention only, every message,
new forum posts), whether in threads (`/qabot threads`), how often (`/qabot ratelimit`), and all of it
(`/qabot settings`). Every reply is private.

The settings are one JSON object per guild in the bot state (BotState.guild_settings, in the index's store,
shared by every bot process); the rules are in bot/guild_settings.py. AskCog reads them through
``SettingsCog.get`` before answering a message: cached for ``CACHE_SECONDS`` (a change made here is cached at
once, so it takes effect at once in this process, and within ``CACHE_SECONDS`` in the others).

Manage Server is checked here, in code, from ``interaction.permissions``: ``default_permissions`` only hides
the commands from other members' menus."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.guild_settings import (
    EVERY,
    FORUM,
    MENTION,
    MODE_LABELS,
    GuildSettings,
    SettingsError,
    Where,
    channel_list,
    describe_channels,
    describe_rate,
)
from bot.permissions import refuse_unless_manager
from bot.render import trim
from bot.respond import reply, within_window
from embeddings.service import QAService
from embeddings.settings import BotSettings

if TYPE_CHECKING:
    from bot.app import QABot

log = logging.getLogger(__name__)

CACHE_SECONDS = 10.0
NEEDS_MANAGE_SERVER = "Only members with the **Manage Server** permission can change qabot's settings here."
INTENT_OFF = ("\N{WARNING SIGN} The bot runs without the **Message Content** intent, so it cannot read "
              "messages that do not mention it: *every message* mode has no effect until the bot's operator "
              "enables the intent (Developer Portal → Bot → Privileged Gateway Intents) and restarts it.")

ListedChannel = discord.TextChannel | discord.ForumChannel | discord.CategoryChannel
ModeChannel = discord.TextChannel | discord.ForumChannel


class SettingsCache:
    """Each guild's settings, read from the store in a worker thread and kept for ``ttl`` seconds. Changes
    go through ``update``: read fresh, change, write, cache, under one lock and in one store transaction (two
    admins at once, in this process or in two, do not lose each other's change)."""

    def __init__(self, service: QAService, ttl: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.ttl = ttl
        self.clock = clock
        self._cached: dict[int, tuple[GuildSettings, float]] = {}
        self._loading: dict[int, tuple[asyncio.Task[GuildSettings], int]] = {}  # one read a guild at a time
        self._generation: dict[int, int] = {}  # changes made by update(), per guild
        self._lock = asyncio.Lock()

    async def _load(self, guild_id: int) -> GuildSettings:
        raw = await asyncio.to_thread(self.service.bot_state().guild_settings, guild_id)
        return GuildSettings.from_json(raw)

    async def get(self, guild_id: int) -> GuildSettings:
        """The guild's settings; never raises (a store failure logs and serves the last known, or defaults,
        so a broken store never makes the bot answer every message with an error)."""
        cached = self._cached.get(guild_id)
        if cached is not None and self.clock() - cached[1] < self.ttl:
            return cached[0]
        if guild_id not in self._loading:  # a burst of messages after expiry waits for one read, not one each
            task = asyncio.create_task(self._load(guild_id))
            task.add_done_callback(lambda _: self._loading.pop(guild_id, None))
            self._loading[guild_id] = (task, self._generation.get(guild_id, 0))
        task, generation = self._loading[guild_id]
        try:
            settings = await asyncio.shield(task)
        except Exception:  # noqa: BLE001
            log.exception("reading the settings of guild %s failed", guild_id)
            return cached[0] if cached is not None else GuildSettings()
        if self._generation.get(guild_id, 0) != generation:  # /qabot changed them meanwhile: that is newer
            return self._cached[guild_id][0]
        self._cached[guild_id] = (settings, self.clock())
        return settings

    async def update(self, guild_id: int, change: Callable[[GuildSettings], GuildSettings]) -> GuildSettings:
        """Apply ``change`` (which may raise SettingsError: nothing is written then) and store the result."""
        result: list[GuildSettings] = []

        def apply(raw: dict[str, Any]) -> dict[str, Any]:
            result.append(change(GuildSettings.from_json(raw)))
            return result[-1].to_json()

        async with self._lock:
            # Read, change and write in one store transaction: another bot process changing this server's
            # settings at the same moment waits for this one, so neither change is lost.
            await asyncio.to_thread(self.service.bot_state().update_guild_settings, guild_id, apply)
            settings = result[-1]
            self._generation[guild_id] = self._generation.get(guild_id, 0) + 1
            self._cached[guild_id] = (settings, self.clock())
            return settings


def _here(interaction: discord.Interaction) -> int | None:
    """The channel a command was run in (for a thread, its parent): the default ``channel:``."""
    channel = interaction.channel
    if isinstance(channel, discord.Thread):
        return channel.parent_id
    return interaction.channel_id


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class SettingsCog(commands.GroupCog, group_name="qabot",
                  group_description="qabot's settings for this server (Manage Server)"):
    def __init__(self, bot: QABot | commands.Bot, service: QAService, settings: BotSettings) -> None:
        super().__init__()
        self.bot = bot
        self.settings = settings
        self.cache = SettingsCache(service)

    async def get(self, guild_id: int) -> GuildSettings:
        """What AskCog asks before answering a message in a guild."""
        return await self.cache.get(guild_id)

    @property
    def reads_all_messages(self) -> bool:
        """False when the bot runs without the Message Content intent (item 9): 'every message' cannot work."""
        return self.bot.intents.message_content

    async def _change(self, interaction: discord.Interaction, change: Callable[[GuildSettings], GuildSettings],
                      done: Callable[[GuildSettings], str]) -> None:
        """Store a change and say what the setting is now, privately (or why it could not be made)."""
        assert interaction.guild_id is not None
        try:
            # The write can wait behind another process's commit: acknowledged first if it is slow.
            new = await within_window(interaction, self.cache.update(interaction.guild_id, change))
        except SettingsError as exc:
            await reply(interaction, content=trim(str(exc), 2000))
            return
        await reply(interaction, content=trim(done(new), 2000))

    # ---- /qabot channels ---------------------------------------------------------------------------

    @app_commands.command(name="channels", description="Choose where qabot answers: allow or deny channels")
    @app_commands.describe(
        action="allow: answer only in allowed channels · deny: never here · remove: off both lists · clear",
        channel="a channel, forum or category (default: this channel)")
    @app_commands.choices(action=[
        app_commands.Choice(name="allow (answer only in allowed channels)", value="allow"),
        app_commands.Choice(name="deny (never answer there)", value="deny"),
        app_commands.Choice(name="remove from both lists", value="remove"),
        app_commands.Choice(name="clear both lists (answer everywhere)", value="clear"),
    ])
    async def channels(self, interaction: discord.Interaction, action: str,
                       channel: ListedChannel | None = None) -> None:
        if await refuse_unless_manager(interaction, NEEDS_MANAGE_SERVER):
            return
        target = channel.id if channel is not None else _here(interaction)

        def done(s: GuildSettings) -> str:
            what = {"allow": f"Allowed <#{target}>.", "deny": f"Denied <#{target}>.",
                    "remove": f"Removed <#{target}> from the lists.", "clear": "Cleared both lists."}[action]
            text = f"{what} qabot now answers in {describe_channels(s)}."
            if action == "allow" and len(s.allow) == 1:
                text += " With an allow list, it answers only in the channels on it (and their threads)."
            return text

        await self._change(interaction, lambda s: s.with_channel(action, target), done)

    # ---- /qabot mode -------------------------------------------------------------------------------

    @app_commands.command(name="mode", description="How qabot answers in a channel: mentions, every message, forum posts")
    @app_commands.describe(mode="what qabot answers there", channel="a text or forum channel (default: this one)")
    @app_commands.choices(mode=[
        app_commands.Choice(name="mention only (the default)", value=MENTION),
        app_commands.Choice(name="every message in this channel", value=EVERY),
        app_commands.Choice(name="new forum posts (a forum channel)", value=FORUM),
    ])
    async def mode(self, interaction: discord.Interaction, mode: str, channel: ModeChannel | None = None) -> None:
        if await refuse_unless_manager(interaction, NEEDS_MANAGE_SERVER):
            return
        if channel is None:
            here = _here(interaction)
            found = interaction.guild.get_channel(here) if interaction.guild and here else None
            if not isinstance(found, (discord.TextChannel, discord.ForumChannel)):
                await interaction.response.send_message("Name a text or forum channel with `channel:`.",
                                                        ephemeral=True)
                return
            channel = found
        target, is_forum = channel.id, isinstance(channel, discord.ForumChannel)
        where = Where(target, category_id=channel.category_id)

        def done(s: GuildSettings) -> str:
            text = f"<#{target}>: {MODE_LABELS[s.mode(target)]}."
            if not s.listens(where):
                text += f" Note: the channel lists keep qabot out of <#{target}> (see `/qabot channels`)."
            if mode == EVERY and not self.reads_all_messages:
                text += "\n" + INTENT_OFF
            return text

        await self._change(interaction, lambda s: s.with_mode(target, mode, forum_channel=is_forum), done)

    # ---- /qabot threads ----------------------------------------------------------------------------

    @app_commands.command(name="threads", description="Answer new questions in a thread, or in the channel")
    @app_commands.describe(answer="on: a new thread per question · off: a reply in the channel · default")
    @app_commands.choices(answer=[
        app_commands.Choice(name="on (a thread per question)", value="on"),
        app_commands.Choice(name="off (reply in the channel)", value="off"),
        app_commands.Choice(name="the bot's default", value="default"),
    ])
    async def threads(self, interaction: discord.Interaction, answer: str) -> None:
        if await refuse_unless_manager(interaction, NEEDS_MANAGE_SERVER):
            return
        value = {"on": True, "off": False}.get(answer)
        await self._change(interaction, lambda s: s.with_thread(value), lambda s: "Threads: " + self._threads(s) + ".")

    def _threads(self, s: GuildSettings) -> str:
        on = s.answer_in_thread(self.settings.answer_in_thread)
        text = "on, a new thread per question" if on else "off, answers are replies in the channel"
        return text + (" (the bot's default)" if s.thread is None else "")

    # ---- /qabot ratelimit --------------------------------------------------------------------------

    @app_commands.command(name="ratelimit", description="How many questions a member may ask per window here")
    @app_commands.describe(questions="questions per window (0: no limit)", seconds="the window, in seconds",
                           reset="back to the bot's default")
    async def ratelimit(self, interaction: discord.Interaction,
                        questions: app_commands.Range[int, 0, 100] | None = None,
                        seconds: app_commands.Range[int, 10, 3600] | None = None, reset: bool = False) -> None:
        if await refuse_unless_manager(interaction, NEEDS_MANAGE_SERVER):
            return
        assert interaction.guild_id is not None
        if reset and (questions is not None or seconds is not None):
            await interaction.response.send_message("Give either `reset:` or the new limit, not both.",
                                                    ephemeral=True)
            return
        if not reset and questions is None and seconds is None:  # just show it
            current = await within_window(interaction, self.cache.get(interaction.guild_id))
            await reply(interaction, content="Rate limit: " + self._rate(current) + ".")
            return
        window = self.settings.rate_window_seconds
        await self._change(
            interaction,
            lambda s: s.with_rate(questions, None if seconds is None else float(seconds), default_window=window),
            lambda s: "Rate limit: " + self._rate(s) + ".")

    def _rate(self, s: GuildSettings) -> str:
        text = describe_rate(*s.rate_limit(self.settings.rate_limit, self.settings.rate_window_seconds))
        return text + (" (the bot's default)" if s.rate is None else "") + "; members with Manage Server are exempt"

    # ---- /qabot settings ---------------------------------------------------------------------------

    @app_commands.command(name="settings", description="Show qabot's settings for this server")
    async def show(self, interaction: discord.Interaction) -> None:
        if await refuse_unless_manager(interaction, NEEDS_MANAGE_SERVER):
            return
        assert interaction.guild_id is not None
        s = await within_window(interaction, self.cache.get(interaction.guild_id))
        await reply(interaction, content=trim(self.describe(s), 2000))

    def describe(self, s: GuildSettings) -> str:
        lines = ["**qabot in this server**", f"**Channels:** answers in {describe_channels(s)}."]
        by_mode = {m: [cid for cid, mm in s.modes.items() if mm == m] for m in (EVERY, FORUM)}
        modes = [f"{MODE_LABELS[m]} in {channel_list(ids)}" for m, ids in by_mode.items() if ids]
        lines.append("**Modes:** " + ("; ".join(modes) + "; mention only elsewhere." if modes
                                      else "mention only, everywhere."))
        lines.append("**Threads:** " + self._threads(s) + ".")
        lines.append("**Rate limit:** " + self._rate(s) + ".")
        if self.reads_all_messages:
            lines.append("**Message Content intent:** on.")
        else:
            lines.append("**Message Content intent:** off: only @mentions, DMs, replies that ping qabot, slash "
                         "commands and new forum posts (by their title) are answered.")
            if by_mode[EVERY]:
                lines.append(INTENT_OFF)
        return "\n".join(lines)


async def setup(bot: QABot) -> None:
    """Extension entry point: QABot.setup_hook loads this module by name."""
    # service is None only under `qabot sync`, which registers the commands and never runs one.
    await bot.add_cog(SettingsCog(bot, cast(QAService, bot.service), bot.settings))
