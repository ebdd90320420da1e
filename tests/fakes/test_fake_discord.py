"""The loopback fake of Discord, exercised with the real discord.py client (no network)."""

from __future__ import annotations

import asyncio
import io
import time

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.fake_discord import FakeDiscord, message_errors

GUILD = 111111111111111111
CHANNEL = 333333333333333333
USER = 222222222222222222


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch):
    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)
        await fake.guild_create(GUILD, channels=[CHANNEL], members=[USER])
        yield fake


def make_bot(*, message_content: bool = True) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = message_content
    return commands.Bot(
        command_prefix=commands.when_mentioned,
        intents=intents,
        help_command=None,
        guild_ready_timeout=0.05,  # else every start waits 2 s for guilds
        allowed_mentions=discord.AllowedMentions.none(),
    )


def channel(bot: commands.Bot) -> discord.TextChannel:
    ch = bot.get_channel(CHANNEL)
    assert isinstance(ch, discord.TextChannel)
    return ch


async def test_login_identify_ready(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot):
        assert bot.user is not None and bot.user.id == fake.bot_id
        assert bot.application_id == fake.application_id
        assert fake.identify_payloads[0]["intents"] == bot.intents.value
        assert fake.identify_payloads[0]["token"] == "fake-token"
        assert [r.path for r in fake.requests[:2]] == ["/users/@me", "/oauth2/applications/@me"]
        guild = bot.get_guild(GUILD)
        assert (
            guild is not None and guild.me is not None and guild.get_member(USER) is None
        )  # no members intent
        assert channel(bot).permissions_for(guild.me).send_messages
        await fake.wait_for_gateway_op(1)  # heartbeats are sent and ACKed
    assert bot.is_closed()


async def test_reply_to_mention_records_allowed_mentions(fake: FakeDiscord) -> None:
    bot = make_bot()
    seen: asyncio.Queue[discord.Message] = asyncio.Queue()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        await seen.put(message)
        if bot.user in message.mentions and message.author != bot.user:
            await message.reply("hi @everyone <@&444444444444444444>", mention_author=False)

    async with fake.running(bot):
        incoming = await fake.message_create(f"{fake.bot_mention} what happened?", channel_id=CHANNEL)
        assert incoming is not None
        req = await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages")
        assert req.status == 200
        assert req.json["allowed_mentions"] == {"parse": [], "replied_user": False}
        assert int(req.json["message_reference"]["message_id"]) == int(incoming["id"])
        assert fake.sent_messages(CHANNEL)[0]["content"].startswith("hi @everyone")
        stored = fake.messages[int(req.response["id"])]
        assert stored["type"] == 19
        assert not stored["mention_everyone"] and not stored["mention_roles"] and not stored["mentions"]
        # Discord echoes the bot's own message back over the gateway: a bot must ignore itself.
        first, echo = await asyncio.wait_for(seen.get(), 5), await asyncio.wait_for(seen.get(), 5)
        assert first.author.id == USER and echo.author == bot.user and echo.id == int(req.response["id"])


async def test_wrong_token_is_login_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeDiscord(token="right") as fake:
        fake.patch(monkeypatch)
        bot = make_bot()
        try:
            with pytest.raises(discord.LoginFailure):
                await bot.login("wrong")
        finally:
            await bot.close()


async def test_default_allowed_mentions_would_ping(fake: FakeDiscord) -> None:
    intents = discord.Intents.default()
    bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.05)  # no allowed_mentions
    async with fake.running(bot):
        msg = await channel(bot).send(f"@everyone <@&444444444444444444> <@{USER}>")
        stored = fake.messages[msg.id]
        assert (
            stored["mention_everyone"]
            and stored["mention_roles"]
            and stored["mentions"][0]["id"] == str(USER)
        )


async def test_slash_command_defer_then_followup(fake: FakeDiscord) -> None:
    bot = make_bot()
    done = asyncio.Event()

    @bot.tree.command(name="ask", description="Ask a question")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"answer to {question}")
        done.set()

    async with fake.running(bot):
        inter = await fake.slash_command("ask", {"question": "why"}, channel_id=CHANNEL)
        await asyncio.wait_for(done.wait(), 5)
        assert fake.interaction_responses() == [{"type": 5}]
        followup = await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}")
        assert followup.query["wait"] == "1"
        assert fake.followups() == [
            {"content": "answer to why", "tts": False, "allowed_mentions": {"parse": []}}
        ]
        original = fake.messages[int(followup.response["id"])]
        assert original["flags"] & 128 == 0  # the "thinking" message was filled by the followup
        assert original["interaction_metadata"]["id"] == inter["id"]


