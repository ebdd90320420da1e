"""Help and onboarding: /help (private), `@qabot help`, the setup message when the bot joins a server, and
/articles, what it knows in this server (paginated; the page buttons are dynamic items, so they work after
restarts).

Examples and listings come from this server's own articles first (its scope), then the shared corpus
(BASE_SCOPE): a server sees how to ask about what it actually has, not one hard-coded seed question. Article
titles are untrusted text and are escaped."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.failures import report
from bot.render import NO_ARTICLES, escape_markdown, to_embed, trim
from bot.respond import reply, within_window
from embeddings.models import BASE_SCOPE, guild_scope
from embeddings.service import DocumentRow, QAService

if TYPE_CHECKING:
    from bot.app import QABot

log = logging.getLogger(__name__)

EXAMPLES = 3
EXAMPLE_TITLE_CHARS = 70
PAGE_SIZE = 10
HELP_WORDS = frozenset({"help", "/help", "?"})
COLOUR = 0x5865F2

# What the bot needs in a server (the invite URL asks for these; docs/discord.md, section 1).
NEEDED_PERMISSIONS = (
    ("send_messages", "Send Messages"),
    ("send_messages_in_threads", "Send Messages in Threads"),
    ("create_public_threads", "Create Public Threads"),
    ("embed_links", "Embed Links"),
    ("read_message_history", "Read Message History"),
    ("add_reactions", "Add Reactions"),
)


def is_help(text: str) -> bool:
    """`@qabot help` (any case, trailing punctuation allowed): the help, not a question."""
    return " ".join(text.split()).casefold().rstrip("!.") in HELP_WORDS


@dataclass(frozen=True)
class Known:
    """The articles a server sees: its own, then the shared ones (as the store lists them)."""

    own: list[DocumentRow]
    shared: list[DocumentRow]

    @property
    def all(self) -> list[DocumentRow]:
        return self.own + self.shared


def known(service: QAService, guild_id: int | None) -> Known:
    """Store reads: call in a worker thread."""
    own = service.documents(guild_scope(guild_id)) if guild_id is not None else []
    return Known(own=list(reversed(own)), shared=service.documents(BASE_SCOPE))  # a server's newest first


def example_questions(k: Known, n: int = EXAMPLES) -> list[str]:
    """Questions about this server's articles (its own first), escaped for Discord markdown."""
    titles = dict.fromkeys(" ".join(d.title.split()) for d in k.all if d.title.strip())
    return [f"what is “{escape_markdown(trim(t, EXAMPLE_TITLE_CHARS))}” about?" for t in list(titles)[:n]]


def empty_question_text(k: Known) -> str:
    """The reply to a mention with no question: an example from this server's articles."""
    examples = example_questions(k, 1)
    if not examples:
        return f"{NO_ARTICLES} `@qabot help` shows how I work."
    return f"Ask me a question about the articles, e.g. @qabot {examples[0]} (`@qabot help` shows how I work.)"


def help_embed(k: Known, *, in_guild: bool) -> dict[str, Any]:
    examples = example_questions(k)
    ask = ("Mention me with a question: `@qabot why …?`, or use `/ask question:` "
           "(`private: True` answers so only you see it). You can also DM me. To ask about someone's message: "
           "**Apps → Ask qabot** on it, or reply to it with just `@qabot`.")
    follow = ("I answer a mention in a thread: keep asking there, no mention needed, or **reply** to one of "
              "my answers. A follow-up such as “why?” or “when did she die?” is read in the light of the "
              "earlier questions (the answer says how it read it).")
    buttons = ("**Sources**: the passages closest to your question, only for you. "
               "**👍 / 👎**: was the answer right? Only you see your vote, and you can change it; after a 👎 a "
               "short form asks what was wrong and what the right answer is (both optional).")
    know = (f"`/articles` lists the {len(k.all)} articles I know here"
            + (f" ({len(k.own)} added to this server)" if in_guild else "") + "; `/stats` counts them.")
    fields = [
        {"name": "Ask", "value": ask, "inline": False},
        {"name": "Follow-ups", "value": follow, "inline": False},
        {"name": "Buttons under an answer", "value": buttons, "inline": False},
        {"name": "What I know", "value": know, "inline": False},
    ]
    if examples:
        fields.append({"name": "Try asking", "value": trim("\n".join(f"• @qabot {q}" for q in examples), 1024),
                       "inline": False})
    if in_guild:
        fields.append({"name": "For members with Manage Server", "value": (
            "`/ingest url:` or `/ingest file:` adds an article for this server only; `/ingest thread:` a "
            "thread or forum post, `/ingest pins:` a channel's pinned messages (run it again after edits); "
            "**Apps → Add to qabot's articles** on a message adds it. `/forget document:` removes one. "
            "Other servers never see this server's articles. `/qabot` chooses where and how I answer here "
            "(channels, every message or new forum posts, threads, the rate limit; `/qabot settings` shows "
            "them)."), "inline": False})
    return {"title": "How to use qabot", "color": COLOUR, "fields": fields,
            "description": ("I answer questions from articles, citing where each answer comes from. When "
                            "they don't hold the answer, I say so and name the closest articles.")}


