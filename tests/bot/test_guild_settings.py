"""The pure part of the per-server settings (bot/guild_settings.py): reading a stored row, the decisions
AskCog makes with it, and the validated changes /qabot makes."""

from __future__ import annotations

import json

import pytest

from bot.guild_settings import (
    EVERY,
    FORUM,
    MAX_LISTED,
    MENTION,
    GuildSettings,
    RateLimit,
    SettingsError,
    Where,
    describe_channels,
    describe_rate,
)

ASK, OFFTOPIC, FORUM_CH, CATEGORY, THREAD = 101, 102, 103, 104, 105
BIG = 1_234_567_890_123_456_789  # a real snowflake: more than 2**53


def test_defaults_answer_mentions_everywhere_and_nothing_else() -> None:
    s = GuildSettings.from_json({})
    assert s == GuildSettings() and s.to_json() == {}
    assert s.listens(Where(ASK)) and s.listens(Where(ASK, thread_id=THREAD, category_id=CATEGORY))
    assert not s.answers_unmentioned(Where(ASK))
    assert not s.answers_unmentioned(Where(FORUM_CH, thread_id=THREAD), forum_post=True)
    assert s.answer_in_thread(True) is True and s.answer_in_thread(False) is False
    assert s.rate_limit(5, 60.0) == (5, 60.0)


def test_round_trip_through_json_keeps_big_snowflakes_exact() -> None:
    s = (GuildSettings().with_channel("allow", BIG).with_channel("deny", OFFTOPIC)
         .with_mode(BIG, EVERY, forum_channel=False).with_mode(FORUM_CH, FORUM, forum_channel=True)
         .with_thread(False).with_rate(3, 30, default_window=60))
    stored = json.loads(json.dumps(s.to_json()))  # as the store keeps it
    assert stored["allow"] == [str(BIG)] and stored["modes"][str(BIG)] == EVERY
    back = GuildSettings.from_json(stored)
    assert back == s
    assert back.rate == RateLimit(3, 30.0) and back.thread is False and back.mode(BIG) == EVERY


def test_unreadable_values_are_dropped_not_fatal() -> None:
    s = GuildSettings.from_json({
        "allow": ["abc", -1, True, str(ASK), ASK], "deny": "not a list",
        "modes": {"x": EVERY, str(OFFTOPIC): "all", str(ASK): EVERY},
        "thread": "yes", "rate": {"questions": 10**6, "window": 60}, "unknown": 1,
    })
    assert s == GuildSettings(allow=frozenset({ASK}), modes={ASK: EVERY})
    assert GuildSettings.from_json(None) == GuildSettings.from_json([1, 2]) == GuildSettings()  # type: ignore[arg-type]
    # A channel on both lists (a hand-edited row) is denied: deny wins.
    both = GuildSettings.from_json({"allow": [ASK], "deny": [ASK]})
    assert both.allow == frozenset() and not both.listens(Where(ASK))


def test_deny_list_covers_threads_and_categories() -> None:
    s = GuildSettings().with_channel("deny", OFFTOPIC)
    assert not s.listens(Where(OFFTOPIC))
    assert not s.listens(Where(OFFTOPIC, thread_id=THREAD))  # a thread counts as its parent
    assert s.listens(Where(ASK))
    by_category = GuildSettings().with_channel("deny", CATEGORY)
    assert not by_category.listens(Where(ASK, category_id=CATEGORY))
    assert by_category.listens(Where(ASK))


def test_allow_list_means_only_those_and_deny_wins() -> None:
    s = GuildSettings().with_channel("allow", ASK)
    assert s.listens(Where(ASK)) and s.listens(Where(ASK, thread_id=THREAD))
    assert not s.listens(Where(OFFTOPIC))
    cat = GuildSettings().with_channel("allow", CATEGORY).with_channel("deny", OFFTOPIC)
    assert cat.listens(Where(ASK, category_id=CATEGORY))
    assert not cat.listens(Where(OFFTOPIC, category_id=CATEGORY))  # denied inside an allowed category
    assert not cat.listens(Where(FORUM_CH))


