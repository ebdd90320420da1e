"""Settings of the Discord bot, from DISCORD_TOKEN and QABOT_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from embeddings.errors import InputError, QabotError

TOKEN_HOWTO = (
    "DISCORD_TOKEN is not set. Create a bot at https://discord.com/developers/applications "
    "(your app → Bot → Reset Token), then put DISCORD_TOKEN=... in the environment or in .env."
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = (env.get(key) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise InputError(f"{key}={env[key]!r} is not true or false")


def _number(env: Mapping[str, str], key: str, default: float, lo: float, kind: type = float) -> float:
    raw = (env.get(key) or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise InputError(f"{key}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
    if value < lo:
        raise InputError(f"{key} must be at least {lo}, got {raw}")
    return value


@dataclass(frozen=True)
class BotSettings:
    token: str | None = None
    answer_in_thread: bool = True
    cooldown_seconds: float = 10.0
    max_concurrent: int = 2
    guild_ready_timeout: float = 2.0
    max_upload_mb: float = 2.0  # /ingest file: attachments over this are refused before download

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BotSettings:
        env = os.environ if env is None else env
        return cls(
            token=(env.get("DISCORD_TOKEN") or "").strip() or None,
            answer_in_thread=_bool(env, "QABOT_ANSWER_IN_THREAD", True),
            cooldown_seconds=_number(env, "QABOT_COOLDOWN_SECONDS", 10.0, 0.0),
            max_concurrent=int(_number(env, "QABOT_MAX_CONCURRENT", 2, 1, int)),
            guild_ready_timeout=_number(env, "QABOT_GUILD_READY_TIMEOUT", 2.0, 0.0),
            max_upload_mb=_number(env, "QABOT_MAX_UPLOAD_MB", 2.0, 0.001),
        )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def require_token(self) -> str:
        """The token, or a QabotError saying how to get one (only running the bot needs it)."""
        if not self.token:
            raise QabotError(TOKEN_HOWTO)
        return self.token