async def test_command_sync_echoes_ids(fake: FakeDiscord) -> None:
    bot = make_bot()

    @bot.tree.command(name="ask", description="Ask a question")
    async def ask(interaction: discord.Interaction, question: str) -> None: ...

    async with fake.running(bot):
        synced = await bot.tree.sync()
        again = await bot.tree.sync(guild=discord.Object(GUILD))
    assert [c.name for c in synced] == ["ask"] and synced[0].id > 0
    assert again == [] and fake.commands[GUILD] == []
    put = [r for r in fake.requests if r.method == "PUT"]
    assert put[0].path == f"/applications/{fake.application_id}/commands"
    assert put[0].json[0]["options"][0]["name"] == "question"


async def test_over_limit_content_and_embed_rejected(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot):
        with pytest.raises(discord.HTTPException) as exc:
            await channel(bot).send("x" * 2001)
        assert exc.value.status == 400 and exc.value.code == 50035
        assert "content" in exc.value.text
        with pytest.raises(discord.HTTPException) as exc:
            await channel(bot).send(embed=discord.Embed(description="y" * 4097))
        assert exc.value.code == 50035 and "embeds.0.description" in exc.value.text
        ok = await channel(bot).send("x" * 2000)
        assert len(ok.content) == 2000
        with pytest.raises(discord.HTTPException) as exc:
            await channel(bot).send()
        assert exc.value.code == 50006


async def test_rate_limited_request_is_retried_once(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot):
        fake.rate_limit_next(f"/channels/{CHANNEL}/messages", retry_after=0.05)
        t0 = time.monotonic()
        msg = await channel(bot).send("hello")
        assert time.monotonic() - t0 >= 0.05
        assert msg.content == "hello"
    posts = [r for r in fake.requests if r.method == "POST" and r.path == f"/channels/{CHANNEL}/messages"]
    assert [r.status for r in posts] == [429, 200]
    assert posts[0].response["retry_after"] == 0.05


@pytest.mark.parametrize("code", [None, 4000])
async def test_dropped_connection_resumes(fake: FakeDiscord, code: int | None) -> None:
    bot = make_bot()
    got: asyncio.Queue[discord.Message] = asyncio.Queue()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        await got.put(message)

    async with fake.running(bot):
        session = fake.session_id
        await fake.drop_connection(code)
        resume = await fake.wait_for_gateway_op(6)
        assert resume["d"]["session_id"] == session and resume["d"]["seq"] >= 2
        await asyncio.wait_for(fake.resumed.wait(), 5)
        assert len(fake.identify_payloads) == 1  # resumed, not re-identified
        await fake.message_create("after resume", channel_id=CHANNEL)
        assert (await asyncio.wait_for(got.get(), 5)).content == "after resume"


