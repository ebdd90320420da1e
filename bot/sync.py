"""Registering the slash commands with Discord: on demand (`qabot sync`, or the owner's `@qabot sync`), never
on every start, because Discord rate-limits it. No cog imports this module's callers: both cogs and the app
import it."""

from __future__ import annotations

import discord
from discord.ext import commands

from bot.render import trim


async def sync_tree(bot: commands.Bot, guild_id: int | None = None) -> list[str]:
    """Sync the slash commands globally, or to one guild (copied there, shown at once). Returns their names."""
    if guild_id is None:
        synced = await bot.tree.sync()
    else:
        guild = discord.Object(id=guild_id)
        bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
    return [c.name for c in synced]


async def owner_command(bot: commands.Bot, message: discord.Message, text: str) -> bool:
    """`@qabot sync` (global) or `@qabot sync here` (this server) from the application's owner.
    Returns True when the message was such a command (anyone else's "sync" is just a question)."""
    words = text.lower().split()
    if not words or words[0] != "sync" or words[1:] not in ([], ["here"]):
        return False
    if not await bot.is_owner(message.author):
        return False
    here = words[1:] == ["here"]
    if here and message.guild is None:
        await message.reply("`sync here` works in a server; `sync` alone syncs globally.", mention_author=False)
        return True
    try:
        names = await sync_tree(bot, message.guild.id if here and message.guild else None)
    except discord.HTTPException as exc:
        await message.reply(f"Sync failed: {trim(str(exc), 1800)}", mention_author=False)
        return True
    where = "to this server" if here else "globally"
    await message.reply(f"Synced {len(names)} commands {where}: {', '.join('/' + n for n in names)}",
                        mention_author=False)
    return True
