"""bot/discord_docs.py: what of Discord messages becomes a document (pure: no client, no fake)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.discord_docs import (
    ChatMessage,
    attachment_source,
    clean_text,
    links,
    message_document,
    pins_document,
    thread_document,
    without_links,
)

URL = "https://discord.com/channels/1/2"
DAY1 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
DAY2 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_thread_document_orders_oldest_first_and_skips_bots_and_empty() -> None:
    messages = [
        ChatMessage(30, "Then it worked.", created=DAY2),
        ChatMessage(10, "How do I reset the router?", created=DAY1),
        ChatMessage(20, "I am the bot's answer", by_bot=True),
        ChatMessage(25, "   "),  # e.g. an image-only message
        ChatMessage(22, "Hold the button for 10 s <:ok:123456789012345678>"),
    ]
    doc = thread_document("Router   help", URL, messages, parent="support")
    assert doc.title == "Router help" and doc.source == URL
    assert doc.paragraphs == ("How do I reset the router?", "Hold the button for 10 s :ok:", "Then it worked.")
    assert (doc.published, doc.outlet, doc.skipped) == ("2026-11-30", "#support", 2)
    assert thread_document("", URL, []).title == "Discord thread"
    assert thread_document("x", URL, [ChatMessage(1, "hi", by_bot=True)]).paragraphs == ()


def test_pins_document() -> None:
    doc = pins_document("rules", URL, [ChatMessage(2, "Be kind."), ChatMessage(1, "No spam.")])
    assert (doc.title, doc.source, doc.paragraphs, doc.outlet) == (
        "#rules pins", URL + "#pins", ("No spam.", "Be kind."), "#rules")
    assert doc.source != thread_document("rules", URL, []).source  # a thread's pins are not the thread


def test_clean_text() -> None:
    assert clean_text("<a:party:123456789012345678> at <t:1764579600:R>") == ":party: at 2025-12-01 09:00 UTC"
    assert clean_text("the code is ||hunter2||") == "the code is hunter2"
    assert clean_text("```py\nprint(1)") == "```py\nprint(1)\n```"  # closed: it cannot swallow what follows
    assert clean_text("```\nok\n```") == "```\nok\n```"
    assert clean_text("<t:99999999999999>") == "<t:99999999999999>"  # out of range: kept as written


def test_links_and_without_links() -> None:
    text = ("See https://example.org/a, and <https://example.org/b> or [the FAQ](https://example.org/faq). "
            "Again https://example.org/a! Not ftp://example.org/x nor file:///etc/passwd")
    assert links(text) == ["https://example.org/faq", "https://example.org/a", "https://example.org/b"]
    assert without_links("Read [the FAQ](https://e.org/faq) and https://e.org/x  now\nok") == \
        "Read the FAQ and now\nok"
    assert links("(https://en.wikipedia.org/wiki/Foo_(bar)), **https://e.org/b**") == [
        "https://en.wikipedia.org/wiki/Foo_(bar)", "https://e.org/b"]


def test_message_document() -> None:
    msg = ChatMessage(5, "## Opening hours\nThe pool opens at 7 every weekday.", created=DAY1)
    doc = message_document(msg, URL + "/5", channel="pool")
    assert doc is not None and doc.title == "Opening hours" and doc.source == URL + "/5"
    assert doc.paragraphs == ("## Opening hours\nThe pool opens at 7 every weekday.",)
    assert (doc.published, doc.outlet) == ("2026-11-30", "#pool")
    long = message_document(ChatMessage(6, "word " * 60), URL)
    assert long is not None and len(long.title) <= 100 and long.title.endswith("…")
    # beside links or files, a few words ("see this") are not a document of their own
    assert message_document(ChatMessage(7, "see https://example.org/x"), URL, brings_more=True) is None
    with_words = message_document(ChatMessage(8, "The pool closes in August: https://e.org/x"), URL,
                                  brings_more=True)
    assert with_words is not None and with_words.paragraphs == ("The pool closes in August:",)
    assert message_document(ChatMessage(9, "hello", by_bot=True), URL) is None
    assert message_document(ChatMessage(9, " "), URL) is None


def test_attachment_source() -> None:
    assert attachment_source(URL + "/5", "faq.md") == URL + "/5#faq.md"