async def test_privileged_intent_refused_with_4014(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeDiscord(allow_message_content=False) as fake:
        fake.patch(monkeypatch)
        bot = make_bot(message_content=True)
        with pytest.raises(discord.PrivilegedIntentsRequired):
            async with fake.running(bot):
                pass
        assert fake.close_codes == [4014] and bot.is_closed()


async def test_content_blank_without_message_content_intent(fake: FakeDiscord) -> None:
    bot = make_bot(message_content=False)
    got: asyncio.Queue[discord.Message] = asyncio.Queue()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        await got.put(message)

    async with fake.running(bot):
        await fake.message_create("not for the bot", channel_id=CHANNEL)
        assert (await asyncio.wait_for(got.get(), 5)).content == ""
        await fake.message_create(f"{fake.bot_mention} for the bot", channel_id=CHANNEL)
        assert (await asyncio.wait_for(got.get(), 5)).content.endswith("for the bot")
        await fake.message_create("a DM", channel_id=444444444444444444)
        dm = await asyncio.wait_for(got.get(), 5)
        assert dm.content == "a DM" and dm.guild is None


class MoreView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=30)
        self.clicked = asyncio.Event()

    @discord.ui.button(label="Show passages", custom_id="qabot:more")
    async def more(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.send_message("passages", ephemeral=True)
        self.clicked.set()


async def test_component_click_reaches_view_callback(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot):
        view = MoreView()
        msg = await channel(bot).send("answer", view=view)
        sent = fake.sent_messages(CHANNEL)[0]
        assert sent["components"][0]["components"][0]["custom_id"] == "qabot:more"
        await fake.component_click(msg.id, "qabot:more")
        await asyncio.wait_for(view.clicked.wait(), 5)
        resp = fake.interaction_responses()[0]
        assert resp["type"] == 4 and resp["data"]["content"] == "passages" and resp["data"]["flags"] == 64
        view.stop()


async def test_autocomplete(fake: FakeDiscord) -> None:
    bot = make_bot()

    async def suggest(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=f"{current} {i}", value=f"{current}{i}") for i in range(3)]

    @bot.tree.command(name="ask", description="Ask a question")
    @app_commands.autocomplete(question=suggest)
    async def ask(interaction: discord.Interaction, question: str) -> None: ...

    async with fake.running(bot):
        await fake.autocomplete("ask", {"question": "flood"}, "question", channel_id=CHANNEL)
        await fake.wait_for_request("POST", "/callback")
        resp = fake.interaction_responses()[0]
        assert resp["type"] == 8 and resp["data"]["choices"][0] == {"name": "flood 0", "value": "flood0"}


async def test_late_response_is_unknown_interaction(fake: FakeDiscord) -> None:
    fake.interaction_deadline = 0.05
    bot = make_bot()
    errors: asyncio.Queue[BaseException] = asyncio.Queue()

    @bot.tree.command(name="slow", description="Too slow")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.15)
        await interaction.response.send_message("late")

    @bot.tree.error
    async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await errors.put(error.__cause__ or error)

    async with fake.running(bot):
        await fake.slash_command("slow", channel_id=CHANNEL)
        err = await asyncio.wait_for(errors.get(), 5)
        assert isinstance(err, discord.NotFound) and err.code == 10062