# ---- /articles ----------------------------------------------------------------------------------------


def source_label(source: str) -> str:
    """Where a document came from, safe to show: a link's address, an upload's name, a file's name (never the
    bot host's directories)."""
    if source.startswith(("http://", "https://")):
        return source
    if source.startswith("upload:"):
        return f"uploaded file {source.removeprefix('upload:')}"
    return PurePath(source).name or source


def article_line(n: int, d: DocumentRow, *, own: bool) -> str:
    # Escaped, then trimmed (trim never leaves half an escape): each line stays under ~400 characters, so a
    # page of ten is within the 4,096 of an embed description.
    title = trim(escape_markdown(" ".join((d.title or source_label(d.source)).split())), 100)
    src = source_label(d.source)
    if src.startswith(("http://", "https://")) and len(src) <= 180 and not re.search(r"[\s()<>]", src):
        head = f"[{title.replace('[', '(').replace(']', ')')}]({src})"
    else:
        head = f"**{title}** · {trim(escape_markdown(src), 60)}"
    date = f"published {d.published}" if d.published else f"added {d.ingested_at[:10]}"
    tags = [trim(escape_markdown(d.outlet), 40)] if d.outlet else []
    tags.append(trim(escape_markdown(date), 40))
    if own:
        tags.append("this server")
    return f"{n}. {head} · {' · '.join(tags)}"


