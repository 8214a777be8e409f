"""The Events API payloads people's actions (and the bot's own posts) cause."""

from __future__ import annotations

from slack_sdk import WebClient

from sandbox.rich_text import rich_text_elements
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import (
    ALICE,
    APP_ID,
    BOB,
    BOT_ID,
    BOT_USER,
    CAROL,
    CONNECT,
    DAN,
    EMPTY,
    EXTERNAL_TEAM,
    HELP,
    HOME_TEAM,
    TRIAGE,
    VERIFICATION_TOKEN,
)


def last_event(emulator: SlackEmulator) -> dict:
    return emulator.events[-1]["event"]


def test_a_customer_post_in_a_shared_channel(emulator: SlackEmulator) -> None:
    ts = emulator.user_post(DAN, CONNECT, "Hi <@U0ALICE>, the *printer* is down")
    outer = emulator.events[-1]
    assert outer["type"] == "event_callback"
    assert outer["token"] == VERIFICATION_TOKEN
    assert outer["team_id"] == HOME_TEAM and outer["context_team_id"] == HOME_TEAM
    assert outer["api_app_id"] == APP_ID
    assert outer["event_id"].startswith("Ev")
    assert isinstance(outer["event_time"], int)
    assert outer["authorizations"][0]["user_id"] == BOT_USER
    assert outer["is_ext_shared_channel"] is True

    event = outer["event"]
    assert (event["type"], event["user"], event["channel"], event["ts"], event["event_ts"]) == (
        "message",
        DAN,
        CONNECT,
        ts,
        ts,
    )
    assert event["team"] == EXTERNAL_TEAM and event["user_team"] == EXTERNAL_TEAM
    assert event["channel_type"] == "channel"
    assert "subtype" not in event and "bot_id" not in event
    section = event["blocks"][0]["elements"][0]
    assert section["elements"] == [
        {"type": "text", "text": "Hi "},
        {"type": "user", "user_id": ALICE},
        {"type": "text", "text": ", the "},
        {"type": "text", "text": "printer", "style": {"bold": True}},
        {"type": "text", "text": " is down"},
    ]


def test_event_ids_are_unique(emulator: SlackEmulator) -> None:
    for n in range(5):
        emulator.user_post(CAROL, HELP, str(n))
    assert len({e["event_id"] for e in emulator.events}) == 5
    assert emulator.events[0]["is_ext_shared_channel"] is False


def test_thread_reply_carries_thread_ts(emulator: SlackEmulator) -> None:
    root = emulator.user_post(CAROL, HELP, "help")
    emulator.user_post(ALICE, HELP, "on it", thread_ts=root)
    event = last_event(emulator)
    assert event["thread_ts"] == root and event["parent_user_id"] == CAROL


def test_the_bots_own_posts_come_back_as_events(emulator: SlackEmulator, client: WebClient) -> None:
    client.chat_postMessage(
        channel=TRIAGE, text="Ticket #1", metadata={"event_type": "t", "event_payload": {}}
    )
    event = last_event(emulator)
    assert (event["bot_id"], event["app_id"], event["user"]) == (BOT_ID, APP_ID, BOT_USER)
    client.files_upload_v2(channel=TRIAGE, content="x", filename="x.txt")
    assert last_event(emulator)["bot_id"] == BOT_ID and last_event(emulator)["subtype"] == "file_share"


def test_edit_and_delete(emulator: SlackEmulator) -> None:
    ts = emulator.user_post(ALICE, TRIAGE, "reply draft")
    emulator.user_edit(ALICE, TRIAGE, ts, "note: reply draft")
    changed = last_event(emulator)
    assert changed["subtype"] == "message_changed"
    assert changed["message"]["text"] == "note: reply draft" and changed["message"]["edited"]["user"] == ALICE
    assert changed["previous_message"]["text"] == "reply draft"
    assert changed["channel"] == TRIAGE

    emulator.user_delete(ALICE, TRIAGE, ts)
    deleted = last_event(emulator)
    assert deleted["subtype"] == "message_deleted" and deleted["deleted_ts"] == ts
    assert deleted["previous_message"]["text"] == "note: reply draft"
    assert emulator.message(TRIAGE, ts).deleted