async def test_double_ack_is_40060(fake: FakeDiscord) -> None:
    bot = make_bot()
    acked = asyncio.Event()

    @bot.tree.command(name="ask", description="Ask")
    async def ask(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        acked.set()

    async with fake.running(bot):
        inter = await fake.slash_command("ask", channel_id=CHANNEL)
        await asyncio.wait_for(acked.wait(), 5)
        url = f"{fake.rest_base}/interactions/{inter['id']}/{inter['token']}/callback"
        async with aiohttp.ClientSession() as session, session.post(url, json={"type": 5}) as resp:
            assert resp.status == 400 and resp.headers["Content-Type"] == "application/json"
            assert (await resp.json())["code"] == 40060


async def test_thread_from_message_and_dm(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot):
        msg = await channel(bot).send("question")
        thread = await msg.create_thread(name="Q: why?")
        assert thread.id == msg.id and thread.type is discord.ChannelType.public_thread
        sent = await thread.send("in thread")
        edited = await sent.edit(content="edited in thread")
        assert edited.content == "edited in thread" and edited.edited_at is not None
        await edited.delete()
        assert edited.id not in fake.messages
        user = await bot.fetch_user(USER)
        dm = await user.create_dm()
        await dm.send("private")
        async with channel(bot).typing():
            pass
    assert fake.sent_messages(thread.id)[0]["content"] == "in thread"
    assert [r.status for r in fake.requests if r.path.endswith(f"/messages/{sent.id}")] == [200, 204]
    assert fake.sent_messages(dm.id)[0]["content"] == "private"
    assert any(r.path == f"/channels/{CHANNEL}/typing" and r.status == 204 for r in fake.requests)


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        ({"content": "x" * 2001}, "content"),
        ({"embeds": [{"description": "d"}] * 11}, "embeds"),
        ({"embeds": [{"title": "t" * 257}]}, "title"),
        ({"embeds": [{"description": "d" * 4097}]}, "description"),
        ({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]}, "fields"),
        ({"embeds": [{"fields": [{"name": "n" * 257, "value": "v"}]}]}, "name"),
        ({"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]}, "value"),
        ({"embeds": [{"footer": {"text": "f" * 2049}}]}, "footer"),
        ({"embeds": [{"author": {"name": "a" * 257}}]}, "author"),
        ({"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]}, "MAX_EMBED_SIZE_EXCEEDED"),
        ({"components": [{"type": 1, "components": []}] * 6}, "components"),
        (
            {
                "components": [
                    {"type": 1, "components": [{"type": 2, "style": 1, "custom_id": "c", "label": "l" * 81}]}
                ]
            },
            "label",
        ),
        (
            {"components": [{"type": 1, "components": [{"type": 2, "style": 1, "custom_id": "c" * 101}]}]},
            "custom_id",
        ),
    ],
)
def test_validation_oracle(payload: dict, key: str) -> None:
    errors = message_errors(payload)
    assert errors and key in repr(errors)


def test_validation_accepts_limits_exactly() -> None:
    embed = {
        "title": "t" * 256,
        "description": "d" * 4096,
        "footer": {"text": "f" * 1000},
        "fields": [{"name": "n", "value": "v" * 24}] * 25,
    }
    assert message_errors({"content": "x" * 2000, "embeds": [embed]}) == {}


async def test_multipart_upload_recorded(fake: FakeDiscord) -> None:
    bot = make_bot()
    async with fake.running(bot):
        msg = await channel(bot).send("see file", file=discord.File(io.BytesIO(b"abc"), "notes.txt"))
    req = next(r for r in fake.requests if r.method == "POST" and r.path.endswith("/messages"))
    assert req.json["content"] == "see file"  # payload_json, parsed
    assert req.files[0]["filename"] == "notes.txt" and req.files[0]["data"] == b"abc"
    assert msg.attachments[0].filename == "notes.txt" and msg.attachments[0].size == 3


# ---- modals and joins (issue 15) --------------------------------------------------------------------------


async def test_modal_opened_submitted_and_validated(fake: FakeDiscord) -> None:
    bot = make_bot()
    submitted: list[dict[str, str]] = []
    errors: list[BaseException] = []

    class Form(discord.ui.Modal, title="Tell us"):
        note: discord.ui.TextInput = discord.ui.TextInput(label="Note", custom_id="note", required=False)

        async def on_submit(self, interaction: discord.Interaction) -> None:
            submitted.append({"note": self.note.value})
            try:  # a modal cannot answer a modal submit (Discord: response type invalid)
                await interaction.response.send_modal(Form(custom_id="again"))
            except discord.HTTPException as exc:
                errors.append(exc)
                await interaction.response.send_message("ok", ephemeral=True)

    class Open(discord.ui.View):
        @discord.ui.button(label="open", custom_id="open")
        async def open(self, interaction: discord.Interaction, _button: discord.ui.Button) -> None:
            await interaction.response.send_modal(Form(custom_id="form"))

    async with fake.running(bot):
        msg = await channel(bot).send("x", view=Open())
        await fake.component_click(msg.id, "open", user=USER)
        await fake.wait_for(lambda: fake.modals)
        (opened,) = fake.modals
        assert opened["data"]["custom_id"] == "form" and opened["data"]["title"] == "Tell us"
        submit = await fake.modal_submit({"note": "hello"}, user=USER)
        assert submit["type"] == 5 and int(submit["message"]["id"]) == msg.id  # opened from a button
        await fake.wait_for(lambda: submitted and errors)
    assert submitted == [{"note": "hello"}]
    assert isinstance(errors[0], discord.HTTPException) and errors[0].code == 50035
    assert [m["data"]["custom_id"] for m in fake.modals] == ["form"]


async def test_guild_join_is_on_guild_join_not_available(fake: FakeDiscord) -> None:
    bot = make_bot()
    joined: list[int] = []
    available: list[int] = []

    async def on_join(guild: discord.Guild) -> None:
        joined.append(guild.id)

    async def on_available(guild: discord.Guild) -> None:
        available.append(guild.id)

    bot.add_listener(on_join, "on_guild_join")
    bot.add_listener(on_available, "on_guild_available")
    async with fake.running(bot):
        await fake.guild_join(999, system_channel_id=998, channels=[997, 998])
        await fake.wait_for(lambda: joined)
        guild = bot.get_guild(999)
        assert guild is not None and guild.system_channel is not None and guild.system_channel.id == 998
    assert joined == [999] and 999 not in available
