"""A loopback fake of Discord (REST API v10 + gateway) that an unmodified discord.py client talks to.

Start it, point discord.py at it (``fake.patch(monkeypatch)``), log a real ``discord.Client`` /
``commands.Bot`` in with any token, then push gateway events and assert on what the bot sent::

    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)
        await fake.guild_create(GUILD, channels=[CHANNEL])
        async with fake.running(bot):                      # login + connect + wait ready + clean close
            await fake.message_create(f"{fake.bot_mention} hi", channel_id=CHANNEL)
            req = await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages")

What it mimics (each piece is documented where it is implemented):
- gateway: HELLO, heartbeat ACKs, IDENTIFY -> READY (+ GUILD_CREATE for known guilds), RESUME -> RESUMED,
  member chunk requests, close 4014 for disallowed privileged intents, close 4004 for a bad token,
  blank content of guild messages that don't mention the bot when the Message Content intent is off,
  intent filtering of MESSAGE_CREATE, abnormal drops (``drop_connection``);
- REST: messages, typing, threads, DMs, interaction callbacks (3 s deadline, acknowledged twice),
  followups (``wait``, first followup after a defer fills the "thinking" message), webhook message
  edits, command sync, Discord's 50035 "Invalid Form Body" validation, 50006 empty message,
  injected 429s with the ``Via`` header discord.py requires, JSON bodies typed exactly
  ``application/json`` (discord.py parses nothing else).

Everything is recorded: ``requests`` (REST), ``gateway_received`` (ops the client sent),
``dispatched`` (events the fake pushed), ``messages`` (message objects as Discord would store them,
including resolved mentions, so a test can assert nobody was pinged).

Pitfalls:
- build bots with a small ``guild_ready_timeout`` (0.05), else every start waits 2 s for guilds;
- ``running()`` waits for the fake's READY before ``wait_until_ready()`` and closes the client before
  the fake closes; if you drive ``login``/``connect`` yourself, do the same and ``close()`` after a 4014;
- the bot's own messages come back as MESSAGE_CREATE (``echo_own_messages``), as on Discord;
- without the GUILD_MEMBERS intent, GUILD_CREATE carries only the bot's member;
- the acknowledgement clock (``interaction_deadline``, 3 s) starts when INTERACTION_CREATE is sent;
- snowflakes the bot sends may be ints (e.g. ``message_reference``); compare with ``int(...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
import yarl
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

API_PREFIX = "/api/v10"
# How long a wait may take before the test fails: a hang detector, not a speed check. 5 s was exceeded by
# a real ingest on a 2-core machine shared with benchmarks (load average 5).
WAIT_SECONDS = 30.0
DISCORD_EPOCH_MS = 1420070400000

# Gateway intents (bit values as Discord defines them).
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1  # privileged
INTENT_GUILD_PRESENCES = 1 << 8  # privileged
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15  # privileged

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_COMPONENTS_V2 = 1 << 15

ALL_PERMISSIONS = 8866461766385663  # discord.Permissions.all() in 2.7
DEFAULT_EVERYONE_PERMISSIONS = 8526149765299440  # general() | text()

# Discord's documented limits, enforced with 400/50035 like the real API.
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER_TEXT = 2048
MAX_AUTHOR_NAME = 256
MAX_EMBED_TOTAL = 6000
MAX_ACTION_ROWS = 5
MAX_ROW_COMPONENTS = 5
MAX_BUTTON_LABEL = 80
MAX_CUSTOM_ID = 100

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_EVERYONE = re.compile(r"@(everyone|here)")


# --------------------------------------------------------------------------------------------------
# Errors and validation (pure functions; usable as an oracle by other tests)
# --------------------------------------------------------------------------------------------------


class DiscordError(Exception):
    """An API error answered as Discord does: ``{"code": ..., "message": ..., ["errors": ...]}``."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None):
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


def _err(code: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}


