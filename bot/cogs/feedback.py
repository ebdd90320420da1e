"""Feedback on an answer: 👍 / 👎, the reader's choice shown back to them, and after a 👎 a form ("What was
wrong?" / "What is the right answer?", both optional) whose text is stored with the vote.

Why a private confirmation instead of recolouring the answer's buttons: an answer in a channel is public and
several people may vote on it, each differently. Its buttons are shared by all of them, so they stay as
they are; each voter gets an ephemeral message of their own showing *their* vote as chosen (a disabled,
coloured button), with a button to change it and, after a 👎, one to (re)write what was wrong.

Nothing here lives in process memory: the buttons are dynamic items whose custom_id carries the answer's
message id, and the form is matched by its custom_id in an ``on_interaction`` listener (discord.py's own
modal dispatch only knows modals this process opened), so a form opened before a restart is still stored
after it. What to store comes from the answer record in the index's store (QAService.bot_state)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import TYPE_CHECKING, Any, cast

import discord
from discord.ext import commands

from bot import respond
from bot.failures import report, tell
from bot.respond import reply, within_window
from embeddings.models import Answer
from embeddings.service import CORRECTION_CHARS, AnswerRecord, Correction, QAService

if TYPE_CHECKING:
    from bot.app import QABot

log = logging.getLogger(__name__)

UP, DOWN = "\N{THUMBS UP SIGN}", "\N{THUMBS DOWN SIGN}"
FORM_ID = re.compile(r"qabot:fixform:(?P<answer>\d+)")
FORM_TITLE = "What was wrong with this answer?"
FORGOTTEN = "I no longer have the record of this answer; please ask the question again."


def thanks(vote: int, replaced: bool, *, wrote: bool = False) -> str:
    thumb = UP if vote > 0 else DOWN
    if wrote:
        return f"Thanks, your vote is {thumb} and what you wrote is kept with it; it helps improve qabot."
    return f"Thanks, your vote is now {thumb}." if replaced else f"Thanks for the {thumb}, it helps improve qabot."


def choice_view(answer_id: int, vote: int) -> discord.ui.View:
    """The voter's own vote shown as chosen (coloured, disabled), the other thumb to change it, and after a
    👎 a button to say what was wrong."""
    view = discord.ui.View(timeout=None)
    view.add_item(VoteChoice(answer_id, 1, chosen=vote > 0))
    view.add_item(VoteChoice(answer_id, -1, chosen=vote < 0))
    if vote < 0:
        view.add_item(FixButton(answer_id))
    return view


class CorrectionForm(discord.ui.Modal):
    """The 👎 form. Its submission is handled by FeedbackCog.on_interaction, by custom_id, in any process."""

    wrong: discord.ui.TextInput[CorrectionForm] = discord.ui.TextInput(
        label="What was wrong?", custom_id="wrong", style=discord.TextStyle.paragraph, required=False,
        max_length=CORRECTION_CHARS, placeholder="e.g. it quotes the wrong article, or the date is wrong")
    right: discord.ui.TextInput[CorrectionForm] = discord.ui.TextInput(
        label="What is the right answer?", custom_id="right", style=discord.TextStyle.paragraph,
        required=False, max_length=CORRECTION_CHARS, placeholder="optional")

    def __init__(self, answer_id: int) -> None:
        super().__init__(title=FORM_TITLE, custom_id=f"qabot:fixform:{answer_id}", timeout=900)


async def _record(interaction: discord.Interaction, service: QAService, answer_id: int) -> AnswerRecord | None:
    record = await asyncio.to_thread(service.bot_state().answer, answer_id)
    if record is None:
        await tell(interaction, FORGOTTEN)
    return cast("AnswerRecord | None", record)


async def _store(service: QAService, record: AnswerRecord, user_id: int, vote: int,
                 correction: Correction | None = None) -> bool:
    answer = Answer.from_json(json.loads(record.answer_json))
    return await asyncio.to_thread(
        service.record_feedback, answer_key=str(record.message_id), user_id=user_id, answer=answer, vote=vote,
        scope=record.scope, correction=correction)


async def record_vote(interaction: discord.Interaction, service: QAService, record: AnswerRecord, vote: int) -> None:
    """A thumb clicked under an answer (or on a voter's confirmation): store it, then 👍 -> the private
    confirmation; 👎 -> the form (the vote is stored first, so dismissing the form loses nothing)."""
    if vote < 0:
        # A form must be the first response and cannot follow a defer: if the store is slow, the form opens
        # within Discord's window anyway and the vote is stored while the reader types.
        stored = asyncio.ensure_future(_store(service, record, interaction.user.id, vote))
        await asyncio.wait({stored}, timeout=respond.DEFER_AFTER)
        if stored.done():
            stored.result()  # a failure is told instead of the form
        await interaction.response.send_modal(CorrectionForm(record.message_id))
        await stored
        return
    on_confirmation = _on_confirmation(interaction, record.message_id)
    replaced = await within_window(interaction, _store(service, record, interaction.user.id, vote),
                                   update=on_confirmation)
    await reply(interaction, update=on_confirmation, content=thanks(vote, replaced),
                view=choice_view(record.message_id, vote))


def _on_confirmation(interaction: discord.Interaction, answer_id: int) -> bool:
    """The interaction came from the voter's private confirmation (not from the public answer itself)."""
    return interaction.message is not None and interaction.message.id != answer_id


class VoteChoice(discord.ui.DynamicItem[discord.ui.Button],
                 template=r"qabot:myvote:(?P<answer>\d+):(?P<vote>up|down)"):
    """A thumb on a voter's private confirmation: the chosen one disabled and coloured, the other changes it."""

    def __init__(self, answer_id: int, vote: int, *, chosen: bool = False) -> None:
        style = (discord.ButtonStyle.success if vote > 0 else discord.ButtonStyle.danger) if chosen \
            else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(
            style=style, emoji=UP if vote > 0 else DOWN, label="Your vote" if chosen else "Change my vote",
            disabled=chosen, custom_id=f"qabot:myvote:{answer_id}:{'up' if vote > 0 else 'down'}"))
        self.answer_id, self.vote = answer_id, vote

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,  # type: ignore[override]
                             match: re.Match[str]) -> VoteChoice:
        return cls(int(match["answer"]), 1 if match["vote"] == "up" else -1)

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        service = cast("QABot", interaction.client).service
        try:
            record = await _record(interaction, cast(QAService, service), self.answer_id)
            if record is not None:
                await record_vote(interaction, cast(QAService, service), record, self.vote)
        except Exception as exc:  # noqa: BLE001 - dynamic items swallow errors: the clicker must hear of it
            await report(interaction, exc, "the vote button")


