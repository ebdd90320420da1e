"""Every setting from the environment, read here and only here: QABOT_* variables (and DISCORD_TOKEN), from
os.environ or a mapping (the CLI loads .env first). Everything else receives values: the core a Settings, the
Discord bot a BotSettings. No discord import: the bot's options are plain values like the core's."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from embeddings.encoders.base import DEFAULT_BACKEND, DEFAULT_MODEL, runtime_of
from embeddings.errors import InputError, QabotError
from embeddings.store.urls import is_pg_url


def default_home() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("qabot", appauthor=False)) / "index"


def _int(env: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{key}={raw!r} is not a whole number") from None
    return max(lo, min(hi, value))


def _url_list(env: Mapping[str, str], key: str) -> tuple[str, ...]:
    """A comma-separated list of URLs. A comma separates only before a new `scheme://`, so a libpq
    multi-host URL (postgresql://h1:5432,h2:5432/db) stays whole."""
    raw = env.get(key) or ""
    return tuple(u.strip() for u in re.split(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)", raw) if u.strip())


@dataclass(frozen=True)
class Settings:
    """Process settings, all from QABOT_* environment variables (and .env, loaded by the CLI)."""

    home: Path
    embed_model: str = DEFAULT_MODEL
    top_k: int = 5
    torch_threads: int = 0  # 0: torch's default (one per core)
    # QABOT_ENCODER_BACKEND: torch, openvino-int8 or onnx-int8; None when not set. Unset, an existing index is
    # read and written with the backend it records (an index built with torch before onnx-int8 became the
    # default keeps working, unchanged) and a new one is built with DEFAULT_BACKEND. Set, it is used as is:
    # writing to an index built with another backend is refused with a `qabot reindex` hint.
    encoder_backend: str | None = None
    encoder_cache: Path | None = None  # QABOT_ENCODER_CACHE: where int8 copies are built (None: user cache dir)
    # QABOT_STORE: a postgresql:// URL puts the index in PostgreSQL (embeddings/store/factory.py); empty: `home`.
    store: str = ""
    # QABOT_STORE_READ: read-only replicas of that PostgreSQL primary (postgresql:// URLs, comma separated):
    # answers read from them, writes stay on QABOT_STORE. Empty: everything on QABOT_STORE.
    store_read: tuple[str, ...] = ()

    @property
    def location(self) -> str:
        """The store these settings name: the QABOT_STORE URL, else the directory QABOT_HOME."""
        return self.store if is_pg_url(self.store) else str(self.home)

    def backend_for(self, recorded: str | None) -> str:
        """The encoder backend to run: QABOT_ENCODER_BACKEND when set, else the one the index records
        (`recorded`; None: no index yet), else DEFAULT_BACKEND."""
        if self.encoder_backend:
            return self.encoder_backend
        if recorded and recorded != "hashing":
            return runtime_of(recorded)  # an older int8 build's index runs today's build (writes: reindex)
        return DEFAULT_BACKEND

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = env.get("QABOT_HOME")
        store = (env.get("QABOT_STORE") or "").strip()
        store_read = _url_list(env, "QABOT_STORE_READ")
        if store_read:
            if not is_pg_url(store):
                raise InputError("QABOT_STORE_READ names read replicas, but QABOT_STORE is not a postgresql:// "
                                 "URL: replicas are for the PostgreSQL store only (set QABOT_STORE to the primary).")
        return cls(
            home=Path(home).expanduser() if home else default_home(),
            embed_model=env.get("QABOT_EMBED_MODEL") or DEFAULT_MODEL,
            top_k=_int(env, "QABOT_TOP_K", 5, 1, 20),
            torch_threads=_int(env, "QABOT_TORCH_THREADS", 0, 0, 256),
            encoder_backend=(env.get("QABOT_ENCODER_BACKEND") or "").strip().lower() or None,
            encoder_cache=Path(cache).expanduser() if (cache := (env.get("QABOT_ENCODER_CACHE") or "").strip()) else None,
            store=store,
            store_read=store_read,
        )


# ---- the Discord bot ------------------------------------------------------------------------------

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


MESSAGE_CONTENT_CHOICES = ("auto", "on", "off")


def _message_content(env: Mapping[str, str]) -> str:
    raw = (env.get("QABOT_MESSAGE_CONTENT") or "").strip().lower()
    if not raw or raw == "auto":
        return "auto"
    if raw in _TRUE:
        return "on"
    if raw in _FALSE:
        return "off"
    raise InputError(f"QABOT_MESSAGE_CONTENT={env['QABOT_MESSAGE_CONTENT']!r}: use auto, on or off")


@dataclass(frozen=True)
class BotSettings:
    token: str | None = None
    answer_in_thread: bool = True
    # The per-user rate limit: a token bucket of rate_limit questions refilled over rate_window_seconds
    # (0: no limit). A follow-up in one's own answer thread costs follow_up_cost; Manage Server members are exempt.
    rate_limit: int = 5
    rate_window_seconds: float = 60.0
    follow_up_cost: float = 0.5
    notice_seconds: float = 8.0  # how long a rate-limit notice under a mention stays before deleting itself
    max_concurrent: int = 2
    guild_ready_timeout: float = 2.0
    max_upload_mb: float = 2.0  # /ingest file: attachments over this are refused before download
    # Answer records (for old answers' buttons and thread follow-ups) are forgotten after this many days, so
    # the store stays bounded on a busy server; 0 keeps them for ever.
    answer_days: float = 180.0
    # QABOT_MESSAGE_CONTENT: ask Discord for the privileged Message Content intent. "auto": ask, and start
    # without it if the application may not have it; "on": refuse to start without it; "off": never ask.
    message_content: str = "auto"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BotSettings:
        env = os.environ if env is None else env
        return cls(
            token=(env.get("DISCORD_TOKEN") or "").strip() or None,
            answer_in_thread=_bool(env, "QABOT_ANSWER_IN_THREAD", True),
            rate_limit=int(_number(env, "QABOT_RATE_LIMIT", 5, 0, int)),
            rate_window_seconds=_number(env, "QABOT_RATE_WINDOW_SECONDS", 60.0, 1.0),
            follow_up_cost=_number(env, "QABOT_FOLLOW_UP_COST", 0.5, 0.0),
            notice_seconds=_number(env, "QABOT_NOTICE_SECONDS", 8.0, 0.0),
            max_concurrent=int(_number(env, "QABOT_MAX_CONCURRENT", 2, 1, int)),
            guild_ready_timeout=_number(env, "QABOT_GUILD_READY_TIMEOUT", 2.0, 0.0),
            max_upload_mb=_number(env, "QABOT_MAX_UPLOAD_MB", 2.0, 0.001),
            answer_days=_number(env, "QABOT_ANSWER_DAYS", 180.0, 0.0),
            message_content=_message_content(env),
        )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def require_token(self) -> str:
        """The token, or a QabotError saying how to get one (only running the bot needs it)."""
        if not self.token:
            raise QabotError(TOKEN_HOWTO)
        return self.token
