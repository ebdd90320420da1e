"""The Discord client: a commands.Bot with the QAService and BotSettings injected (no globals). The cogs are
extensions loaded by name in setup_hook; this module never imports them (they import it, for typing only)."""

from __future__ import annotations

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
EXTENSIONS = ("bot.cogs.ask", "bot.cogs.admin", "bot.cogs.learn", "bot.cogs.help", "bot.cogs.feedback")

BAD_TOKEN = (
    "Discord rejected the token (DISCORD_TOKEN). Copy a fresh one from "
    "https://discord.com/developers/applications (your app → Bot → Reset Token)."
)
NEEDS_MESSAGE_CONTENT = (
    "Discord refused the Message Content intent, which qabot needs to read questions in channels. "
    "Enable it at https://discord.com/developers/applications (your app → Bot → Privileged Gateway "
    "Intents → Message Content Intent), then start qabot again. Slash commands (/ask) work without it."
)


def bot_intents() -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


class QABot(commands.Bot):
    def __init__(self, service: QAService | None, settings: BotSettings) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=bot_intents(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=settings.guild_ready_timeout,
        )
        self.service = service
        self.settings = settings

    async def setup_hook(self) -> None:
        # One-time setup (on_ready fires again after reconnects). The command tree is not synced here:
        # syncing is rate limited, so it is done on demand.
        for name in EXTENSIONS:
            await self.load_extension(name)
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

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
    """Run until closed. Discord's refusals become QabotErrors a user can act on."""
    token = settings.require_token()
    bot = QABot(service, settings)
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure as exc:
        raise QabotError(BAD_TOKEN) from exc
    except discord.PrivilegedIntentsRequired as exc:
        raise QabotError(NEEDS_MESSAGE_CONTENT) from exc


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