class FixButton(discord.ui.DynamicItem[discord.ui.Button], template=r"qabot:fix:(?P<answer>\d+)"):
    """On a 👎 confirmation: open the form again (what was written before is replaced)."""

    def __init__(self, answer_id: int) -> None:
        super().__init__(discord.ui.Button(style=discord.ButtonStyle.secondary, label="Say what was wrong",
                                           custom_id=f"qabot:fix:{answer_id}"))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,  # type: ignore[override]
                             match: re.Match[str]) -> FixButton:
        return cls(int(match["answer"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        try:
            await interaction.response.send_modal(CorrectionForm(self.answer_id))
        except Exception as exc:  # noqa: BLE001
            await report(interaction, exc, "the correction button")


def form_values(data: dict[str, Any]) -> dict[str, str]:
    """Text input values of a MODAL_SUBMIT by custom_id, whether Discord nested them in action rows or labels."""
    out: dict[str, str] = {}
    for comp in data.get("components") or []:
        inputs = list(comp.get("components") or []) + ([comp["component"]] if comp.get("component") else [])
        for inp in inputs:
            if inp.get("custom_id") is not None:
                out[str(inp["custom_id"])] = str(inp.get("value") or "")
    return out


class FeedbackCog(commands.Cog):
    def __init__(self, bot: QABot | commands.Bot, service: QAService) -> None:
        self.bot = bot
        self.service = service

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(VoteChoice, FixButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(VoteChoice, FixButton)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data = cast("dict[str, Any]", interaction.data or {})
        match = FORM_ID.fullmatch(str(data.get("custom_id", "")))
        if match is None:
            return
        try:
            await self.on_form(interaction, int(match["answer"]), form_values(data))
        except Exception as exc:  # noqa: BLE001 - the submitter hears of it, privately
            await report(interaction, exc, "the correction form")

    async def on_form(self, interaction: discord.Interaction, answer_id: int, values: dict[str, str]) -> None:
        record = await _record(interaction, self.service, answer_id)
        if record is None:
            return
        correction = Correction(wrong=values.get("wrong", ""), right=values.get("right", ""))
        # An empty form says nothing new: it keeps what this reader wrote before (the form opens empty).
        on_confirmation = _on_confirmation(interaction, answer_id)  # opened from it: update it in place
        await within_window(interaction, _store(self.service, record, interaction.user.id, -1,
                                                correction if correction else None), update=on_confirmation)
        await reply(interaction, update=on_confirmation, content=thanks(-1, False, wrote=bool(correction)),
                    view=choice_view(answer_id, -1))


async def setup(bot: QABot) -> None:
    """Extension entry point: QABot.setup_hook loads this module by name."""
    # service is None only under `qabot sync`, which registers the commands and never runs one.
    await bot.add_cog(FeedbackCog(bot, cast(QAService, bot.service)))