def pages(k: Known) -> int:
    return max(1, -(-len(k.all) // PAGE_SIZE))


def articles_page(k: Known, page: int) -> tuple[dict[str, Any], int]:
    """The embed of one page (clamped to the pages there are now) and that page's number."""
    page = max(0, min(page, pages(k) - 1))
    docs = k.all[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
    own_keys = {d.doc_key for d in k.own}
    lines = [article_line(page * PAGE_SIZE + i + 1, d, own=d.doc_key in own_keys) for i, d in enumerate(docs)]
    footer = f"Page {page + 1}/{pages(k)} · {len(k.all)} articles ({len(k.own)} of this server, {len(k.shared)} shared)"
    embed = {"title": "Articles qabot knows here", "color": COLOUR,
             "description": trim("\n".join(lines), 4096) if lines else
             "No articles yet. A member with **Manage Server** can add some with `/ingest`.",
             "footer": {"text": footer}}
    return embed, page


class ArticlesPage(discord.ui.DynamicItem[discord.ui.Button],
                   template=r"qabot:articles:(?P<dir>prev|next):(?P<page>\d+)"):
    """Previous / Next under /articles. The target page is in the custom_id; the list is read again at each
    click (articles may have been added or removed meanwhile)."""

    def __init__(self, direction: str, page: int, *, disabled: bool = False) -> None:
        super().__init__(discord.ui.Button(
            style=discord.ButtonStyle.secondary, label="Previous" if direction == "prev" else "Next",
            disabled=disabled, custom_id=f"qabot:articles:{direction}:{page}"))
        self.page = page

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,  # type: ignore[override]
                             match: re.Match[str]) -> ArticlesPage:
        return cls(match["dir"], int(match["page"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        service = cast(QAService, cast("QABot", interaction.client).service)
        try:
            k = await within_window(interaction, asyncio.to_thread(known, service, interaction.guild_id), update=True)
            embed, page = articles_page(k, self.page)
            await reply(interaction, update=True, embed=to_embed(embed), view=articles_view(k, page))
        except Exception as exc:  # noqa: BLE001 - dynamic items swallow errors: the clicker must hear of it
            await report(interaction, exc, "the articles page button")


def articles_view(k: Known, page: int) -> discord.ui.View | None:
    last = pages(k) - 1
    if last == 0:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(ArticlesPage("prev", max(page - 1, 0), disabled=page == 0))
    view.add_item(ArticlesPage("next", min(page + 1, last), disabled=page == last))
    return view


# ---- joining a server ------------------------------------------------------------------------------------


def setup_channel(guild: discord.Guild) -> discord.TextChannel | None:
    """Where to say hello: the system channel, else the first text channel the bot may write in."""
    me = guild.me
    if me is None:
        return None
    candidates = ([guild.system_channel] if guild.system_channel else []) + sorted(
        guild.text_channels, key=lambda c: (c.position, c.id))
    for channel in candidates:
        perms = channel.permissions_for(me)
        if perms.view_channel and perms.send_messages:
            return channel
    return None


def missing_permissions(guild: discord.Guild) -> list[str]:
    me = guild.me
    perms = me.guild_permissions if me is not None else discord.Permissions.none()
    if perms.administrator:
        return []
    return [label for attr, label in NEEDED_PERMISSIONS if not getattr(perms, attr)]


def setup_text(missing: list[str]) -> str:
    lines = [
        "Hello! I'm **qabot**: I answer questions from articles and cite where each answer comes from.",
        "• **Ask**: mention me with a question (`@qabot why …?`) or use `/ask`. `/help` shows everything.",
        "• **Add this server's articles** (Manage Server): `/ingest url:` with a link, or `/ingest file:` with "
        "a .txt, .md or .html file. `/articles` lists what I know.",
        "• **Choose where I answer** (Manage Server): `/qabot channels` and `/qabot mode`; `/qabot settings` "
        "shows them.",
    ]
    if missing:
        lines.append("• **I'm missing permissions**: " + ", ".join(f"**{m}**" for m in missing)
                     + ". Give my role them (Server Settings → Roles), or some answers can't be shown.")
    else:
        lines.append("• I have all the permissions I need.")
    lines.append("If `/ask` and `/ingest` don't appear yet, my operator registers them with `qabot sync`.")
    return "\n".join(lines)


class HelpCog(commands.Cog):
    def __init__(self, bot: QABot | commands.Bot, service: QAService) -> None:
        self.bot = bot
        self.service = service

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ArticlesPage)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ArticlesPage)

    async def known(self, interaction: discord.Interaction) -> Known:
        return await within_window(interaction, asyncio.to_thread(known, self.service, interaction.guild_id))

    @app_commands.command(name="help", description="How to use qabot (only you see it)")
    async def help_command(self, interaction: discord.Interaction) -> None:
        k = await self.known(interaction)
        await reply(interaction, embed=to_embed(help_embed(k, in_guild=interaction.guild_id is not None)))

    @app_commands.command(name="articles", description="The articles qabot knows here (only you see it)")
    async def articles(self, interaction: discord.Interaction) -> None:
        k = await self.known(interaction)
        embed, page = articles_page(k, 0)
        view = articles_view(k, page)
        await reply(interaction, embed=to_embed(embed), view=view if view is not None else discord.utils.MISSING)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        channel = setup_channel(guild)
        missing = missing_permissions(guild)
        if channel is None:
            log.warning("joined %s (%s) but can write in none of its channels; missing: %s", guild.name, guild.id,
                        ", ".join(missing) or "nothing server-wide")
            return
        try:
            await channel.send(setup_text(missing))
        except discord.HTTPException as exc:
            log.warning("could not send the setup message in %s: %s", guild.id, exc)


async def setup(bot: QABot) -> None:
    """Extension entry point: QABot.setup_hook loads this module by name."""
    # service is None only under `qabot sync`, which registers the commands and never runs one.
    await bot.add_cog(HelpCog(bot, cast(QAService, bot.service)))
