"""Answering questions on Discord: /ask, mentions, DMs, follow-ups in the bot's answer threads and replies to
its answers.

What the bot shows lives in the index's store (QAService.bot_state), not in this process: every answer is
recorded under its bot message id (question, answer, the passages shown, scope, conversation), so the
buttons under it (dynamic items, matched by custom_id) work forever and after restarts, an answer thread is
recognised after a restart, and a follow-up is answered with the earlier turns of its thread or reply chain."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.cogs.feedback import FORGOTTEN, record_vote
from bot.cogs.help import empty_question_text, help_embed, is_help, known
from bot.failures import SOMETHING_BROKE, report, tell
from bot.guild_settings import FORUM, GuildSettings, Where
from bot.ratelimit import TokenBucket
from bot.render import render_answer, render_sources, to_embed, trim
from bot.sync import owner_command
from embeddings.errors import QabotError, user_message
from embeddings.models import Answer, Turn, guild_scope
from embeddings.service import AnswerRecord, QAService
from embeddings.settings import BotSettings

if TYPE_CHECKING:
    from bot.app import QABot
    from bot.cogs.settings import SettingsCog

log = logging.getLogger(__name__)

THREAD_NAME_MAX = 100
HISTORY_TURNS = 5  # earlier turns of a conversation handed to the answerer
FORGET_EVERY_HOURS = 24  # how often answer records older than QABOT_ANSWER_DAYS are deleted
ASK_MENU = "Ask qabot"  # the message context menu (Apps → Ask qabot)
NO_TEXT = "That message has no text to ask about."
UNREADABLE = ("I can't read the text of the message you replied to (Discord sends it to me only with the "
              f"Message Content intent): use **Apps → {ASK_MENU}** on it instead.")


def rate_notice(retry_after: float) -> str:
    """When the asker may ask again, as a Discord timestamp (shown in their own time zone, counting down)."""
    when = int(time.time() + max(1.0, retry_after))
    return f"You've asked a lot of questions in a short time; you can ask again <t:{when}:R>."


# ---- the buttons under an answer ---------------------------------------------------------------------

ACTIONS = ("sources", "vote:up", "vote:down")


class AnswerButton(discord.ui.DynamicItem[discord.ui.Button], template=r"qabot:(?P<action>sources|vote:up|vote:down)"):
    """Sources (the closest passages, privately, to whoever clicks) and thumbs up / down. Matched by
    custom_id, so a click is handled by any bot process at any time; what to show comes from the answer
    record stored under the message id (the custom_ids are those of the earlier, in-memory view)."""

    def __init__(self, action: str, *, style: discord.ButtonStyle = discord.ButtonStyle.secondary,
                 label: str | None = None) -> None:
        emoji = {"vote:up": "\N{THUMBS UP SIGN}", "vote:down": "\N{THUMBS DOWN SIGN}"}.get(action)
        if action == "sources":
            label = "Sources"
        super().__init__(discord.ui.Button(style=style, label=label, emoji=emoji, custom_id=f"qabot:{action}"))
        self.action = action

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,  # type: ignore[override]
                             match: re.Match[str]) -> AnswerButton:
        return cls(match["action"], style=item.style, label=item.label if match["action"] != "sources" else None)

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        cog = cast("AskCog | None", interaction.client.get_cog("AskCog"))  # type: ignore[attr-defined]
        if cog is None:
            return
        await cog.on_button(interaction, self.action)


def answer_view(answer: Answer, with_votes: bool = True) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(AnswerButton("sources"))
    if with_votes:
        view.add_item(AnswerButton("vote:up"))
        view.add_item(AnswerButton("vote:down"))
    return view


@dataclass(frozen=True)
class Route:
    """Why a message is for the bot, and which conversation it continues (None: a new one)."""

    conversation: str | None
    parent: AnswerRecord | None = None  # the answer a reply answers to
    called: bool = False  # a mention or a DM: an empty one gets a hint (an empty follow-up is ignored)


class AskCog(commands.Cog):
    def __init__(self, bot: QABot | commands.Bot, service: QAService, settings: BotSettings) -> None:
        self.bot = bot
        self.service = service
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self.bucket = TokenBucket(settings.rate_limit, settings.rate_window_seconds)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(AnswerButton)
        # A context menu cannot be a cog method: it is built here and added to the tree by hand.
        self.ask_menu = app_commands.ContextMenu(name=ASK_MENU, callback=self.ask_about_message)
        self.bot.tree.add_command(self.ask_menu)
        if self.service is not None and self.settings.answer_days > 0:  # (None: `qabot sync`, no store)
            self.forget_old_answers.start()

    async def cog_unload(self) -> None:
        self.forget_old_answers.cancel()
        self.bot.remove_dynamic_items(AnswerButton)
        self.bot.tree.remove_command(ASK_MENU, type=discord.AppCommandType.message)

    @tasks.loop(hours=FORGET_EVERY_HOURS)
    async def forget_old_answers(self) -> None:
        """At start-up, then daily: the records of answers older than QABOT_ANSWER_DAYS go (a busy server's
        store stays bounded). Their buttons then say so, and a message in their thread is a new question."""
        before = datetime.now(UTC) - timedelta(days=self.settings.answer_days)
        try:
            gone = await self._state("forget_answers", before)
        except Exception:  # noqa: BLE001 - tried again at the next round; answering goes on meanwhile
            log.exception("forgetting answer records older than %g days failed", self.settings.answer_days)
            return
        if gone:
            log.info("forgot %d answer records older than %g days", gone, self.settings.answer_days)

    # ---- core ------------------------------------------------------------------------------------

    async def _state(self, method: str, *args: Any) -> Any:
        """A bot-state call in a worker thread (SQLite / PostgreSQL I/O never blocks the gateway)."""
        state = self.service.bot_state()
        return await asyncio.to_thread(getattr(state, method), *args)

    async def answer(self, question: str, guild_id: int | None, history: list[Turn] | None = None) -> Answer | str:
        """The Answer, or the user-facing text of why there is none. Encoding runs in a worker thread,
        at most ``max_concurrent`` at once, so the gateway heartbeat is never blocked."""
        scope = guild_scope(guild_id)
        try:
            async with self._slots:
                if history:
                    return await asyncio.to_thread(self.service.ask, question, scope=scope, history=history)
                return await asyncio.to_thread(self.service.ask, question, scope=scope)
        except QabotError as exc:
            return user_message(exc)
        except Exception as exc:
            log.exception("answering %r failed", question)
            return user_message(exc)

    async def records(self, conversation: str | None) -> list[AnswerRecord]:
        """The last answers of a conversation, oldest first ([] for a new one)."""
        if conversation is None:
            return []
        return cast("list[AnswerRecord]", await self._state("conversation", conversation, HISTORY_TURNS))

    @staticmethod
    def turns(records: list[AnswerRecord]) -> list[Turn]:
        turns = []
        for r in records:
            try:
                shown = json.loads(r.answer_json).get("passages", [])
            except ValueError:
                shown = []
            turns.append(Turn(question=r.question, answer=r.answer,
                              doc_keys=tuple(dict.fromkeys(p["doc"] for p in shown)),
                              passage_ids=tuple(int(p["passage_id"]) for p in shown)))
        return turns

    def manages(self, message: discord.Message) -> bool:
        """Manage Server (or Administrator) in the message's channel: exempt from the rate limit."""
        author = message.author
        if message.guild is None or not isinstance(author, discord.Member):
            return False
        channel = message.channel
        perms = channel.permissions_for(author) if hasattr(channel, "permissions_for") else author.guild_permissions
        return perms.manage_guild or perms.administrator

    async def rate_limited(self, message: discord.Message, wait: float) -> None:
        """Tell only the asker, briefly: an hourglass on their message, and a reply that deletes itself."""
        try:
            await message.add_reaction("\N{HOURGLASS WITH FLOWING SAND}")
        except discord.HTTPException:
            pass
        notice = await message.reply(rate_notice(wait), mention_author=False)
        if self.settings.notice_seconds:
            await notice.delete(delay=self.settings.notice_seconds)

    async def remember(self, sent: discord.Message, result: Answer | str, *, conversation: str | None,
                       asker_id: int, guild_id: int | None) -> None:
        """Store the record of an answer just shown in ``sent`` (its buttons and follow-ups need it)."""
        if not isinstance(result, Answer):
            return
        record = AnswerRecord(
            message_id=sent.id, channel_id=sent.channel.id, guild_id=guild_id,
            conversation=conversation or f"reply:{sent.id}", asker_id=asker_id, scope=guild_scope(guild_id),
            question=result.question, answer=result.text, answer_json=json.dumps(result.to_json()))
        try:
            await self._state("save_answer", record)
        except Exception:  # noqa: BLE001 - the answer is out; only its buttons will say they forgot it
            log.exception("storing the answer record failed")

    def retry_after(self, user_id: int, *, cost: float = 1.0, exempt: bool = False,
                    gs: GuildSettings | None = None) -> float:
        """Seconds this user must wait before this question (0: ask now; the question is paid for). ``gs``:
        the server's settings, whose own rate limit (/qabot ratelimit) replaces the default."""
        if exempt:
            return 0.0
        if gs is None or gs.rate is None:
            return self.bucket.take(user_id, time.monotonic(), cost)
        capacity, window = gs.rate_limit(self.settings.rate_limit, self.settings.rate_window_seconds)
        return self.bucket.take(user_id, time.monotonic(), cost, capacity=capacity, window=window)

    # ---- the server's settings (/qabot, bot/cogs/settings.py) ------------------------------------------

    async def guild_settings(self, guild_id: int | None) -> GuildSettings:
        """The server's settings (defaults in DMs, or when the settings extension is not loaded)."""
        cog = cast("SettingsCog | None", self.bot.get_cog("SettingsCog"))
        if guild_id is None or cog is None:
            return GuildSettings()
        return await cog.get(guild_id)

    @staticmethod
    def where(channel: Any) -> Where:
        """Where a message or command is, from the cache: a thread counts as its parent channel, a channel
        as its category."""
        if isinstance(channel, discord.Thread):
            parent = channel.parent
            return Where(channel.parent_id, thread_id=channel.id, category_id=getattr(parent, "category_id", None))
        return Where(channel.id, category_id=getattr(channel, "category_id", None))

    async def fetch_where(self, channel: Any) -> Where:
        """``where`` for a channel this process has not cached (a thread it was not told about): asked of
        Discord, since a thread's parent decides whether the lists allow it."""
        if not isinstance(channel, discord.PartialMessageable):
            return self.where(channel)
        try:
            fetched = await self.bot.fetch_channel(channel.id)
        except discord.HTTPException:
            return Where(channel.id)
        return self.where(fetched)

    def _payload(self, result: Answer | str) -> dict[str, Any]:
        if isinstance(result, str):
            return {"content": trim(result, 2000)}
        payload: dict[str, Any] = {"embed": to_embed(render_answer(result))}
        if result.passages:
            payload["view"] = answer_view(result)
        return payload

    # ---- buttons ---------------------------------------------------------------------------------

    async def on_button(self, interaction: discord.Interaction, action: str) -> None:
        try:
            await self._on_button(interaction, action)
        except Exception as exc:  # noqa: BLE001 - dynamic items swallow errors: the clicker must hear of it
            await report(interaction, exc, f"the {action} button")

    async def _on_button(self, interaction: discord.Interaction, action: str) -> None:
        message = interaction.message
        record = await self._state("answer", message.id) if message is not None else None
        if record is None:
            await tell(interaction, FORGOTTEN)
            return
        answer = Answer.from_json(json.loads(record.answer_json))
        if action == "sources":
            await interaction.response.send_message(embed=to_embed(render_sources(answer)), ephemeral=True)
            return
        # 👍 / 👎: the voter's choice shown back privately, 👎's form (bot/cogs/feedback.py).
        await record_vote(interaction, self.service, record, 1 if action == "vote:up" else -1)

    # ---- /ask ------------------------------------------------------------------------------------

    @staticmethod
    async def _refuse_invalid(interaction: discord.Interaction, question: str) -> bool:
        """True (and the reason sent privately) when ``question`` is not one to answer. Checked before the
        defer: only a first response can be private, and a typo should neither be answered in public nor
        count against the rate limit."""
        try:
            QAService.validate_question(question)
        except QabotError as exc:
            await interaction.response.send_message(trim(user_message(exc), 2000), ephemeral=True)
            return True
        return False

    async def _refuse_rate_limited(self, interaction: discord.Interaction, gs: GuildSettings | None = None) -> bool:
        """True (and when to try again sent privately) when the user must wait; Manage Server is exempt.
        ``gs``: the server's settings, as in ``retry_after``."""
        exempt = interaction.guild_id is not None and interaction.permissions.manage_guild
        wait = self.retry_after(interaction.user.id, exempt=exempt, gs=gs)
        if wait:
            await interaction.response.send_message(rate_notice(wait), ephemeral=True)
            return True
        return False

    async def _server_rules(self, interaction: discord.Interaction, private: bool) -> tuple[GuildSettings, bool]:
        """This server's settings, and whether the answer must be private: a command or menu used in a channel
        the server keeps qabot out of (/qabot channels) answers only the one who used it."""
        gs = await self.guild_settings(interaction.guild_id)
        if interaction.guild_id is not None and gs.restricts and interaction.channel is not None \
                and not gs.listens(self.where(interaction.channel)):
            private = True
        return gs, private

    @app_commands.command(name="ask", description="Ask a question about the articles")
    @app_commands.describe(question="What do you want to know?", private="Only you see the answer")
    async def ask(self, interaction: discord.Interaction, question: str, private: bool = False) -> None:
        await self.answer_interaction(interaction, question, private=private)

    async def answer_interaction(self, interaction: discord.Interaction, question: str, *, private: bool,
                                 preface: str | None = None) -> None:
        """/ask and the Ask qabot menu: refuse in private what is not to be answered, then defer (privately
        when asked to or when the server keeps qabot out of this channel), answer, and record the answer."""
        if await self._refuse_invalid(interaction, question):
            return
        gs, private = await self._server_rules(interaction, private)
        if await self._refuse_rate_limited(interaction, gs):
            return
        await interaction.response.defer(thinking=True, ephemeral=private)
        result = await self.answer(question, interaction.guild_id)
        if isinstance(result, str):
            await tell(interaction, result)
            return
        payload = self._payload(result)
        if preface:
            payload["content"] = preface
        sent = await interaction.followup.send(**payload, wait=True, ephemeral=private)
        await self.remember(sent, result, conversation=None, asker_id=interaction.user.id,
                            guild_id=interaction.guild_id)

    # ---- Apps → Ask qabot ----------------------------------------------------------------------------

    async def ask_about_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Someone else's message as the question. Discord sends the message with the interaction, text
        included, so this works without the Message Content intent."""
        question = self._question(message)
        if not question:
            await interaction.response.send_message(NO_TEXT, ephemeral=True)
            return
        await self.answer_interaction(interaction, question, private=False, preface=f"About {message.jump_url}")

    # ---- messages --------------------------------------------------------------------------------

    async def route(self, message: discord.Message) -> Route | None:
        """None when the message is not for the bot. Otherwise which conversation it continues: an answer
        thread (the bot owns it, or an answer is recorded in it), or the chain of a bot answer it replies to."""
        me = self.bot.user
        channel = message.channel
        ref = message.reference
        if ref is not None and ref.message_id is not None and me is not None:
            resolved = ref.resolved
            if not isinstance(resolved, discord.Message) or resolved.author.id == me.id:
                parent: AnswerRecord | None = await self._state("answer", ref.message_id)
                if parent is not None:
                    return Route(parent.conversation, parent)
        if isinstance(channel, discord.Thread):
            if me is not None and channel.owner_id == me.id:
                return Route(f"thread:{channel.id}")
        elif isinstance(channel, discord.PartialMessageable) and message.guild is not None:
            # A thread this process has not seen (not in its cache): the store knows if it is an answer thread.
            if await self._state("conversation", f"thread:{channel.id}", 1):
                return Route(f"thread:{channel.id}")
        if message.guild is None:
            return Route(None, called=True)
        if me is not None and any(u.id == me.id for u in message.mentions):
            return Route(None, called=True)
        return None

    def _question(self, message: discord.Message) -> str:
        text = message.content
        me = self.bot.user
        if me is not None:
            text = re.sub(rf"<@!?{me.id}>", " ", text)
        return " ".join(text.split())

    async def _replied_question(self, message: discord.Message) -> tuple[str, str]:
        """(question, "") from the message ``message`` replies to, or ("", why there is none to ask)."""
        ref = message.reference
        assert ref is not None
        replied = ref.resolved
        if replied is None and ref.message_id is not None and ref.channel_id == message.channel.id:
            try:  # Discord left the reference unresolved: fetch it
                replied = await message.channel.fetch_message(ref.message_id)
            except discord.HTTPException as exc:
                log.info("could not fetch the replied-to message %s: %s", ref.message_id, exc)
        me = self.bot.user
        if not isinstance(replied, discord.Message) or (me is not None and replied.author.id == me.id):
            return "", ""  # deleted, not found, or the bot's own message: the usual hint
        question = self._question(replied)
        if question:
            return question, ""
        return "", NO_TEXT if self.bot.intents.message_content else UNREADABLE

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:
            return
        try:
            await self.on_question(message)
        except Exception:  # noqa: BLE001 - the asker hears of it once, in reply, instead of silence
            log.exception("answering message %s failed", message.id)
            try:
                await message.reply(SOMETHING_BROKE, mention_author=False)
            except discord.HTTPException:
                pass

    async def on_question(self, message: discord.Message) -> None:
        gs = await self.guild_settings(message.guild.id if message.guild else None)
        route = await self.route(message)
        unprompted = route is None  # not addressed to the bot: a question only by this server's /qabot mode
        if unprompted and not gs.modes:
            return  # not for the bot, and no channel of this server answers un-mentioned messages
        # A forum post's starter message has the post's (the thread's) id.
        forum_post = message.guild is not None and message.id == message.channel.id and FORUM in gs.modes.values()
        where = None
        if message.guild is not None and (gs.restricts or gs.modes):
            # Only an uncached thread's parent is asked of Discord, and only when it matters.
            need_parent = gs.restricts or forum_post
            where = await self.fetch_where(message.channel) if need_parent else self.where(message.channel)
            if not gs.listens(where):
                return  # the server keeps qabot out of this channel (/qabot channels)
        if route is None:
            if where is None or not gs.answers_unmentioned(where, forum_post=forum_post):
                return
            route = Route(None)  # every message here, or each new forum post
        else:
            forum_post = False
        question = self._question(message)
        if not question and route.called and route.parent is None and message.reference is not None:
            # A bare @qabot in a reply to someone's message: that message is the question.
            question, why = await self._replied_question(message)
            if why:
                await message.reply(why, mention_author=False)
                return
        if not question and forum_post:
            # Without the Message Content intent a post's text arrives empty; its title is the question.
            question = " ".join(getattr(message.channel, "name", "").split())
        if not question and not route.called:
            return  # e.g. an image in an answer thread, or no Message Content intent: nothing to answer
        if not question or (is_help(question) and not unprompted):
            # `@qabot` alone: a hint; `@qabot help`: the help (cogs/help.py)
            k = await asyncio.to_thread(known, self.service, message.guild.id if message.guild else None)
            if question:
                await message.reply(embed=to_embed(help_embed(k, in_guild=message.guild is not None)),
                                    mention_author=False)
            else:
                await message.reply(empty_question_text(k), mention_author=False)
            return
        if not unprompted and await owner_command(self.bot, message, question):
            return
        conversation = route.conversation
        guild_id = message.guild.id if message.guild else None
        records = await self.records(conversation)
        own = conversation is not None and conversation.startswith("thread:") and any(
            r.asker_id == message.author.id for r in records)
        wait = self.retry_after(message.author.id, cost=self.settings.follow_up_cost if own else 1.0,
                                exempt=self.manages(message), gs=gs)
        if wait:
            await self.rate_limited(message, wait)
            return
        target: discord.abc.Messageable = message.channel
        in_new_thread = False
        in_thread = gs.answer_in_thread(self.settings.answer_in_thread)
        if conversation is None and in_thread and isinstance(message.channel, discord.TextChannel):
            try:
                thread = await message.create_thread(name=trim(question, THREAD_NAME_MAX))
            except discord.HTTPException as exc:  # no permission, or threads unavailable: reply inline
                log.warning("could not create a thread: %s", exc)
            else:
                target, in_new_thread, conversation = thread, True, f"thread:{thread.id}"
        turns = self.turns(records) if conversation == route.conversation else []
        async with target.typing():
            result = await self.answer(question, guild_id, turns)
        if in_new_thread:
            sent = await target.send(**self._payload(result))
        else:
            sent = await message.reply(**self._payload(result), mention_author=False)
        await self.remember(sent, result, conversation=conversation, asker_id=message.author.id, guild_id=guild_id)


async def setup(bot: QABot) -> None:
    """Extension entry point: QABot.setup_hook loads this module by name."""
    # service is None only under `qabot sync`, which registers the commands and never runs one.
    await bot.add_cog(AskCog(bot, cast(QAService, bot.service), bot.settings))
