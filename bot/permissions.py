"""Who may change a server's articles and settings: members with Manage Server (or Administrator), checked in
code from ``interaction.permissions`` (what Discord computed for the member in this channel), because
``default_permissions`` only hides a command in the client and any server admin can change it. Used by
/ingest and /forget (bot/cogs/admin.py), **Add to qabot's articles** (bot/cogs/learn.py) and /qabot
(bot/cogs/settings.py)."""

from __future__ import annotations

import discord

GUILD_ONLY = "This command works in a server, not in direct messages."


def can_manage(interaction: discord.Interaction) -> bool:
    """Manage Server (or Administrator) in this guild, from the permissions Discord sent with the interaction."""
    if interaction.guild_id is None:
        return False
    perms = interaction.permissions
    return perms.manage_guild or perms.administrator


async def refuse_unless_manager(interaction: discord.Interaction, refusal: str) -> bool:
    """True (and a private reply sent) when the member may not do this: ``GUILD_ONLY`` outside a server,
    ``refusal`` (the command's own "needs Manage Server" text) for a member without the permission."""
    if interaction.guild_id is None:
        await interaction.response.send_message(GUILD_ONLY, ephemeral=True)
        return True
    if not can_manage(interaction):
        await interaction.response.send_message(refusal, ephemeral=True)
        return True
    return False
