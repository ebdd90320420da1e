"""Answering questions on Discord: /ask, mentions, DMs and follow-ups in the bot's answer threads."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.render import render_answer, render_sources, to_embed, trim
from bot.sync import owner_command
from embeddings.errors import QabotError, user_message
from embeddings.models import Answer, guild_scope
from embeddings.service import QAService
from embeddings.settings import BotSettings

if TYPE_CHECKING:
    from bot.app import QABot

log = logging.getLogger(__name__)

THREAD_NAME_MAX = 100
EMPTY_QUESTION = "Ask me a question about the articles, e.g. `@qabot why did Egypt cut ties with Iran?`"


def cooldown_notice(retry_after: float) -> str:
    return f"Please wait {max(1, round(retry_after))} s before asking another question."


class SourcesView(discord.ui.View):
    """Under an answer: "Sources" (the closest passages, privately, to whoever clicks) and thumbs up /
    down (stored via QAService.record_feedback; a second vote by the same user replaces the first)."""

    def __init__(self, answer: Answer, service: QAService | None = None, timeout: float = 900.0) -> None:
        super().__init__(timeout=timeout)
        self.answer = answer
        self.service = service
        if service is None:  # nothing to store votes in: Sources only
            self.remove_item(self.vote_up)
            self.remove_item(self.vote_down)

    @discord.ui.button(label="Sources", style=discord.ButtonStyle.secondary, custom_id="qabot:sources")
    async def sources(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.send_message(embed=to_embed(render_sources(self.answer)), ephemeral=True)

    @discord.ui.button(emoji="\N{THUMBS UP SIGN}", style=discord.ButtonStyle.secondary, custom_id="qabot:vote:up")
    async def vote_up(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._vote(interaction, 1)

    @discord.ui.button(emoji="\N{THUMBS DOWN SIGN}", style=discord.ButtonStyle.secondary,
                       custom_id="qabot:vote:down")
    async def vote_down(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._vote(interaction, -1)

    async def _vote(self, interaction: discord.Interaction, vote: int) -> None:
        assert self.service is not None
        key = str(interaction.message.id if interaction.message is not None else interaction.id)
        try:
            replaced = await asyncio.to_thread(
                self.service.record_feedback, answer_key=key, user_id=interaction.user.id, answer=self.answer,
                vote=vote, scope=guild_scope(interaction.guild_id))
        except Exception as exc:  # noqa: BLE001 - the reader gets a message either way
            log.exception("storing feedback failed")
            await interaction.response.send_message(trim(user_message(exc), 2000), ephemeral=True)
            return
        await interaction.response.send_message(feedback_thanks(vote, replaced), ephemeral=True)


def feedback_thanks(vote: int, replaced: bool) -> str:
    thumb = "\N{THUMBS UP SIGN}" if vote > 0 else "\N{THUMBS DOWN SIGN}"
    return f"Thanks, your vote is now {thumb}." if replaced else f"Thanks for the {thumb}, it helps improve qabot."


class AskCog(commands.Cog):
    def __init__(self, bot: QABot | commands.Bot, service: QAService, settings: BotSettings) -> None:
        self.bot = bot
        self.service = service
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._last_ask: dict[int, float] = {}
        self.answer_threads: set[int] = set()  # threads the bot created for an answer

    # ---- core ------------------------------------------------------------------------------------

    async def answer(self, question: str, guild_id: int | None) -> Answer | str:
        """The Answer, or the user-facing text of why there is none. Encoding runs in a worker thread,
        at most ``max_concurrent`` at once, so the gateway heartbeat is never blocked."""
        scope = guild_scope(guild_id)
        try:
            async with self._slots:
                return await asyncio.to_thread(self.service.ask, question, scope=scope)
        except QabotError as exc:
            return user_message(exc)
        except Exception as exc:
            log.exception("answering %r failed", question)
            return user_message(exc)

    def retry_after(self, user_id: int) -> float:
        """Seconds this user must still wait (0: may ask now, and the clock restarts)."""
        now = time.monotonic()
        last = self._last_ask.get(user_id)
        if last is not None and now - last < self.settings.cooldown_seconds:
            return self.settings.cooldown_seconds - (now - last)
        self._last_ask[user_id] = now
        return 0.0

    def _payload(self, result: Answer | str) -> dict[str, Any]:
        if isinstance(result, str):
            return {"content": trim(result, 2000)}
        payload: dict[str, Any] = {"embed": to_embed(render_answer(result))}
        if result.passages:
            payload["view"] = SourcesView(result, self.service)
        return payload

    # ---- /ask ------------------------------------------------------------------------------------

    @app_commands.command(name="ask", description="Ask a question about the articles")
    @app_commands.describe(question="What do you want to know?")
    async def ask(self, interaction: discord.Interaction, question: str) -> None:
        try:
            # Checked before the defer: only a first response can be private, and a typo should neither be
            # answered in public nor cost the user their cooldown.
            QAService.validate_question(question)
        except QabotError as exc:
            await interaction.response.send_message(trim(user_message(exc), 2000), ephemeral=True)
            return
        wait = self.retry_after(interaction.user.id)
        if wait:
            await interaction.response.send_message(cooldown_notice(wait), ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        result = await self.answer(question, interaction.guild_id)
        if isinstance(result, str):
            await interaction.followup.send(trim(result, 2000), ephemeral=True)
        else:
            await interaction.followup.send(**self._payload(result))

    # ---- messages --------------------------------------------------------------------------------

    def _addressed(self, message: discord.Message) -> bool:
        me = self.bot.user
        if message.guild is None:
            return True
        if message.channel.id in self.answer_threads:
            return True
        return me is not None and any(u.id == me.id for u in message.mentions)

    def _question(self, message: discord.Message) -> str:
        text = message.content
        me = self.bot.user
        if me is not None:
            text = re.sub(rf"<@!?{me.id}>", " ", text)
        return " ".join(text.split())

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not self._addressed(message):
            return
        question = self._question(message)
        if not question:
            await message.reply(EMPTY_QUESTION, mention_author=False)
            return
        if await owner_command(self.bot, message, question):
            return
        wait = self.retry_after(message.author.id)
        if wait:
            await message.reply(cooldown_notice(wait), mention_author=False)
            return
        target: discord.abc.Messageable = message.channel
        in_new_thread = False
        if self.settings.answer_in_thread and isinstance(message.channel, discord.TextChannel):
            try:
                thread = await message.create_thread(name=trim(question, THREAD_NAME_MAX))
            except discord.HTTPException as exc:  # no permission, or threads unavailable: reply inline
                log.warning("could not create a thread: %s", exc)
            else:
                self.answer_threads.add(thread.id)
                target, in_new_thread = thread, True
        async with target.typing():
            result = await self.answer(question, message.guild.id if message.guild else None)
        if in_new_thread:
            await target.send(**self._payload(result))
        else:
            await message.reply(**self._payload(result), mention_author=False)


async def setup(bot: QABot) -> None:
    """Extension entry point: QABot.setup_hook loads this module by name."""
    # service is None only under `qabot sync`, which registers the commands and never runs one.
    await bot.add_cog(AskCog(bot, cast(QAService, bot.service), bot.settings))
