"""The Discord client: a commands.Bot with the QAService and BotSettings injected (no globals). The cogs are
extensions loaded by name in setup_hook; this module never imports them (they import it, for typing only)."""

from __future__ import annotations

import asyncio
import gc
import logging

import discord
from discord.ext import commands

from bot.failures import report
from bot.sync import sync_tree
from embeddings.errors import QabotError
from embeddings.service import QAService
from embeddings.settings import BotSettings

log = logging.getLogger(__name__)

# The cogs, as extensions: each module has its setup(bot), which reads bot.service and bot.settings.
EXTENSIONS = ("bot.cogs.ask", "bot.cogs.admin", "bot.cogs.learn", "bot.cogs.help", "bot.cogs.feedback",
              "bot.cogs.settings")

BAD_TOKEN = (
    "Discord rejected the token (DISCORD_TOKEN). Copy a fresh one from "
    "https://discord.com/developers/applications (your app → Bot → Reset Token)."
)
ENABLE_MESSAGE_CONTENT = (
    "Enable it at https://discord.com/developers/applications (your app → Bot → Privileged Gateway "
    "Intents → Message Content Intent), then start qabot again."
)
NEEDS_MESSAGE_CONTENT = (  # QABOT_MESSAGE_CONTENT=on, and Discord refused it
    "Discord refused the Message Content intent, which QABOT_MESSAGE_CONTENT=on requires. "
    + ENABLE_MESSAGE_CONTENT + " Set QABOT_MESSAGE_CONTENT=auto to start without it: slash commands (/ask), "
    "@mentions and DMs work without it."
)
WITHOUT_MESSAGE_CONTENT = (  # logged once at start-up when running without the intent
    "Running without the Message Content intent: qabot answers @mentions, DMs, replies that ping it, slash "
    "commands and context menus, but not un-mentioned follow-ups (messages in its answer threads, replies "
    "that do not ping it) nor channels in the 'every message' mode. " + ENABLE_MESSAGE_CONTENT
)


def bot_intents(message_content: bool = True) -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = message_content
    return intents


class QABot(commands.Bot):
    def __init__(self, service: QAService | None, settings: BotSettings, *,
                 message_content: bool | None = None) -> None:
        """``message_content``: whether to ask for the Message Content intent (None: unless
        QABOT_MESSAGE_CONTENT=off). Without it, ``self.intents.message_content`` is False."""
        if message_content is None:
            message_content = settings.message_content != "off"
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=bot_intents(message_content),
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=settings.guild_ready_timeout,
        )
        self.service = service
        self.settings = settings

    async def setup_hook(self) -> None:
        # One-time setup (on_ready fires again after reconnects). The command tree is not synced here:
        # syncing is rate limited, so it is done on demand.
        if self.service is not None:
            # Opened here, off the event loop, before any cog runs: the handlers reach it as
            # service.bot_state() on the loop, where a first open would block the gateway while another
            # process holds the store's write lock.
            await asyncio.to_thread(self.service.bot_state)
        for name in EXTENSIONS:
            await self.load_extension(name)
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]
        if self.service is not None and not self.intents.message_content:
            log.warning(WITHOUT_MESSAGE_CONTENT)

    async def on_app_command_error(self, interaction: discord.Interaction,
                                   error: discord.app_commands.AppCommandError) -> None:
        """Any slash command or context menu that raised: one private message to its user (bot/failures.py)."""
        name = interaction.command.name if interaction.command is not None else "a command"
        await report(interaction, error, f"/{name}")

    async def on_message(self, message: discord.Message) -> None:
        # No prefix commands: AskCog's listener handles messages, so don't parse them as commands.
        return


def freeze_startup_heap() -> None:
    """Take everything allocated at start-up (torch, transformers, the model, the index) out of the cyclic
    garbage collector's reach. Otherwise a full collection set off by a burst of questions walks all of it
    while holding the GIL: measured 180-194 ms of event-loop stall at 50 simultaneous questions, 7 ms frozen."""
    gc.collect()
    gc.freeze()


async def run_bot(service: QAService, settings: BotSettings) -> None:
    """Run until closed. Discord's refusals become QabotErrors a user can act on. When Discord refuses the
    Message Content intent (gateway close 4014) and QABOT_MESSAGE_CONTENT is auto, start again without it."""
    token = settings.require_token()
    try:
        try:
            await _start(QABot(service, settings), token)
        except discord.PrivilegedIntentsRequired as exc:
            if settings.message_content != "auto":
                raise QabotError(NEEDS_MESSAGE_CONTENT) from exc
            log.info("Discord refused the Message Content intent; starting again without it")
            await _start(QABot(service, settings, message_content=False), token)
    except discord.LoginFailure as exc:
        raise QabotError(BAD_TOKEN) from exc


async def _start(bot: QABot, token: str) -> None:
    async with bot:
        await bot.start(token)


async def sync_commands(settings: BotSettings, guild_id: int | None = None) -> list[str]:
    """`qabot sync`: log in over REST only (no gateway, no index), sync the slash commands, log out.
    Returns the synced command names."""
    token = settings.require_token()
    bot = QABot(None, settings)  # describing the commands needs no service
    try:
        async with bot:
            await bot.login(token)
            return await sync_tree(bot, guild_id)
    except discord.LoginFailure as exc:
        raise QabotError(BAD_TOKEN) from exc