def test_channel_actions_move_remove_and_clear() -> None:
    s = GuildSettings().with_channel("allow", ASK)
    s = s.with_channel("deny", ASK)  # moves it: on one list at a time
    assert s.allow == frozenset() and s.deny == {ASK}
    s = s.with_channel("allow", ASK).with_channel("allow", OFFTOPIC)
    assert s.allow == {ASK, OFFTOPIC} and s.deny == frozenset()
    s = s.with_channel("remove", ASK)
    assert s.allow == {OFFTOPIC}
    with pytest.raises(SettingsError, match="neither list"):
        s.with_channel("remove", ASK)
    with pytest.raises(SettingsError, match="Name a channel"):
        s.with_channel("deny", None)
    with pytest.raises(SettingsError, match="Unknown action"):
        s.with_channel("block", ASK)
    assert s.with_channel("clear") == GuildSettings()


def test_lists_are_bounded() -> None:
    s = GuildSettings(deny=frozenset(range(1, MAX_LISTED + 1)))
    with pytest.raises(SettingsError, match="full"):
        s.with_channel("deny", 10**9)
    assert s.with_channel("deny", 5) == s  # already listed: not refused
    assert len(GuildSettings.from_json({"deny": list(range(1, 1000))}).deny) == MAX_LISTED


def test_every_mode_answers_unmentioned_messages_in_the_channel_only() -> None:
    s = GuildSettings().with_mode(ASK, EVERY, forum_channel=False)
    assert s.answers_unmentioned(Where(ASK))
    assert not s.answers_unmentioned(Where(ASK, thread_id=THREAD))  # not in people's threads under it
    assert not s.answers_unmentioned(Where(OFFTOPIC))
    # ... and not when the channel is denied, or outside the allow list.
    assert not s.with_channel("deny", ASK).answers_unmentioned(Where(ASK))
    assert not s.with_channel("allow", OFFTOPIC).answers_unmentioned(Where(ASK))
    assert s.with_mode(ASK, MENTION, forum_channel=False).modes == {}  # back to the default: not stored


def test_forum_mode_answers_new_posts_only() -> None:
    s = GuildSettings().with_mode(FORUM_CH, FORUM, forum_channel=True)
    post = Where(FORUM_CH, thread_id=THREAD)
    assert s.answers_unmentioned(post, forum_post=True)
    assert not s.answers_unmentioned(post)  # a later message in the post needs a mention or a reply
    assert not s.answers_unmentioned(Where(ASK, thread_id=THREAD), forum_post=True)
    with pytest.raises(SettingsError, match="not a forum"):
        GuildSettings().with_mode(ASK, FORUM, forum_channel=False)
    with pytest.raises(SettingsError, match="is a forum"):
        GuildSettings().with_mode(FORUM_CH, EVERY, forum_channel=True)
    with pytest.raises(SettingsError, match="Unknown mode"):
        GuildSettings().with_mode(ASK, "all", forum_channel=False)


def test_thread_setting_overrides_the_default_until_reset() -> None:
    off = GuildSettings().with_thread(False)
    assert off.answer_in_thread(True) is False
    assert GuildSettings().with_thread(True).answer_in_thread(False) is True
    assert off.with_thread(None).answer_in_thread(True) is True


def test_rate_limit_changes() -> None:
    s = GuildSettings().with_rate(3, None, default_window=60)
    assert s.rate_limit(5, 60.0) == (3, 60.0)
    s = s.with_rate(None, 120, default_window=60)  # keeps the questions, changes the window
    assert s.rate == RateLimit(3, 120.0)
    assert s.with_rate(0, None, default_window=60).rate_limit(5, 60.0) == (0, 120.0)  # 0: no limit here
    assert s.with_rate(None, None, default_window=60).rate is None  # back to the operator's default
    with pytest.raises(SettingsError, match="questions"):
        GuildSettings().with_rate(None, 30, default_window=60)
    with pytest.raises(SettingsError, match="between 0"):
        GuildSettings().with_rate(101, None, default_window=60)
    with pytest.raises(SettingsError, match="seconds"):
        GuildSettings().with_rate(5, 5, default_window=60)


def test_descriptions() -> None:
    assert describe_channels(GuildSettings()) == "every channel it can read"
    s = GuildSettings().with_channel("allow", ASK).with_channel("deny", OFFTOPIC)
    assert describe_channels(s) == f"only in <#{ASK}>; never in <#{OFFTOPIC}>"
    many = GuildSettings(deny=frozenset(range(1, 31)))
    assert describe_channels(many).endswith("and 10 more")
    assert describe_rate(1, 30.0) == "1 question per 30 s per member"
    assert describe_rate(0, 60.0) == "no limit"