def _max_len(errors: dict[str, Any], key: str, value: Any, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        errors[key] = _err("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def embed_errors(embed: dict[str, Any]) -> dict[str, Any]:
    """Per-embed limit errors (title 256, description 4096, 25 fields, name 256/value 1024, footer
    2048, author 256), in Discord's nested error shape."""
    errors: dict[str, Any] = {}
    _max_len(errors, "title", embed.get("title"), MAX_EMBED_TITLE)
    _max_len(errors, "description", embed.get("description"), MAX_EMBED_DESCRIPTION)
    fields = embed.get("fields") or []
    if len(fields) > MAX_EMBED_FIELDS:
        errors["fields"] = _err("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBED_FIELDS} or fewer in length.")
    else:
        for i, f in enumerate(fields):
            ferr: dict[str, Any] = {}
            for key, limit in (("name", MAX_FIELD_NAME), ("value", MAX_FIELD_VALUE)):
                if not f.get(key):
                    ferr[key] = _err("BASE_TYPE_REQUIRED", "This field is required")
                _max_len(ferr, key, f.get(key), limit)
            if ferr:
                errors.setdefault("fields", {})[str(i)] = ferr
    footer_err: dict[str, Any] = {}
    _max_len(footer_err, "text", (embed.get("footer") or {}).get("text"), MAX_FOOTER_TEXT)
    if footer_err:
        errors["footer"] = footer_err
    author_err: dict[str, Any] = {}
    _max_len(author_err, "name", (embed.get("author") or {}).get("name"), MAX_AUTHOR_NAME)
    if author_err:
        errors["author"] = author_err
    return errors


def embed_total(embed: dict[str, Any]) -> int:
    """Characters Discord counts towards the 6,000 total: title, description, field names and
    values, footer text and author name."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += sum(len(f.get("name") or "") + len(f.get("value") or "") for f in embed.get("fields") or [])
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    return total


def _component_errors(components: list[dict[str, Any]], v2: bool) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    seen: set[str] = set()

    def check(comp: dict[str, Any], err: dict[str, Any]) -> None:
        cid = comp.get("custom_id")
        if isinstance(cid, str):
            _max_len(err, "custom_id", cid, MAX_CUSTOM_ID)
            if cid in seen:
                err["custom_id"] = _err(
                    "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated"
                )
            seen.add(cid)
        if comp.get("type") == 2:  # button
            _max_len(err, "label", comp.get("label"), MAX_BUTTON_LABEL)
            if comp.get("style") == 5 and not comp.get("url"):
                err["url"] = _err("BASE_TYPE_REQUIRED", "This field is required")
            if comp.get("style") in (1, 2, 3, 4) and not cid:
                err["custom_id"] = _err("BASE_TYPE_REQUIRED", "This field is required")
        for j, child in enumerate(comp.get("components") or []):
            cerr: dict[str, Any] = {}
            check(child, cerr)
            if cerr:
                err.setdefault("components", {})[str(j)] = cerr

    if not v2 and len(components) > MAX_ACTION_ROWS:
        return {
            "_errors": _err("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ACTION_ROWS} or fewer in length.")[
                "_errors"
            ]
        }
    for i, row in enumerate(components):
        rerr: dict[str, Any] = {}
        if not v2:
            if row.get("type") != 1:
                rerr["type"] = _err("UNION_TYPE_CHOICES", "Top-level components must be action rows")
            elif len(row.get("components") or []) > MAX_ROW_COMPONENTS:
                rerr["components"] = _err(
                    "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ROW_COMPONENTS} or fewer in length."
                )
        check(row, rerr)
        if rerr:
            errors[str(i)] = rerr
    return errors


def message_errors(payload: dict[str, Any]) -> dict[str, Any]:
    """All 50035 form errors Discord would report for a message create/edit payload ({} if valid)."""
    errors: dict[str, Any] = {}
    _max_len(errors, "content", payload.get("content"), MAX_CONTENT)
    embeds = payload.get("embeds") or []
    if len(embeds) > MAX_EMBEDS:
        errors["embeds"] = _err("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
    else:
        eerr = {str(i): e for i, e in ((i, embed_errors(em)) for i, em in enumerate(embeds)) if e}
        if sum(embed_total(em) for em in embeds) > MAX_EMBED_TOTAL:
            eerr.update(
                _err("MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}")
            )
        if eerr:
            errors["embeds"] = eerr
    components = payload.get("components") or []
    cerr = _component_errors(components, bool((payload.get("flags") or 0) & FLAG_COMPONENTS_V2))
    if cerr:
        errors["components"] = cerr
    return errors


def check_message(
    payload: dict[str, Any], *, files: list[Any] = (), edit: bool = False, prefix: str = ""
) -> None:
    """Raise what Discord answers for an invalid message: 400/50035 with the form errors, or
    400/50006 "Cannot send an empty message" (creates only)."""
    errors = message_errors(payload)
    if errors:
        raise DiscordError(400, 50035, "Invalid Form Body", {prefix: errors} if prefix else errors)
    empty = not (
        payload.get("content")
        or payload.get("embeds")
        or payload.get("components")
        or files
        or payload.get("sticker_ids")
        or payload.get("poll")
        or payload.get("attachments")
    )
    if not edit and empty:
        raise DiscordError(400, 50006, "Cannot send an empty message")


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One REST request as the fake received it (and what it answered)."""

    method: str
    path: str  # without the /api/v10 prefix, e.g. "/channels/1/messages"
    query: dict[str, str]
    json: Any = None  # JSON body, or the parsed payload_json of a multipart body
    files: list[dict[str, Any]] = field(default_factory=list)  # {name, filename, content_type, data}
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0
    response: Any = None
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class _RateLimit:
    substring: str
    retry_after: float
    method: str | None
    remaining: int
    is_global: bool


@dataclass
class _Interaction:
    """Discord's side of one interaction: its token, deadline and responses."""

    payload: dict[str, Any]
    created: float
    acked: bool = False
    response_type: int | None = None
    original_id: int | None = None
    loading: bool = False
    ephemeral: bool = False
    followup_ids: list[int] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.payload["id"])

    @property
    def type(self) -> int:
        return int(self.payload["type"])


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON body typed exactly ``application/json`` (no charset), as discord.py requires."""
    resp = web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    resp[_DATA_KEY] = data
    return resp


_REC_KEY = web.RequestKey("rec", RecordedRequest)
_DATA_KEY = web.ResponseKey("data", object)


def _no_content() -> web.Response:
    return web.Response(status=204)


# --------------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------------


class FakeDiscord:
    """Loopback Discord. Use as ``async with FakeDiscord() as fake`` (or ``start()`` / ``close()``)."""

    def __init__(
        self,
        *,
        bot_id: int = 987654321098765432,
        bot_name: str = "qabot",
        token: str | None = None,
        allow_message_content: bool = True,
        allow_members: bool = True,
        allow_presences: bool = True,
        heartbeat_interval_ms: int = 1000,
        interaction_deadline: float = 3.0,
        interaction_token_ttl: float = 900.0,
        echo_own_messages: bool = True,
    ) -> None:
        self.bot_id = self.application_id = bot_id
        self.bot_user = self._user_obj(bot_id, bot_name, bot=True)
        self.token = token  # None: any token logs in
        self.allow_message_content = allow_message_content
        self.allow_members = allow_members
        self.allow_presences = allow_presences
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.interaction_deadline = interaction_deadline
        self.interaction_token_ttl = interaction_token_ttl
        self.echo_own_messages = echo_own_messages  # MESSAGE_CREATE for what the bot posts, as Discord does
        self.default_user = self._user_obj(222222222222222222, "alice")

        self.requests: list[RecordedRequest] = []
        self.gateway_received: list[dict[str, Any]] = []
        self.dispatched: list[dict[str, Any]] = []
        self.undelivered: list[dict[str, Any]] = []  # dispatches the client's intents filtered out
        self.identify_payloads: list[dict[str, Any]] = []
        self.resume_payloads: list[dict[str, Any]] = []
        self.close_codes: list[int] = []  # codes the fake closed gateway connections with
        self.guilds: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {
            bot_id: self.bot_user,
            self.default_user_id: self.default_user,
        }
        self.messages: dict[int, dict[str, Any]] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # None = global
        self.interactions: dict[int, _Interaction] = {}
        self.intents: int | None = None
        self.session_id: str | None = None
        self.ready = asyncio.Event()  # set once the first READY (and its GUILD_CREATEs) went out
        self.resumed = asyncio.Event()  # set whenever a RESUME was answered with RESUMED

        self._ids = itertools.count()
        self._seq = 0
        self._ws: web.WebSocketResponse | None = None
        self._sockets: dict[web.WebSocketResponse, web.Request] = {}
        self._live = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._rate_limits: list[_RateLimit] = []
        self._dm_channels: dict[int, int] = {}
        self.pinned_at: dict[int, str] = {}  # message id -> when it was pinned (see "history, pins, threads")
        self._server: TestServer | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gw", self._gateway)
        r = API_PREFIX
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", "/users/@me", self._get_me),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", "/users/{uid}", self._get_user),
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/channels/{cid}", self._get_channel),
            ("POST", "/channels/{cid}/messages", self._create_message),
            ("GET", "/channels/{cid}/messages/{mid}", self._get_message),
            ("PATCH", "/channels/{cid}/messages/{mid}", self._edit_message),
            ("DELETE", "/channels/{cid}/messages/{mid}", self._delete_message),
            ("POST", "/channels/{cid}/typing", self._typing),
            ("PUT", "/channels/{cid}/messages/{mid}/reactions/{emoji}/@me", self._add_reaction),
            ("POST", "/channels/{cid}/messages/{mid}/threads", self._thread_from_message),
            ("POST", "/channels/{cid}/threads", self._thread_without_message),
            ("POST", "/users/@me/channels", self._create_dm),
            ("POST", "/interactions/{iid}/{token}/callback", self._interaction_callback),
            ("POST", "/webhooks/{app}/{token}", self._execute_webhook),
            ("GET", "/webhooks/{app}/{token}/messages/{mid}", self._get_webhook_message),
            ("PATCH", "/webhooks/{app}/{token}/messages/{mid}", self._edit_webhook_message),
            ("DELETE", "/webhooks/{app}/{token}/messages/{mid}", self._delete_webhook_message),
            ("GET", "/applications/{app}/commands", self._get_commands),
            ("PUT", "/applications/{app}/commands", self._put_commands),
            ("POST", "/applications/{app}/commands", self._post_command),
            ("GET", "/applications/{app}/guilds/{gid}/commands", self._get_commands),
            ("PUT", "/applications/{app}/guilds/{gid}/commands", self._put_commands),
            ("POST", "/applications/{app}/guilds/{gid}/commands", self._post_command),
        ]
        routes[:0] = self._history_routes()  # first: /messages/pins must not match /messages/{mid}
        for method, path, handler in routes:
            app.router.add_route(method, r + path, handler)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def close(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001)
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.port is not None, "FakeDiscord not started"
        return self._server.port

    @property
    def rest_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> yarl.URL:
        return yarl.URL(f"ws://127.0.0.1:{self.port}/gw")

    @property
    def bot_mention(self) -> str:
        return f"<@{self.bot_id}>"

    @property
    def default_user_id(self) -> int:
        return int(self.default_user["id"])

    def patch(self, monkeypatch: Any) -> None:
        """Point discord.py's REST base (also used by interaction/webhook calls) and default gateway here."""
        monkeypatch.setattr(discord.http.Route, "BASE", self.rest_base)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", self.gateway_url)

    @contextlib.asynccontextmanager
    async def running(
        self, client: discord.Client, *, token: str = "fake-token", timeout: float = WAIT_SECONDS
    ) -> AsyncIterator[discord.Client]:
        """Log ``client`` in, connect it in a task, wait for the fake's READY and the client's
        ``wait_until_ready``; on exit close the client and await the connect task. Errors raised by
        ``connect`` (e.g. PrivilegedIntentsRequired) surface here instead of waiting for a timeout."""
        await client.login(token)
        task = asyncio.create_task(client.connect(reconnect=True), name="fakediscord-connect")
        try:
            for make_waiter in (self.ready.wait, client.wait_until_ready):
                waiter = asyncio.ensure_future(make_waiter())
                done, _ = await asyncio.wait(
                    {task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if waiter not in done:
                    waiter.cancel()
                    if task in done:
                        task.result()  # raises connect()'s error
                        raise RuntimeError("client.connect() returned before the client was ready")
                    raise TimeoutError("client did not become ready")
            yield client
        finally:
            await client.close()
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not isinstance(exc, discord.ConnectionClosed):
            raise exc

    # ---- waiting helpers ---------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every request / gateway op); return it."""
        async with self._changed:
            return await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_for_request(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        since: int = 0,
        ok: bool | None = None,
        timeout: float = WAIT_SECONDS,
    ) -> RecordedRequest:
        """First request from index ``since`` whose method matches and whose path contains ``path``."""

        def find() -> RecordedRequest | None:
            for rec in self.requests[since:]:
                if rec.status == 0:
                    continue  # still being answered
                if method and rec.method != method.upper():
                    continue
                if path and path not in rec.path:
                    continue
                if ok is not None and rec.ok != ok:
                    continue
                return rec
            return None

        return await self.wait_for(find, timeout)

    async def wait_for_gateway_op(self, op: int, *, since: int = 0, timeout: float = WAIT_SECONDS) -> dict[str, Any]:
        """First gateway payload with this op the client sent (from index ``since``)."""
        return await self.wait_for(
            lambda: next((m for m in self.gateway_received[since:] if m.get("op") == op), None), timeout
        )

    # ---- query helpers -----------------------------------------------------------------------

    def _payloads(self, method: str, pattern: str, include_failed: bool) -> list[dict[str, Any]]:
        rx = re.compile(pattern)
        return [
            r.json or {}
            for r in self.requests
            if r.method == method and rx.fullmatch(r.path) and (include_failed or r.ok)
        ]

    def sent_messages(
        self, channel_id: int | None = None, *, include_failed: bool = False
    ) -> list[dict[str, Any]]:
        """JSON payloads the bot POSTed to ``/channels/{id}/messages`` (payload_json for multipart)."""
        cid = str(channel_id) if channel_id is not None else r"\d+"
        return self._payloads("POST", rf"/channels/{cid}/messages", include_failed)

    def interaction_responses(self, *, include_failed: bool = False) -> list[dict[str, Any]]:
        """Payloads of ``POST /interactions/{id}/{token}/callback`` (``{"type": 5, "data": ...}``)."""
        return self._payloads("POST", r"/interactions/\d+/[^/]+/callback", include_failed)

    def followups(self, *, include_failed: bool = False) -> list[dict[str, Any]]:
        """Payloads of ``POST /webhooks/{app}/{token}`` (interaction followups)."""
        return self._payloads("POST", r"/webhooks/\d+/[^/]+", include_failed)

    def webhook_edits(self, *, include_failed: bool = False) -> list[dict[str, Any]]:
        """Payloads of ``PATCH /webhooks/{app}/{token}/messages/{id|@original}``."""
        return self._payloads("PATCH", r"/webhooks/\d+/[^/]+/messages/[^/]+", include_failed)

    def rate_limit_next(
        self,
        path_substring: str,
        retry_after: float = 0.05,
        *,
        method: str | None = None,
        count: int = 1,
        is_global: bool = False,
    ) -> None:
        """Answer the next ``count`` requests whose path (without /api/v10) contains
        ``path_substring`` with 429 + ``retry_after``, rate-limit headers and ``Via: 1.1 google``."""
        self._rate_limits.append(
            _RateLimit(path_substring, retry_after, method and method.upper(), count, is_global)
        )

    # ---- object builders ---------------------------------------------------------------------

    def snowflake(self) -> int:
        """A fresh, increasing snowflake whose timestamp part is now."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    @staticmethod
    def _user_obj(user_id: int, name: str | None = None, *, bot: bool = False) -> dict[str, Any]:
        user = {
            "id": str(user_id),
            "username": name or f"user{user_id}",
            "global_name": None,
            "discriminator": "0",
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
        }
        if bot:
            user["bot"] = True
            user["discriminator"] = "0001"
        return user

    def user(self, user: int | dict[str, Any] | None = None, name: str | None = None) -> dict[str, Any]:
        """Get or register a user (by id or user object)."""
        if user is None:
            return self.default_user
        if isinstance(user, dict):
            self.users[int(user["id"])] = user
            return user
        return self.users.setdefault(user, self._user_obj(user, name))

    def _member_obj(self, user: dict[str, Any] | None = None, roles: list[int] = ()) -> dict[str, Any]:
        member: dict[str, Any] = {
            "roles": [str(r) for r in roles],
            "joined_at": _now_iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if user is not None:
            member["user"] = user
        return member

    def _channel_obj(
        self, channel: int | dict[str, Any], guild_id: int | None, position: int = 0
    ) -> dict[str, Any]:
        data = channel if isinstance(channel, dict) else {"id": channel}
        cid = int(data["id"])
        obj: dict[str, Any] = {
            "id": str(cid),
            "type": 0 if guild_id else 1,
            "name": f"channel-{cid}",
            "position": position,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "rate_limit_per_user": 0,
            "last_message_id": None,
        }
        if guild_id:
            obj["guild_id"] = str(guild_id)
        obj.update({k: v for k, v in data.items() if k != "id"})
        self.channels[cid] = obj
        return obj

    def _guild_of(self, channel_id: int) -> int | None:
        ch = self.channels.get(channel_id)
        return int(ch["guild_id"]) if ch and ch.get("guild_id") else None

    # ---- gateway -----------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        """One gateway connection: HELLO, then answer the client's ops until it closes."""
        ws = web.WebSocketResponse(max_msg_size=0, compress=False)
        await ws.prepare(request)
        self._sockets[ws] = request
        try:
            await self._send(
                ws, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}
            )
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_op(ws, json.loads(msg.data))
        finally:
            self._sockets.pop(ws, None)
            if self._ws is ws:
                self._ws = None
                self._live.clear()
        return ws

    async def _send(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            await ws.send_str(json.dumps(payload))

    async def _close_ws(self, ws: web.WebSocketResponse, code: int, message: str) -> None:
        self.close_codes.append(code)
        await ws.close(code=code, message=message.encode())

    async def _on_op(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        op, d = payload.get("op"), payload.get("d")
        self.gateway_received.append(payload)
        try:
            if op == 1:  # HEARTBEAT -> HEARTBEAT_ACK
                await self._send(ws, {"op": 11, "d": None, "s": None, "t": None})
            elif op == 2:
                await self._identify(ws, d)
            elif op == 6:
                await self._resume(ws, d)
            elif op == 8:
                await self._request_members(ws, d)
        finally:
            await self._notify()

    async def _identify(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> None:
        """IDENTIFY: 4004 for a wrong token, 4014 for privileged intents the app isn't allowed, else
        READY (guilds listed unavailable) followed by a GUILD_CREATE per known guild."""
        self.identify_payloads.append(d)
        if self.token is not None and d.get("token") != self.token:
            return await self._close_ws(ws, 4004, "Authentication failed.")
        intents = int(d.get("intents", 0))
        disallowed = (
            (intents & INTENT_MESSAGE_CONTENT and not self.allow_message_content)
            or (intents & INTENT_GUILD_MEMBERS and not self.allow_members)
            or (intents & INTENT_GUILD_PRESENCES and not self.allow_presences)
        )
        if disallowed:
            return await self._close_ws(ws, 4014, "Disallowed intent(s).")
        self.intents = intents
        self.session_id = secrets.token_hex(16)
        self._seq = 0
        self._ws = ws
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "session_id": self.session_id,
            "session_type": "normal",
            "resume_gateway_url": str(self.gateway_url),
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "user_settings": {},
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["fake-discord"],
        }
        if "shard" in d:
            ready["shard"] = d["shard"]
        await self._dispatch_now("READY", ready)
        if intents & INTENT_GUILDS:
            for guild in list(self.guilds.values()):
                await self._dispatch_now("GUILD_CREATE", self._guild_for_client(guild))
        self._live.set()
        self.ready.set()

    async def _resume(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> None:
        """RESUME: the known session gets RESUMED (missed events are not replayed); an unknown one
        gets INVALID_SESSION (op 9, not resumable)."""
        self.resume_payloads.append(d)
        if not self.session_id or d.get("session_id") != self.session_id:
            await self._send(ws, {"op": 9, "d": False, "s": None, "t": None})
            return
        self._ws = ws
        await self._dispatch_now("RESUMED", {"_trace": ["fake-discord"]})
        self._live.set()
        self.resumed.set()

    async def _request_members(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> None:
        """REQUEST_GUILD_MEMBERS: one GUILD_MEMBERS_CHUNK with the guild's known members."""
        gid = int(d["guild_id"])
        guild = self.guilds.get(gid, {})
        chunk = {
            "guild_id": str(gid),
            "members": guild.get("members", []),
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if d.get("nonce"):
            chunk["nonce"] = d["nonce"]
        await self._dispatch_now("GUILD_MEMBERS_CHUNK", chunk)

    async def _dispatch_now(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        ws = self._ws
        assert ws is not None
        async with self._send_lock:
            self._seq += 1
            frame = {"op": 0, "t": event, "s": self._seq, "d": data}
            await ws.send_str(json.dumps(frame))
        self.dispatched.append(frame)
        return frame

    def _intent_allows(self, event: str, data: dict[str, Any]) -> bool:
        intents = self.intents or 0
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"):
            return bool(intents & (INTENT_GUILD_MESSAGES if data.get("guild_id") else INTENT_DIRECT_MESSAGES))
        if event.startswith(("GUILD_CREATE", "GUILD_DELETE", "CHANNEL_", "THREAD_")):
            return bool(intents & INTENT_GUILDS)
        return True

    async def dispatch(
        self, event: str, data: dict[str, Any], *, timeout: float = WAIT_SECONDS
    ) -> dict[str, Any] | None:
        """Push a DISPATCH (op 0) with the next sequence number, once a session is live (waits for
        READY/RESUMED). Returns the frame, or None when the client's intents exclude the event (like
        Discord, it's then not sent; it's kept in ``undelivered``)."""
        await asyncio.wait_for(self._live.wait(), timeout)
        if not self._intent_allows(event, data):
            self.undelivered.append({"t": event, "d": data})
            return None
        return await self._dispatch_now(event, data)

    async def drop_connection(self, code: int | None = None) -> None:
        """Kill the live gateway connection: by default abort TCP without a close frame (the client
        sees 1006); with ``code`` close with it (e.g. 4000, resumable). The client should RESUME;
        ``await fake.resumed.wait()`` or ``wait_for_gateway_op(6)`` to observe it."""
        ws = self._ws
        assert ws is not None, "no live gateway connection"
        self._ws = None
        self._live.clear()
        self.resumed.clear()
        if code is None:
            transport = self._sockets[ws].transport
            assert transport is not None
            transport.abort()
        else:
            await self._close_ws(ws, code, "Dropped by FakeDiscord")

    # ---- gateway event helpers ---------------------------------------------------------------

    async def guild_create(
        self,
        guild_id: int,
        *,
        channels: list[int | dict[str, Any]] = (),
        members: list[int | dict[str, Any]] = (),
        name: str | None = None,
        roles: list[dict[str, Any]] = (),
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        bot_permissions: int = ALL_PERMISSIONS,
    ) -> dict[str, Any]:
        """Register a guild (text channels by id or as channel dicts; members by user id or user
        object). Sent as GUILD_CREATE right after READY, or now if a session is live."""
        bot_role = {
            "id": str(guild_id + 1),
            "name": self.bot_user["username"],
            "permissions": str(bot_permissions),
            "position": 1,
            "color": 0,
            "hoist": False,
            "managed": True,
            "mentionable": False,
            "flags": 0,
            "tags": {"bot_id": str(self.bot_id)},
        }
        everyone = {
            "id": str(guild_id),
            "name": "@everyone",
            "permissions": str(everyone_permissions),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        member_objs = [self._member_obj(self.bot_user, roles=[guild_id + 1])]
        member_objs += [self._member_obj(self.user(m)) for m in members]
        guild = {
            "id": str(guild_id),
            "name": name or f"guild-{guild_id}",
            "icon": None,
            "owner_id": str(self.default_user_id),
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [everyone, bot_role, *roles],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "system_channel_id": None,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": _now_iso(),
            "large": False,
            "unavailable": False,
            "member_count": len(member_objs),
            "members": member_objs,
            "channels": [self._channel_obj(c, guild_id, i) for i, c in enumerate(channels)],
            "threads": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }
        self.guilds[guild_id] = guild
        if self._live.is_set():
            await self.dispatch("GUILD_CREATE", self._guild_for_client(guild))
        return guild

    def _guild_for_client(self, guild: dict[str, Any]) -> dict[str, Any]:
        """GUILD_CREATE as the client gets it: with the guild's active (unarchived) threads, as Discord sends
        them after every (re)connect; without the GUILD_MEMBERS intent, only the bot's own member."""
        threads = [
            t for t in self.channels.values()
            if t.get("type") in (10, 11, 12) and t.get("guild_id") == guild["id"]
            and not t.get("thread_metadata", {}).get("archived")
        ]
        guild = {**guild, "threads": threads}
        if (self.intents or 0) & INTENT_GUILD_MEMBERS:
            return guild
        return {**guild, "members": [m for m in guild["members"] if int(m["user"]["id"]) == self.bot_id]}

    def _resolve_mentions(self, content: str, allowed: dict[str, Any] | None) -> dict[str, Any]:
        """Who a message pings, computed from its content the way Discord does, filtered by
        ``allowed_mentions`` (absent = parse everything)."""
        parse = {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse") or [])
        users = [int(u) for u in _USER_MENTION.findall(content)]
        roles = [int(r) for r in _ROLE_MENTION.findall(content)]
        if allowed is not None:
            explicit_users = {int(u) for u in allowed.get("users") or []}
            explicit_roles = {int(r) for r in allowed.get("roles") or []}
            users = [u for u in users if "users" in parse or u in explicit_users]
            roles = [r for r in roles if "roles" in parse or r in explicit_roles]
        return {
            "mention_everyone": bool(_EVERYONE.search(content)) and "everyone" in parse,
            "mentions": [self.user(u) for u in dict.fromkeys(users)],
            "mention_roles": [str(r) for r in dict.fromkeys(roles)],
        }

    async def message_create(
        self,
        content: str,
        *,
        channel_id: int,
        guild_id: int | None = None,
        author: int | dict[str, Any] | None = None,
        reply_to: int | None = None,
        mention_author: bool = True,
        embeds: list[dict[str, Any]] = (),
        attachments: list[dict[str, Any]] = (),
        message_id: int | None = None,
        resolve_reference: bool = True,
    ) -> dict[str, Any] | None:
        """A user posts a message: push a realistic MESSAGE_CREATE (mentions parsed from the content,
        member for guild messages, reply reference). Guild is taken from the channel if known; an
        unknown channel without ``guild_id`` is a DM. Without the Message Content intent, content,
        embeds and attachments arrive blank unless it's a DM or the bot is mentioned. Returns the
        delivered payload (None if the client's intents filter it out)."""
        author_obj = self.user(author)
        guild_id = guild_id or self._guild_of(channel_id)
        if channel_id not in self.channels:
            self._channel_obj(channel_id, guild_id)
        mentions = self._resolve_mentions(content, None)
        msg: dict[str, Any] = {
            "id": str(message_id or self.snowflake()),
            "channel_id": str(channel_id),
            "author": author_obj,
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            **mentions,
            "mention_channels": [],
            "attachments": list(attachments),
            "embeds": list(embeds),
            "components": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        if reply_to is not None:
            ref = self.messages.get(reply_to)
            msg["type"] = 19
            msg["message_reference"] = {"type": 0, "message_id": str(reply_to), "channel_id": str(channel_id)}
            if guild_id:
                msg["message_reference"]["guild_id"] = str(guild_id)
            if ref is not None and resolve_reference:  # Discord may leave it out (then the bot fetches it)
                msg["referenced_message"] = ref
                if mention_author and ref["author"]["id"] not in {u["id"] for u in msg["mentions"]}:
                    msg["mentions"].append(ref["author"])
        if guild_id:
            msg["guild_id"] = str(guild_id)
            msg["member"] = self._member_obj()
        self.messages[int(msg["id"])] = msg
        delivered = dict(msg)
        bot_mentioned = any(int(u["id"]) == self.bot_id for u in msg["mentions"])
        is_bot = int(author_obj["id"]) == self.bot_id
        if guild_id and not (self.intents or 0) & INTENT_MESSAGE_CONTENT and not bot_mentioned and not is_bot:
            delivered.update(content="", embeds=[], attachments=[], components=[])
        if isinstance(delivered.get("referenced_message"), dict):  # the replied-to message follows the same rule
            delivered["referenced_message"] = self._as_read(delivered["referenced_message"])
        frame = await self.dispatch("MESSAGE_CREATE", delivered)
        return delivered if frame else None

    def _interaction_payload(
        self,
        itype: int,
        data: dict[str, Any] | None,
        *,
        channel_id: int,
        guild_id: int | None,
        user: int | dict[str, Any] | None,
        permissions: int,
        app_permissions: int,
        message: dict[str, Any] | None = None,
        locale: str = "en-US",
    ) -> dict[str, Any]:
        user_obj = self.user(user)
        guild_id = guild_id or self._guild_of(channel_id)
        channel = self.channels.get(channel_id) or self._channel_obj(channel_id, guild_id)
        payload: dict[str, Any] = {
            "id": str(self.snowflake()),
            "application_id": str(self.application_id),
            "type": itype,
            "token": "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48).replace("-", "a").replace("_", "b"),
            "version": 1,
            "channel_id": str(channel_id),
            "channel": {**channel, "permissions": str(permissions)},
            "app_permissions": str(app_permissions),
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if data is not None:
            payload["data"] = data
        if message is not None:
            payload["message"] = message
        if guild_id:
            payload["guild_id"] = str(guild_id)
            payload["guild"] = {"id": str(guild_id), "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["member"] = {**self._member_obj(user_obj), "permissions": str(permissions)}
            payload["authorizing_integration_owners"] = {"0": str(guild_id)}
            payload["context"] = 0
        else:
            payload["user"] = user_obj
            payload["authorizing_integration_owners"] = {"1": user_obj["id"]}
            payload["context"] = 1
        return payload

    async def interaction_create(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Push INTERACTION_CREATE and start its 3 s acknowledgement clock."""
        self.interactions[int(payload["id"])] = _Interaction(payload=payload, created=time.monotonic())
        await self.dispatch("INTERACTION_CREATE", payload)
        # The clock starts when the event is sent, as Discord's does.
        self.interactions[int(payload["id"])].created = time.monotonic()
        return payload

    @staticmethod
    def _options(
        options: dict[str, Any] | list[dict[str, Any]] | None, focused: str | None
    ) -> list[dict[str, Any]]:
        if options is None:
            return []
        if isinstance(options, list):
            return options
        out = []
        for name, value in options.items():
            otype = (
                5
                if isinstance(value, bool)
                else 4
                if isinstance(value, int)
                else 10
                if isinstance(value, float)
                else 3
            )
            opt: dict[str, Any] = {"name": name, "type": otype, "value": value}
            if name == focused:
                opt["focused"] = True
            out.append(opt)
        return out

    def _command_id(self, name: str, guild_id: int | None) -> str:
        for scope in (guild_id, None):
            for cmd in self.commands.get(scope, []):
                if cmd["name"] == name:
                    return cmd["id"]
        return str(self.snowflake())

    async def slash_command(
        self,
        name: str,
        options: dict[str, Any] | list[dict[str, Any]] | None = None,
        *,
        channel_id: int,
        guild_id: int | None = None,
        user: int | dict[str, Any] | None = None,
        permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        app_permissions: int = ALL_PERMISSIONS,
        resolved: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A user runs ``/name`` (interaction type 2, chat-input command type 1). ``options`` as
        ``{name: value}`` (types inferred: str 3, int 4, bool 5, float 10) or raw option dicts."""
        guild_id = guild_id or self._guild_of(channel_id)
        data: dict[str, Any] = {
            "id": self._command_id(name, guild_id),
            "name": name,
            "type": 1,
            "options": self._options(options, None),
        }
        if resolved:
            data["resolved"] = resolved
        return await self.interaction_create(
            self._interaction_payload(
                2,
                data,
                channel_id=channel_id,
                guild_id=guild_id,
                user=user,
                permissions=permissions,
                app_permissions=app_permissions,
            )
        )

    async def autocomplete(
        self,
        name: str,
        options: dict[str, Any],
        focused: str,
        *,
        channel_id: int,
        guild_id: int | None = None,
        user: int | dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A user types into option ``focused`` of ``/name`` (interaction type 4)."""
        guild_id = guild_id or self._guild_of(channel_id)
        data = {
            "id": self._command_id(name, guild_id),
            "name": name,
            "type": 1,
            "options": self._options(options, focused),
        }
        return await self.interaction_create(
            self._interaction_payload(
                4,
                data,
                channel_id=channel_id,
                guild_id=guild_id,
                user=user,
                permissions=DEFAULT_EVERYONE_PERMISSIONS,
                app_permissions=ALL_PERMISSIONS,
            )
        )

    async def component_click(
        self,
        message_id: int,
        custom_id: str,
        *,
        component_type: int = 2,
        values: list[str] | None = None,
        user: int | dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A user clicks a button (or picks ``values`` in a select) on a message the bot sent
        (interaction type 3, with the full message as Discord includes it)."""
        message = self.messages[message_id]
        channel_id = int(message["channel_id"])
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        return await self.interaction_create(
            self._interaction_payload(
                3,
                data,
                channel_id=channel_id,
                guild_id=self._guild_of(channel_id),
                user=user,
                permissions=DEFAULT_EVERYONE_PERMISSIONS,
                app_permissions=ALL_PERMISSIONS,
                message=message,
            )
        )

    # ---- REST plumbing -----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        """Record every REST call, inject queued 429s, map DiscordError / unknown routes to Discord's
        JSON error bodies."""
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        rec = RecordedRequest(
            method=request.method,
            path=request.path[len(API_PREFIX) :],
            query=dict(request.query),
            headers=dict(request.headers),
        )
        self.requests.append(rec)
        try:
            rec.json, rec.files = await self._read_body(request)
            request[_REC_KEY] = rec
            limited = self._take_rate_limit(rec)
            if limited is not None:
                resp = self._rate_limited(limited)
            else:
                self._check_auth(request, rec)
                resp = await handler(request)
        except DiscordError as e:
            resp = _json_response(e.body(), e.status)
        except web.HTTPNotFound:
            resp = _json_response({"message": "404: Not Found", "code": 0}, 404)
        except web.HTTPMethodNotAllowed:
            resp = _json_response({"message": "405: Method Not Allowed", "code": 0}, 405)
        rec.status = resp.status
        rec.response = resp.get(_DATA_KEY)
        await self._notify()
        return resp

    async def _read_body(self, request: web.Request) -> tuple[Any, list[dict[str, Any]]]:
        if not request.can_read_body:
            return None, []
        if request.content_type == "multipart/form-data":
            form = await request.post()
            files, payload = [], None
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    files.append(
                        {
                            "name": name,
                            "filename": value.filename,
                            "content_type": value.content_type,
                            "data": data,
                            "size": len(data),
                        }
                    )
                elif name == "payload_json":
                    payload = json.loads(value)
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            raise DiscordError(400, 50109, "The request body contains invalid JSON.") from None

    def _check_auth(self, request: web.Request, rec: RecordedRequest) -> None:
        """Bot routes need ``Authorization: Bot <token>`` (webhook/interaction routes use their token)."""
        if rec.path.startswith(("/webhooks/", "/interactions/")) or self.token is None:
            return
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise DiscordError(401, 0, "401: Unauthorized")

    def _take_rate_limit(self, rec: RecordedRequest) -> _RateLimit | None:
        for rl in self._rate_limits:
            if rl.substring in rec.path and (rl.method is None or rl.method == rec.method):
                rl.remaining -= 1
                if rl.remaining <= 0:
                    self._rate_limits.remove(rl)
                return rl
        return None

    @staticmethod
    def _rate_limited(rl: _RateLimit) -> web.Response:
        headers = {
            "Retry-After": str(max(1, math.ceil(rl.retry_after))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + rl.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{rl.retry_after:.3f}",
            "X-RateLimit-Bucket": "fakebucket" + format(abs(hash(rl.substring)) % 10**8, "x"),
            "X-RateLimit-Scope": "global" if rl.is_global else "user",
            "Via": "1.1 google",
        }
        if rl.is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {
            "message": "You are being rate limited.",
            "retry_after": rl.retry_after,
            "global": rl.is_global,
        }
        return _json_response(body, 429, headers)

    # ---- REST: identity ----------------------------------------------------------------------

    async def _get_me(self, request: web.Request) -> web.Response:
        return _json_response({**self.bot_user, "verified": True, "mfa_enabled": False, "locale": "en-US"})

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(int(request.match_info["uid"]))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return _json_response(user)

    async def _get_application(self, request: web.Request) -> web.Response:
        return _json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.default_user,
                "verify_key": "0" * 64,
                "flags": 0,
                "team": None,
                "summary": "",
                "interactions_endpoint_url": None,
                "bot": self.bot_user,
            }
        )

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return _json_response({"url": str(self.gateway_url)})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        return _json_response(
            {
                "url": str(self.gateway_url),
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    # ---- REST: channels and messages ---------------------------------------------------------

    def _channel(self, request: web.Request) -> dict[str, Any]:
        ch = self.channels.get(int(request.match_info["cid"]))
        if ch is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        return ch

    def _message(self, mid: int, channel_id: int | None = None) -> dict[str, Any]:
        msg = self.messages.get(mid)
        if msg is None or (channel_id is not None and int(msg["channel_id"]) != channel_id):
            raise DiscordError(404, 10008, "Unknown Message")
        return msg

    def _new_message(
        self,
        channel_id: int,
        payload: dict[str, Any],
        files: list[dict[str, Any]],
        *,
        flags: int = 0,
        msg_type: int = 0,
        interaction: _Interaction | None = None,
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """Store a message the bot created, shaped like Discord's response (no guild_id/member)."""
        msg: dict[str, Any] = {
            "id": str(message_id or self.snowflake()),
            "channel_id": str(channel_id),
            "author": self.bot_user,
            "timestamp": _now_iso(),
            "pinned": False,
            "mention_channels": [],
            "reactions": [],
            "type": msg_type,
        }
        self._apply(msg, payload, files, base_flags=flags)
        if payload.get("message_reference"):
            ref = payload["message_reference"]
            msg["type"] = 19
            msg["message_reference"] = {"type": 0, "channel_id": str(channel_id)}
            msg["message_reference"].update({k: str(v) if k.endswith("_id") else v for k, v in ref.items()})
            referenced = self.messages.get(int(ref["message_id"]))
            if referenced is not None:
                msg["referenced_message"] = referenced
                allowed = payload.get("allowed_mentions")
                if (allowed is None or allowed.get("replied_user")) and referenced["author"] not in msg[
                    "mentions"
                ]:
                    msg["mentions"].append(
                        referenced["author"]
                    )  # a reply pings its author unless told not to
        if interaction is not None:
            msg["webhook_id"] = str(self.application_id)
            msg["application_id"] = str(self.application_id)
            user = interaction.payload.get("member", {}).get("user") or interaction.payload.get("user")
            msg["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": user,
                "authorizing_integration_owners": interaction.payload.get(
                    "authorizing_integration_owners", {}
                ),
            }
        self.messages[int(msg["id"])] = msg
        return msg

    def _apply(
        self,
        msg: dict[str, Any],
        payload: dict[str, Any],
        files: list[dict[str, Any]],
        *,
        base_flags: int | None = None,
    ) -> None:
        """Apply a create/edit payload to a stored message (fields absent from an edit are kept)."""
        if base_flags is not None or "content" in payload:
            msg["content"] = payload.get("content") or ""
            msg.update(self._resolve_mentions(msg["content"], payload.get("allowed_mentions")))
        if base_flags is not None or "embeds" in payload:
            msg["embeds"] = [{"type": "rich", **e} for e in payload.get("embeds") or []]
        if base_flags is not None or "components" in payload:
            msg["components"] = payload.get("components") or []
        if base_flags is not None or "tts" in payload:
            msg["tts"] = bool(payload.get("tts"))
        if base_flags is not None:
            msg["flags"] = base_flags | (payload.get("flags") or 0)
            msg["edited_timestamp"] = None
        elif "flags" in payload:
            msg["flags"] = (msg.get("flags", 0) & (FLAG_EPHEMERAL | FLAG_LOADING)) | (payload["flags"] or 0)
        if files or "attachments" in payload or base_flags is not None:
            kept = [
                a
                for a in msg.get("attachments", [])
                if any(str(p.get("id")) == a["id"] for p in payload.get("attachments") or [])
            ]
            for f in files:
                aid = str(self.snowflake())
                kept.append(
                    {
                        "id": aid,
                        "filename": f["filename"],
                        "size": f["size"],
                        "content_type": f["content_type"],
                        "url": f"https://cdn.discordapp.com/attachments/{msg['channel_id']}/{aid}/{f['filename']}",
                        "proxy_url": f"https://media.discordapp.net/attachments/{msg['channel_id']}/{aid}/{f['filename']}",
                    }
                )
            msg["attachments"] = kept
        if "nonce" in payload:
            msg["nonce"] = payload["nonce"]

    async def _echo(self, msg: dict[str, Any]) -> None:
        """Discord sends the bot a MESSAGE_CREATE for its own (non-ephemeral) messages too: a bot must
        ignore itself. Sent before the REST answer; Discord's ordering of the two is not fixed."""
        if not self.echo_own_messages or not self._live.is_set() or msg.get("flags", 0) & FLAG_EPHEMERAL:
            return
        event = dict(msg)
        gid = self._guild_of(int(msg["channel_id"]))
        if gid:
            event["guild_id"] = str(gid)
            event["member"] = self._member_obj(roles=[gid + 1])
        await self.dispatch("MESSAGE_CREATE", event)

    async def _get_channel(self, request: web.Request) -> web.Response:
        return _json_response(self._channel(request))

    async def _create_message(self, request: web.Request) -> web.Response:
        """POST /channels/{id}/messages: validated, stored, answered with the full message object."""
        rec = request[_REC_KEY]
        ch = self._channel(request)
        payload = rec.json or {}
        check_message(payload, files=rec.files)
        ref = payload.get("message_reference")
        if ref and int(ref["message_id"]) not in self.messages and ref.get("fail_if_not_exists", True):
            raise DiscordError(
                400,
                50035,
                "Invalid Form Body",
                {"message_reference": _err("MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")},
            )
        msg = self._new_message(int(ch["id"]), payload, rec.files)
        await self._echo(msg)
        return _json_response(msg)

    async def _get_message(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        return _json_response(self._message(int(request.match_info["mid"]), int(ch["id"])))

    async def _edit_message(self, request: web.Request) -> web.Response:
        """PATCH: only the bot's own messages (else 403/50005), same limits as a create."""
        rec = request[_REC_KEY]
        ch = self._channel(request)
        msg = self._message(int(request.match_info["mid"]), int(ch["id"]))
        if int(msg["author"]["id"]) != self.bot_id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        check_message(rec.json or {}, files=rec.files, edit=True)
        self._apply(msg, rec.json or {}, rec.files)
        msg["edited_timestamp"] = _now_iso()
        return _json_response(msg)

    async def _delete_message(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        self._message(int(request.match_info["mid"]), int(ch["id"]))
        del self.messages[int(request.match_info["mid"])]
        return _no_content()

    async def _typing(self, request: web.Request) -> web.Response:
        self._channel(request)
        return _no_content()

    async def _add_reaction(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        self._message(int(request.match_info["mid"]), int(ch["id"]))
        return _no_content()

    async def _new_thread(
        self, parent: dict[str, Any], body: dict[str, Any], thread_id: int, ttype: int
    ) -> dict[str, Any]:
        name = body.get("name") or ""
        if not 1 <= len(name) <= 100:
            raise DiscordError(
                400,
                50035,
                "Invalid Form Body",
                {"name": _err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")},
            )
        thread = {
            "id": str(thread_id),
            "type": ttype,
            "guild_id": parent.get("guild_id"),
            "parent_id": parent["id"],
            "owner_id": str(self.bot_id),
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": body.get("rate_limit_per_user", 0),
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": body.get("auto_archive_duration", 1440),
                "archive_timestamp": _now_iso(),
                "locked": False,
                "create_timestamp": _now_iso(),
                "invitable": body.get("invitable", True),
            },
            "member": {
                "id": str(thread_id),
                "user_id": str(self.bot_id),
                "join_timestamp": _now_iso(),
                "flags": 1,
            },
        }
        self.channels[thread_id] = thread
        if self._live.is_set():  # Discord tells the gateway too
            await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return thread

    async def _thread_from_message(self, request: web.Request) -> web.Response:
        """Start a public thread (type 11) from a message; its id is the message id, as on Discord;
        a second thread on the same message is 400/160004."""
        rec = request[_REC_KEY]
        ch = self._channel(request)
        mid = int(request.match_info["mid"])
        msg = self._message(mid, int(ch["id"]))
        if mid in self.channels:
            raise DiscordError(400, 160004, "A thread has already been created for this message")
        thread = await self._new_thread(ch, rec.json or {}, mid, 11)
        msg["thread"] = thread
        return _json_response(thread)

    async def _thread_without_message(self, request: web.Request) -> web.Response:
        rec = request[_REC_KEY]
        ch = self._channel(request)
        body = rec.json or {}
        return _json_response(await self._new_thread(ch, body, self.snowflake(), int(body.get("type", 12))))

    async def _create_dm(self, request: web.Request) -> web.Response:
        """POST /users/@me/channels: one DM channel (type 1) per recipient."""
        rec = request[_REC_KEY]
        rid = int((rec.json or {})["recipient_id"])
        if rid not in self._dm_channels:
            cid = self.snowflake()
            self._dm_channels[rid] = cid
            self._channel_obj({"id": cid, "type": 1, "recipients": [self.user(rid)], "name": None}, None)
        return _json_response(self.channels[self._dm_channels[rid]])

    # ---- REST: interactions and webhooks -----------------------------------------------------

    _CALLBACK_TYPES = {2: {4, 5, 9, 12}, 3: {4, 5, 6, 7, 9, 12}, 4: {8}, 5: {4, 5, 6, 7}}

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        """The initial response. Unknown / too late (> ``interaction_deadline`` s) -> 404/10062;
        second acknowledgement -> 400/40060; message limits as for channel messages. Answers 204, or
        the InteractionCallbackResponse when ``with_response`` is set (discord.py always sets it)."""
        rec = request[_REC_KEY]
        it = self.interactions.get(int(request.match_info["iid"]))
        if it is None or it.payload["token"] != request.match_info["token"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if it.acked:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - it.created > self.interaction_deadline:
            raise DiscordError(404, 10062, "Unknown interaction")
        body = rec.json or {}
        rtype = body.get("type")
        if rtype not in self._CALLBACK_TYPES.get(it.type, set()):
            raise DiscordError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "type": _err(
                        "INTERACTION_RESPONSE_TYPE_INVALID",
                        "Interaction response type is invalid for this interaction",
                    )
                },
            )
        data = body.get("data") or {}
        channel_id = int(it.payload["channel_id"])
        message: dict[str, Any] | None = None
        if rtype == 4:
            check_message(data, files=rec.files, prefix="data")
            flags = (data.get("flags") or 0) & FLAG_EPHEMERAL
            message = self._new_message(
                channel_id, data, rec.files, flags=flags, msg_type=20 if it.type == 2 else 0, interaction=it
            )
            it.original_id, it.ephemeral = int(message["id"]), bool(flags)
            await self._echo(message)
        elif rtype == 5:
            it.ephemeral = bool((data.get("flags") or 0) & FLAG_EPHEMERAL)
            flags = FLAG_LOADING | (FLAG_EPHEMERAL if it.ephemeral else 0)
            message = self._new_message(
                channel_id, {}, [], flags=flags, msg_type=20 if it.type == 2 else 0, interaction=it
            )
            it.original_id, it.loading = int(message["id"]), True
        elif rtype == 7:
            check_message(data, files=rec.files, edit=True, prefix="data")
            message = self.messages[int(it.payload["message"]["id"])]
            self._apply(message, data, rec.files)
            message["edited_timestamp"] = _now_iso()
        elif rtype == 9:
            self._open_modal(it, data)  # (section "modals and joins" below)
        elif rtype == 8:
            choices = data.get("choices") or []
            errors: dict[str, Any] = {}
            if len(choices) > 25:
                errors = {"choices": _err("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")}
            for i, c in enumerate(choices[:25]):
                if not 1 <= len(str(c.get("name", ""))) <= 100:
                    errors.setdefault("choices", {})[str(i)] = {
                        "name": _err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
                    }
            if errors:
                raise DiscordError(400, 50035, "Invalid Form Body", {"data": errors})
        it.acked, it.response_type = True, rtype
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return _no_content()
        resource: dict[str, Any] = {"type": rtype}
        if message is not None:
            resource["message"] = message
        return _json_response(
            {
                "interaction": {
                    "id": str(it.id),
                    "type": it.type,
                    "activity_instance_id": None,
                    "response_message_id": str(it.original_id) if it.original_id else None,
                    "response_message_loading": it.loading,
                    "response_message_ephemeral": it.ephemeral,
                },
                "resource": resource,
            }
        )

    def _interaction_for_token(self, request: web.Request) -> _Interaction:
        if int(request.match_info["app"]) != self.application_id:
            raise DiscordError(404, 10015, "Unknown Webhook")
        token = request.match_info["token"]
        it = next((i for i in self.interactions.values() if i.payload["token"] == token), None)
        if it is None or not it.acked:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if time.monotonic() - it.created > self.interaction_token_ttl:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return it

    async def _execute_webhook(self, request: web.Request) -> web.Response:
        """Followup (POST /webhooks/{app}/{token}): needs an acknowledged interaction; the first one
        after a defer (type 5) fills the "thinking" message, keeping the defer's ephemerality.
        ``?wait=1`` answers with the message, otherwise 204."""
        rec = request[_REC_KEY]
        it = self._interaction_for_token(request)
        payload = rec.json or {}
        check_message(payload, files=rec.files)
        if it.response_type == 5 and it.loading and it.original_id is not None:
            msg = self.messages[it.original_id]
            self._apply(msg, payload, rec.files)
            msg["flags"] = (msg["flags"] & ~FLAG_LOADING) | (payload.get("flags") or 0) & ~FLAG_EPHEMERAL
            it.loading = False
        else:
            flags = (payload.get("flags") or 0) & FLAG_EPHEMERAL
            msg = self._new_message(
                int(it.payload["channel_id"]), payload, rec.files, flags=flags, interaction=it
            )
            it.followup_ids.append(int(msg["id"]))
            await self._echo(msg)
        if request.query.get("wait", "").lower() in ("1", "true"):
            return _json_response(msg)
        return _no_content()

    def _webhook_message(self, request: web.Request) -> tuple[_Interaction, dict[str, Any]]:
        it = self._interaction_for_token(request)
        mid = request.match_info["mid"]
        if mid == "@original":
            if it.response_type == 6:  # deferred update: @original is the component's message
                return it, self.messages[int(it.payload["message"]["id"])]
            if it.original_id is None or it.original_id not in self.messages:
                raise DiscordError(404, 10008, "Unknown Message")
            return it, self.messages[it.original_id]
        if int(mid) not in ({it.original_id} | set(it.followup_ids)) or int(mid) not in self.messages:
            raise DiscordError(404, 10008, "Unknown Message")
        return it, self.messages[int(mid)]

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        return _json_response(self._webhook_message(request)[1])

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        """PATCH .../messages/@original|{id}: edits (and resolves a "thinking" original)."""
        rec = request[_REC_KEY]
        it, msg = self._webhook_message(request)
        check_message(rec.json or {}, files=rec.files, edit=True)
        self._apply(msg, rec.json or {}, rec.files)
        if msg.get("flags", 0) & FLAG_LOADING:
            msg["flags"] &= ~FLAG_LOADING
            it.loading = False
        else:
            msg["edited_timestamp"] = _now_iso()
        return _json_response(msg)

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        it, msg = self._webhook_message(request)
        self.messages.pop(int(msg["id"]), None)
        if it.original_id == int(msg["id"]):
            it.loading = False  # the "thinking" message is gone: a later followup is a new message
        return _no_content()

    # ---- REST: application commands ----------------------------------------------------------

    _NAME = re.compile(r"^[-_'\w]{1,32}$")

    def _command_errors(self, cmd: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        name, ctype = cmd.get("name", ""), cmd.get("type", 1)
        # User and message commands (types 2, 3) may be mixed case and contain spaces, 1-32 characters.
        valid = self._NAME.match(name) if ctype == 1 else 1 <= len(name) <= 32 and name == name.strip()
        if not valid or (ctype == 1 and name != name.lower()):
            errors["name"] = _err("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if ctype == 1 and not 1 <= len(cmd.get("description", "")) <= 100:
            errors["description"] = _err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        if len(cmd.get("options") or []) > 25:
            errors["options"] = _err("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        elif ctype == 1:
            errors.update(command_option_errors(cmd))
        return errors

    def _store_command(
        self, scope: int | None, cmd: dict[str, Any], existing: list[dict[str, Any]]
    ) -> dict[str, Any]:
        old = next(
            (c for c in existing if c["name"] == cmd["name"] and c["type"] == cmd.get("type", 1)), None
        )
        out = {
            "id": old["id"] if old else str(self.snowflake()),
            "application_id": str(self.application_id),
            "version": str(self.snowflake()),
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            "contexts": None,
            "integration_types": [0],
            **cmd,
        }
        if scope is not None:
            out["guild_id"] = str(scope)
        return out

    def _scope(self, request: web.Request) -> int | None:
        if int(request.match_info["app"]) != self.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        gid = request.match_info.get("gid")
        return int(gid) if gid else None

    async def _get_commands(self, request: web.Request) -> web.Response:
        return _json_response(self.commands.get(self._scope(request), []))

    async def _put_commands(self, request: web.Request) -> web.Response:
        """Bulk overwrite (what ``tree.sync()`` does): validated, echoed back with stable ids."""
        rec = request[_REC_KEY]
        scope = self._scope(request)
        body = rec.json or []
        errors = {str(i): e for i, e in ((i, self._command_errors(c)) for i, c in enumerate(body)) if e}
        if len(body) > 100:
            errors["_errors"] = _err("BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")["_errors"]
        if errors:
            raise DiscordError(400, 50035, "Invalid Form Body", errors)
        existing = self.commands.get(scope, [])
        self.commands[scope] = [self._store_command(scope, c, existing) for c in body]
        return _json_response(self.commands[scope])

    async def _post_command(self, request: web.Request) -> web.Response:
        rec = request[_REC_KEY]
        scope = self._scope(request)
        cmd = rec.json or {}
        errors = self._command_errors(cmd)
        if errors:
            raise DiscordError(400, 50035, "Invalid Form Body", errors)
        existing = self.commands.setdefault(scope, [])
        stored = self._store_command(scope, cmd, existing)
        self.commands[scope] = [c for c in existing if c["id"] != stored["id"]] + [stored]
        return _json_response(stored, 201)

    # =======================================================================================    # History, pins, threads, forum posts, message commands (issue 15 items 5-6: asking about a
    # History, pins, threads, forum posts, message commands (issue 15 items 5-6: asking about a
    # message, learning from Discord). Kept in one section to ease merging.
    # - GET /channels/{id}/messages: before / after / around / limit (1-100, default 50), newest first
    #   as Discord answers (also for ``after``: the oldest ``limit`` after it, sorted newest first);
    # - GET /channels/{id}/messages/pins: before (ISO time of a pin) / limit (1-50), newest pin first,
    #   ``{"items": [{"pinned_at", "message"}], "has_more"}`` (the API discord.py 2.6+ uses);
    # - both: 403/50001 without View Channel; without Read Message History no messages at all (Discord
    #   answers 200 with none); without the Message Content intent, content, embeds and attachments of
    #   other users' messages that don't mention the bot come back blank, as on the gateway;
    # - the bot's permissions in a channel: its roles, then the channel's overwrites (a thread's are its
    #   parent's), as Discord computes them;
    # - threads users start (from a message: the thread has the message's id and a type-21 starter
    #   message), forum channels (type 15) and forum posts (a type-11 thread whose starter message has
    #   the thread's id), edits, deletions and pins of user messages (with their gateway events);
    # - message context menu commands (interaction type 2, data.type 3, target_id, resolved.messages).
    # ==============================================================================================

    PERM_ADMINISTRATOR = 1 << 3
    PERM_VIEW_CHANNEL = 1 << 10
    PERM_READ_MESSAGE_HISTORY = 1 << 16

    def _history_routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return [
            ("GET", "/channels/{cid}/messages/pins", self._get_pins),
            ("GET", "/channels/{cid}/messages", self._get_history),
        ]

    def bot_permissions(self, channel_id: int) -> int:
        """The bot's permissions in a guild channel or thread: @everyone and its role, then the overwrites
        of the channel (a thread's parent) for @everyone, its role and itself; Administrator is everything."""
        ch = self.channels[channel_id]
        gid = int(ch["guild_id"])
        if ch.get("type") in (10, 11, 12):
            ch = self.channels[int(ch["parent_id"])]
        roles = {int(r["id"]): int(r["permissions"]) for r in self.guilds[gid]["roles"]}
        mine = {gid, gid + 1}
        perms = 0
        for rid in mine:
            perms |= roles.get(rid, 0)
        if perms & self.PERM_ADMINISTRATOR:
            return ALL_PERMISSIONS
        overwrites = {int(o["id"]): o for o in ch.get("permission_overwrites") or []}
        layers = [overwrites.get(gid)]
        role_ow = [overwrites[r] for r in mine - {gid} if r in overwrites]
        if role_ow:
            layers.append({"deny": sum(int(o["deny"]) for o in role_ow), "allow": sum(int(o["allow"]) for o in role_ow)})
        layers.append(overwrites.get(self.bot_id))
        for ow in layers:
            if ow is not None:
                perms = (perms & ~int(ow["deny"])) | int(ow["allow"])
        return perms

    async def set_bot_overwrite(self, channel_id: int, *, deny: int = 0, allow: int = 0,
                                notify: bool = True) -> None:
        """Set the bot role's overwrite on a channel; ``notify`` sends CHANNEL_UPDATE as Discord does (without
        it the client's cache is stale: only the REST answers change)."""
        ch = self.channels[channel_id]
        role = str(int(ch["guild_id"]) + 1)
        ows = [o for o in ch.get("permission_overwrites") or [] if o["id"] != role]
        ch["permission_overwrites"] = ows + [{"id": role, "type": 0, "allow": str(allow), "deny": str(deny)}]
        if notify and self._live.is_set():
            await self.dispatch("CHANNEL_UPDATE", ch)

    def _readable(self, ch: dict[str, Any]) -> bool:
        """403/50001 without View Channel; False (no messages) without Read Message History."""
        if not ch.get("guild_id"):
            return True
        perms = self.bot_permissions(int(ch["id"]))
        if not perms & self.PERM_VIEW_CHANNEL:
            raise DiscordError(403, 50001, "Missing Access")
        return bool(perms & self.PERM_READ_MESSAGE_HISTORY)

    def _as_read(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A stored message as a REST read returns it to the bot (content blanked without the intent)."""
        out = dict(msg)
        ref = msg.get("message_reference") or {}
        if "referenced_message" in msg and ref.get("message_id"):  # as it is now: null once deleted
            current = self.messages.get(int(ref["message_id"]))
            out["referenced_message"] = self._as_read(current) if current is not None else None
        if (self.intents or 0) & INTENT_MESSAGE_CONTENT or not self._guild_of(int(msg["channel_id"])):
            return out
        mentioned = any(int(u["id"]) == self.bot_id for u in msg.get("mentions") or [])
        if int(msg["author"]["id"]) != self.bot_id and not mentioned:
            out.update(content="", embeds=[], attachments=[], components=[])
        return out

    def channel_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages of a channel or thread, oldest first (ephemeral ones are nobody's history)."""
        return sorted((m for m in self.messages.values() if int(m["channel_id"]) == channel_id
                       and not m.get("flags", 0) & FLAG_EPHEMERAL), key=lambda m: int(m["id"]))

    @staticmethod
    def _limit(query: Any, default: int, most: int) -> int:
        try:
            limit = int(query.get("limit", default))
        except ValueError:
            limit = 0
        if not 1 <= limit <= most:
            raise DiscordError(400, 50035, "Invalid Form Body",
                               {"limit": _err("NUMBER_TYPE_MAX", f"int value should be between 1 and {most}.")})
        return limit

    async def _get_history(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        limit = self._limit(request.query, 50, 100)
        if not self._readable(ch):
            return _json_response([])
        msgs = self.channel_messages(int(ch["id"]))
        q = request.query
        if "before" in q:
            msgs = [m for m in msgs if int(m["id"]) < int(q["before"])][-limit:]
        elif "after" in q:
            msgs = [m for m in msgs if int(m["id"]) > int(q["after"])][:limit]
        elif "around" in q:
            pivot = int(q["around"])
            older = [m for m in msgs if int(m["id"]) < pivot][-(limit // 2):] if limit > 1 else []
            newer = [m for m in msgs if int(m["id"]) >= pivot][: limit - len(older)]
            msgs = older + newer
        else:
            msgs = msgs[-limit:]
        return _json_response([self._as_read(m) for m in reversed(msgs)])

    async def _get_pins(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        limit = self._limit(request.query, 50, 50)
        if not self._readable(ch):
            return _json_response({"items": [], "has_more": False})
        pins = sorted(((self.pinned_at[int(m["id"])], m) for m in self.channel_messages(int(ch["id"]))
                       if m.get("pinned") and int(m["id"]) in self.pinned_at), key=lambda p: p[0], reverse=True)
        if "before" in request.query:
            before = datetime.fromisoformat(request.query["before"])
            pins = [p for p in pins if datetime.fromisoformat(p[0]) < before]
        items = [{"pinned_at": at, "message": self._as_read(m)} for at, m in pins[:limit]]
        return _json_response({"items": items, "has_more": len(pins) > limit})

    # ---- users' threads, forum posts, edits, deletions, pins ----------------------------------------

    @staticmethod
    def forum_channel(channel_id: int, name: str = "help-forum") -> dict[str, Any]:
        """A forum channel (type 15) for ``guild_create(channels=[...])``."""
        return {"id": channel_id, "type": 15, "name": name, "available_tags": [], "default_sort_order": None,
                "default_forum_layout": 0, "default_reaction_emoji": None, "default_thread_rate_limit_per_user": 0,
                "flags": 0, "topic": None}

    async def thread_create(self, parent_id: int, name: str, *, owner: int | None = None,
                            from_message: int | None = None, thread_id: int | None = None) -> dict[str, Any]:
        """A user starts a public thread (type 11) in a text or forum channel. From a message: the thread has
        the message's id and opens with a type-21 starter message referencing it, as on Discord."""
        parent = self.channels[parent_id]
        owner_id = owner or self.default_user_id
        tid = from_message or thread_id or self.snowflake()
        now = _now_iso()
        thread = {
            "id": str(tid), "type": 11, "guild_id": parent["guild_id"], "parent_id": parent["id"],
            "owner_id": str(owner_id), "name": name, "last_message_id": None, "rate_limit_per_user": 0,
            "message_count": 0, "member_count": 1, "total_message_sent": 0, "flags": 0, "applied_tags": [],
            "thread_metadata": {"archived": False, "auto_archive_duration": 1440, "archive_timestamp": now,
                                "locked": False, "create_timestamp": now},
        }
        self.channels[tid] = thread
        if from_message is not None:
            source = self.messages[from_message]
            source["thread"] = thread
            starter = {
                "id": str(self.snowflake()), "channel_id": str(tid), "author": self.user(owner_id), "content": "",
                "timestamp": now, "edited_timestamp": None, "tts": False, "mention_everyone": False,
                "mentions": [], "mention_roles": [], "mention_channels": [], "attachments": [], "embeds": [],
                "components": [], "pinned": False, "type": 21, "flags": 0,
                "message_reference": {"type": 0, "message_id": str(from_message), "channel_id": parent["id"],
                                      "guild_id": parent["guild_id"]},
                "referenced_message": source,
            }
            self.messages[int(starter["id"])] = starter
        if self._live.is_set():
            await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return thread

    async def forum_post(self, forum_id: int, name: str, content: str, *,
                         author: int | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A user opens a forum post: a thread in the forum whose starter message has the thread's id."""
        tid = self.snowflake()
        thread = await self.thread_create(forum_id, name, owner=author, thread_id=tid)
        return thread, await self.message_create(content, channel_id=tid, author=author, message_id=tid)

    async def message_edit(self, message_id: int, content: str) -> dict[str, Any]:
        """A user edits their message: stored, and MESSAGE_UPDATE sent."""
        msg = self.messages[message_id]
        msg.update(content=content, edited_timestamp=_now_iso(), **self._resolve_mentions(content, None))
        event = {**self._as_read(msg)}
        if gid := self._guild_of(int(msg["channel_id"])):
            event["guild_id"] = str(gid)
        await self.dispatch("MESSAGE_UPDATE", event)
        return msg

    async def message_delete(self, message_id: int) -> None:
        """A message is deleted: gone from history, MESSAGE_DELETE sent."""
        msg = self.messages.pop(message_id)
        self.pinned_at.pop(message_id, None)
        event = {"id": msg["id"], "channel_id": msg["channel_id"]}
        if gid := self._guild_of(int(msg["channel_id"])):
            event["guild_id"] = str(gid)
        await self.dispatch("MESSAGE_DELETE", event)

    async def pin(self, message_id: int, pinned: bool = True) -> None:
        """Someone pins (or unpins) a message: CHANNEL_PINS_UPDATE sent."""
        msg = self.messages[message_id]
        msg["pinned"] = pinned
        if pinned:  # strictly increasing, so that paging by ``before`` never skips a pin made in the same µs
            at = datetime.now(UTC)
            latest = max(map(datetime.fromisoformat, self.pinned_at.values()), default=None)
            if latest is not None and at <= latest:
                at = latest + timedelta(microseconds=1)
            self.pinned_at[message_id] = at.isoformat()
        else:
            self.pinned_at.pop(message_id, None)
        event: dict[str, Any] = {"channel_id": msg["channel_id"],
                                 "last_pin_timestamp": max(self.pinned_at.values(), default=None)}
        if gid := self._guild_of(int(msg["channel_id"])):
            event["guild_id"] = str(gid)
        await self.dispatch("CHANNEL_PINS_UPDATE", event)

    def resolved_channel(self, channel_id: int, permissions: int) -> dict[str, Any]:
        """A channel as a command option's ``resolved.channels`` entry: partial (no overwrites), with the
        invoking member's permissions; a thread keeps its thread fields (owner, counts, metadata)."""
        ch = self.channels[channel_id]
        keep = ("id", "name", "type", "parent_id", "guild_id", "flags", "last_message_id", "rate_limit_per_user",
                "owner_id", "member_count", "message_count", "total_message_sent", "thread_metadata",
                "applied_tags", "topic", "nsfw", "position")
        return {**{k: ch[k] for k in keep if k in ch}, "permissions": str(permissions)}

    async def message_command(
        self,
        name: str,
        message_id: int,
        *,
        user: int | dict[str, Any] | None = None,
        permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        app_permissions: int = ALL_PERMISSIONS,
    ) -> dict[str, Any]:
        """A user picks ``name`` from a message's Apps menu (interaction type 2, command type 3). Discord sends
        the message resolved, with its content whether or not the bot has the Message Content intent."""
        message = self.messages[message_id]
        channel_id = int(message["channel_id"])
        guild_id = self._guild_of(channel_id)
        data = {"id": self._command_id(name, guild_id), "name": name, "type": 3, "target_id": str(message_id),
                "resolved": {"messages": {str(message_id): message}}}
        return await self.interaction_create(self._interaction_payload(
            2, data, channel_id=channel_id, guild_id=guild_id, user=user, permissions=permissions,
            app_permissions=app_permissions))
    # ---- modals and joins (issue 15: help, onboarding, feedback) ---------------------------------------
    # MODAL responses (type 9) are validated and remembered; ``modal_submit`` sends the MODAL_SUBMIT
    # interaction (type 5) a user's "Submit" makes, shaped like the modal that was opened (action rows, or
    # labels), with the message when it was opened from a button. ``guild_join`` is the bot being added
    # to a server while connected: GUILD_CREATE without ``unavailable`` (discord.py's on_guild_join).

    MAX_MODAL_TITLE = 45
    MAX_MODAL_COMPONENTS = 5
    MAX_TEXT_INPUT_LABEL = 45
    MAX_TEXT_INPUT_LENGTH = 4000

    @property
    def modals(self) -> list[dict[str, Any]]:
        """Every modal the bot opened, oldest first: ``{"interaction": payload, "data": modal}``."""
        return self.__dict__.setdefault("_modals", [])

    def _open_modal(self, it: _Interaction, data: dict[str, Any]) -> None:
        errors: dict[str, Any] = {}
        if not data.get("custom_id"):
            errors["custom_id"] = _err("BASE_TYPE_REQUIRED", "This field is required")
        _max_len(errors, "custom_id", data.get("custom_id"), MAX_CUSTOM_ID)
        if not data.get("title"):
            errors["title"] = _err("BASE_TYPE_REQUIRED", "This field is required")
        _max_len(errors, "title", data.get("title"), self.MAX_MODAL_TITLE)
        comps = data.get("components") or []
        if not 1 <= len(comps) <= self.MAX_MODAL_COMPONENTS:
            errors["components"] = _err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        for i, (_wrapper, field_) in enumerate(self._modal_inputs(comps)):
            ferr: dict[str, Any] = {}
            if field_.get("type") == 4:
                _max_len(ferr, "label", field_.get("label"), self.MAX_TEXT_INPUT_LABEL)
                if not field_.get("custom_id"):
                    ferr["custom_id"] = _err("BASE_TYPE_REQUIRED", "This field is required")
                if int(field_.get("max_length") or 0) > self.MAX_TEXT_INPUT_LENGTH:
                    ferr["max_length"] = _err("NUMBER_TYPE_MAX", "int value should be <= 4000.")
            if ferr:
                errors.setdefault("components", {})[str(i)] = ferr
        if errors:
            raise DiscordError(400, 50035, "Invalid Form Body", {"data": errors})
        self.modals.append({"interaction": it.payload, "data": data})

    @staticmethod
    def _modal_inputs(components: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(top-level component, its input) for each input: in an action row (type 1) or a label (type 18)."""
        out = []
        for comp in components:
            if comp.get("type") == 18 and comp.get("component"):
                out.append((comp, comp["component"]))
            for child in comp.get("components") or []:
                out.append((comp, child))
        return out

    async def modal_submit(
        self,
        values: dict[str, str],
        *,
        custom_id: str | None = None,
        user: int | dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A user fills in and submits the last modal opened (with ``custom_id``, if given): MODAL_SUBMIT,
        its text inputs carrying ``values`` by input custom_id ("" for the rest, as Discord sends empty
        optional fields). Works across bot restarts: the fake, like Discord, remembers the modal."""
        opened = [m for m in self.modals if custom_id is None or m["data"]["custom_id"] == custom_id]
        assert opened, f"no modal {custom_id or ''} was opened"
        source, modal = opened[-1]["interaction"], opened[-1]["data"]
        comps: list[dict[str, Any]] = []
        for comp in modal.get("components") or []:
            if comp.get("type") == 18:
                inner = comp["component"]
                comps.append({"type": 18, "id": comp.get("id", 0), "component": {
                    "type": inner["type"], "id": inner.get("id", 0), "custom_id": inner["custom_id"],
                    "value": values.get(inner["custom_id"], "")}})
            else:
                comps.append({"type": 1, "id": comp.get("id", 0), "components": [
                    {"type": c["type"], "id": c.get("id", 0), "custom_id": c["custom_id"],
                     "value": values.get(c["custom_id"], "")} for c in comp.get("components") or []]})
        channel_id = int(source["channel_id"])
        message = None
        if "message" in source:  # opened from a button: Discord sends that message (as it is now)
            message = self.messages.get(int(source["message"]["id"]), source["message"])
        member = source.get("member") or {}
        return await self.interaction_create(
            self._interaction_payload(
                5,
                {"custom_id": modal["custom_id"], "components": comps},
                channel_id=channel_id,
                guild_id=self._guild_of(channel_id),
                user=user if user is not None else (member.get("user") or source.get("user")),
                permissions=int(member.get("permissions") or DEFAULT_EVERYONE_PERMISSIONS),
                app_permissions=int(source.get("app_permissions") or ALL_PERMISSIONS),
                message=message,
            )
        )

    async def guild_join(
        self, guild_id: int, *, system_channel_id: int | None = None, **guild: Any
    ) -> dict[str, Any]:
        """The bot is added to a new server while connected (``guild_create``'s arguments, plus the
        server's system channel): the guild is registered, then GUILD_CREATE is sent without
        ``unavailable``, which is how a client tells a join from a guild becoming available."""
        live = self._live.is_set()
        self._live.clear()  # register without sending (guild_create sends when live)
        try:
            data = await self.guild_create(guild_id, **guild)
        finally:
            if live:
                self._live.set()
        data["system_channel_id"] = str(system_channel_id) if system_channel_id else None
        payload = {k: v for k, v in self._guild_for_client(data).items() if k != "unavailable"}
        await self.dispatch("GUILD_CREATE", payload)
        return data

    # ---- issue 15 item 3 (server settings): subcommands with channel options ---------------------------

    async def slash_subcommand(
        self,
        group: str,
        sub: str,
        options: dict[str, Any] | None = None,
        *,
        channels: dict[str, int] | None = None,
        channel_id: int,
        guild_id: int | None = None,
        user: int | dict[str, Any] | None = None,
        permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        app_permissions: int = ALL_PERMISSIONS,
    ) -> dict[str, Any]:
        """A user runs ``/group sub`` (a subcommand: option type 1 holding the options). ``options`` as for
        ``slash_command``; ``channels``: channel options, ``{name: channel id}`` (type 7, with the channels in
        ``data.resolved``, as Discord sends them)."""
        inner = self._options(options, None)
        resolved: dict[str, Any] = {}
        for name, cid in (channels or {}).items():
            inner.append({"name": name, "type": 7, "value": str(cid)})
            resolved.setdefault("channels", {})[str(cid)] = self.resolved_channel(cid, permissions)
        return await self.slash_command(
            group,
            [{"name": sub, "type": 1, "options": inner}],
            channel_id=channel_id,
            guild_id=guild_id,
            user=user,
            permissions=permissions,
            app_permissions=app_permissions,
            resolved=resolved or None,
        )


# Limits Discord applies to a chat-input command's options (subcommands included), with 400/50035.
MAX_COMMAND_CHARS = 4000  # name, description, option names, descriptions and choices, all together


def _command_chars(item: dict[str, Any]) -> int:
    total = len(item.get("name", "")) + len(item.get("description", ""))
    for choice in item.get("choices") or []:
        total += len(str(choice.get("name", ""))) + len(str(choice.get("value", "")))
    return total + sum(_command_chars(o) for o in item.get("options") or [])


def command_option_errors(cmd: dict[str, Any]) -> dict[str, Any]:
    """Form errors for the options of a chat-input command: names lowercase 1-32, descriptions 1-100, at most
    25 options and 25 choices (names 1-100), required options before optional ones, subcommands not mixed
    with plain options, and 4,000 characters in all."""
    name_rx = re.compile(r"^[-_'\w]{1,32}$")

    def check(options: list[dict[str, Any]]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        if len(options) > 25:
            return {"_errors": _err("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")["_errors"]}
        subs = [o.get("type") in (1, 2) for o in options]
        if any(subs) and not all(subs):
            errors["_errors"] = _err("APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                                     "Sub-command and sub-command group option types are mutually exclusive "
                                     "to all other types")["_errors"]
        seen_optional = False
        for i, opt in enumerate(options):
            oerr: dict[str, Any] = {}
            name = opt.get("name", "")
            if not name_rx.match(name) or name != name.lower():
                oerr["name"] = _err("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            if not 1 <= len(opt.get("description", "")) <= 100:
                oerr["description"] = _err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            choices = opt.get("choices") or []
            if len(choices) > 25:
                oerr["choices"] = _err("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            for j, c in enumerate(choices[:25]):
                if not 1 <= len(str(c.get("name", ""))) <= 100:
                    oerr.setdefault("choices", {})[str(j)] = {
                        "name": _err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")}
            if opt.get("type") not in (1, 2):
                if opt.get("required"):
                    if seen_optional:
                        oerr["required"] = _err("APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                                                "Required options must be placed before non-required options")
                else:
                    seen_optional = True
            nested = check(opt.get("options") or []) if opt.get("type") in (1, 2) else {}
            if nested:
                oerr["options"] = nested
            if oerr:
                errors[str(i)] = oerr
        return errors

    errors: dict[str, Any] = {}
    nested = check(cmd.get("options") or [])
    if nested:
        errors["options"] = nested
    if _command_chars(cmd) > MAX_COMMAND_CHARS:
        errors.setdefault("_errors", []).extend(
            _err("BASE_TYPE_MAX_LENGTH", f"Command exceeds maximum size ({MAX_COMMAND_CHARS})")["_errors"])
    return errors