def test_deleting_a_thread_parent_with_replies_leaves_a_tombstone(emulator: SlackEmulator) -> None:
    # Slack keeps the parent so its thread stays reachable, and tells apps with message_changed.
    root = emulator.user_post(CAROL, HELP, "VPN is down")
    reply = emulator.user_post(ALICE, HELP, "looking", thread_ts=root)
    emulator.user_delete(CAROL, HELP, root)
    changed = last_event(emulator)
    assert changed["subtype"] == "message_changed"
    assert (changed["message"]["subtype"], changed["message"]["ts"]) == ("tombstone", root)
    assert changed["previous_message"]["text"] == "VPN is down"
    # The reply, and a parent whose replies are gone, are deleted outright.
    emulator.user_delete(ALICE, HELP, reply)
    assert last_event(emulator)["subtype"] == "message_deleted"


def test_reactions_and_membership(emulator: SlackEmulator) -> None:
    ts = emulator.user_post(CAROL, HELP, "vpn broken")
    emulator.user_react(ALICE, HELP, ts, ":ticket:")
    reaction = last_event(emulator)
    assert reaction == {
        "type": "reaction_added",
        "user": ALICE,
        "reaction": "ticket",
        "item": {"type": "message", "channel": HELP, "ts": ts},
        "item_user": CAROL,
        "event_ts": reaction["event_ts"],
    }
    emulator.user_unreact(ALICE, HELP, ts, "ticket")
    assert last_event(emulator)["type"] == "reaction_added"  # reaction_removed is not subscribed

    emulator.user_join(BOB, HELP)
    assert last_event(emulator)["type"] == "member_joined_channel"
    assert last_event(emulator)["user"] == BOB
    emulator.user_leave(BOB, HELP)
    assert last_event(emulator)["type"] == "member_left_channel"
    assert BOB not in emulator.workspace.channels[HELP].members
    # The app removed from a channel is told so, with who removed it.
    emulator.user_leave(BOT_USER, HELP, by=ALICE)
    assert {key: last_event(emulator)[key] for key in ("type", "channel", "actor_id")} == {
        "type": "channel_left",
        "channel": HELP,
        "actor_id": ALICE,
    }


def test_nothing_from_channels_the_bot_is_not_in(emulator: SlackEmulator) -> None:
    emulator.user_post(ALICE, EMPTY, "private chatter")
    assert emulator.events == []


def test_app_home_opened(emulator: SlackEmulator) -> None:
    emulator.user_open_home(ALICE)
    event = last_event(emulator)
    assert event["type"] == "app_home_opened" and event["tab"] == "home" and event["user"] == ALICE
    assert emulator.events[-1]["is_ext_shared_channel"] is False


def test_rich_text_structure() -> None:
    text = "See <https://x.example|the doc> :tada:\n- one\n- _two_\n> quoted\n```\ncode\n```\n1. first"
    elements = rich_text_elements(text)
    assert [e["type"] for e in elements] == [
        "rich_text_section",
        "rich_text_list",
        "rich_text_quote",
        "rich_text_preformatted",
        "rich_text_list",
    ]
    assert elements[0]["elements"][1] == {"type": "link", "url": "https://x.example", "text": "the doc"}
    assert elements[0]["elements"][3] == {"type": "emoji", "name": "tada"}
    assert elements[1]["style"] == "bullet" and len(elements[1]["elements"]) == 2
    assert elements[1]["elements"][1]["elements"] == [
        {"type": "text", "text": "two", "style": {"italic": True}}
    ]
    assert elements[3]["elements"] == [{"type": "text", "text": "code"}]
    assert elements[4]["style"] == "ordered"


def test_rich_text_holds_the_characters_text_escapes(emulator: SlackEmulator) -> None:
    # What a person types reaches `text` as Slack's mrkdwn (`&`, `<`, `>` escaped); the rich text
    # block holds the characters themselves.
    emulator.user_post(CAROL, HELP, "x &lt; y &amp;&amp; <https://a.example/?p=1&amp;q=2|a &amp; b>")
    event = last_event(emulator)
    assert event["text"] == "x &lt; y &amp;&amp; <https://a.example/?p=1&amp;q=2|a &amp; b>"
    [section] = event["blocks"][0]["elements"]
    assert section["elements"] == [
        {"type": "text", "text": "x < y && "},
        {"type": "link", "url": "https://a.example/?p=1&q=2", "text": "a & b"},
    ]
