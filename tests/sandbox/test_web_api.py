"""The Web API as the unmodified slack_sdk WebClient sees it over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import (
    ALICE,
    BOB,
    BOT_ID,
    BOT_USER,
    CAROL,
    CONNECT,
    DAN,
    EMPTY,
    ERIN,
    EXTERNAL_TEAM,
    HELP,
    HOME_TEAM,
    TRIAGE,
)


def error_of(call) -> str:
    with pytest.raises(SlackApiError) as raised:
        call()
    return raised.value.response["error"]


def test_auth_test_reports_the_bot_and_its_scopes(client: WebClient) -> None:
    answer = client.auth_test()
    assert (answer["team_id"], answer["user_id"], answer["bot_id"]) == (HOME_TEAM, BOT_USER, BOT_ID)
    assert "chat:write" in answer.headers["x-oauth-scopes"].split(",")


def test_every_answer_carries_x_oauth_scopes(emulator: SlackEmulator, client: WebClient) -> None:
    emulator.scopes = ["chat:write", "channels:read"]
    answer = client.conversations_info(channel=TRIAGE)
    assert answer.headers["x-oauth-scopes"] == "chat:write,channels:read"


def test_wrong_token_is_invalid_auth_with_http_200(emulator: SlackEmulator) -> None:
    client = WebClient(token="xoxb-wrong", base_url=emulator.api_url, retry_handlers=[])
    with pytest.raises(SlackApiError) as raised:
        client.auth_test()
    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == "invalid_auth"


def test_token_in_a_form_parameter_is_accepted(emulator: SlackEmulator) -> None:
    client = WebClient(base_url=emulator.api_url, retry_handlers=[])
    assert client.api_call("auth.test", data={"token": "xoxb-sandbox-token"})["ok"]
    assert error_of(lambda: client.api_call("auth.test")) == "not_authed"


def test_unknown_method_and_wrong_token_type(client: WebClient) -> None:
    assert error_of(lambda: client.api_call("chat.teleport")) == "unknown_method"
    assert (
        error_of(lambda: client.apps_connections_open(app_token="xoxb-sandbox-token"))
        == "not_allowed_token_type"
    )


def test_missing_scope_names_the_needed_scope(emulator: SlackEmulator, client: WebClient) -> None:
    emulator.scopes = ["chat:write"]
    with pytest.raises(SlackApiError) as raised:
        client.users_info(user=ALICE)
    assert raised.value.response["error"] == "missing_scope"
    assert raised.value.response["needed"] == "users:read"


def test_post_thread_reply_count_and_ts_order(emulator: SlackEmulator, client: WebClient) -> None:
    root = client.chat_postMessage(channel=TRIAGE, text="Ticket #1")
    first = client.chat_postMessage(channel=TRIAGE, text="first", thread_ts=root["ts"])
    second = client.chat_postMessage(channel=TRIAGE, text="second", thread_ts=root["ts"])

    assert root["message"]["bot_id"] == BOT_ID
    whole, _, fraction = root["ts"].partition(".")
    assert whole.isdigit() and len(fraction) == 6
    assert float(root["ts"]) < float(first["ts"]) < float(second["ts"])

    replies = client.conversations_replies(channel=TRIAGE, ts=root["ts"])["messages"]
    assert [m["text"] for m in replies] == ["Ticket #1", "first", "second"]
    assert replies[0]["reply_count"] == 2
    assert replies[0]["latest_reply"] == second["ts"]
    assert replies[1]["thread_ts"] == root["ts"]

    history = client.conversations_history(channel=TRIAGE)["messages"]
    assert [m["text"] for m in history] == ["Ticket #1"]  # replies stay in the thread
    assert [m.text for m in emulator.messages(TRIAGE, root["ts"])] == ["Ticket #1", "first", "second"]


def test_ts_is_unique_across_a_burst(client: WebClient) -> None:
    stamps = {client.chat_postMessage(channel=TRIAGE, text=str(n))["ts"] for n in range(20)}
    assert len(stamps) == 20


def test_reply_broadcast_shows_in_the_channel_too(client: WebClient) -> None:
    root = client.chat_postMessage(channel=TRIAGE, text="root")
    client.chat_postMessage(channel=TRIAGE, text="also here", thread_ts=root["ts"], reply_broadcast=True)
    history = client.conversations_history(channel=TRIAGE)["messages"]
    assert [m["text"] for m in history] == ["also here", "root"]
    assert history[0]["subtype"] == "thread_broadcast"


def test_reply_to_a_thread_that_does_not_exist_is_accepted_and_shown_nowhere(
    emulator: SlackEmulator, client: WebClient
) -> None:
    answer = client.chat_postMessage(channel=TRIAGE, text="lost", thread_ts="1500000000.000100")
    assert answer["ok"]
    assert client.conversations_history(channel=TRIAGE)["messages"] == []
    assert (
        error_of(lambda: client.conversations_replies(channel=TRIAGE, ts="1500000000.000100"))
        == "thread_not_found"
    )
    assert (
        error_of(lambda: client.chat_postMessage(channel=TRIAGE, text="x", thread_ts="0"))
        == "invalid_thread_ts"
    )


def test_staff_identity_on_a_customer_post(emulator: SlackEmulator, client: WebClient) -> None:
    answer = client.chat_postMessage(
        channel=CONNECT,
        text="We are on it",
        username="Alice Archer",
        icon_url="https://avatars.example/a.png",
    )
    message = answer["message"]
    assert message["username"] == "Alice Archer"
    assert message["icons"]["image_48"] == "https://avatars.example/a.png"
    assert message["bot_id"] == BOT_ID and message["subtype"] == "bot_message"
    assert "user" not in message
    stored = emulator.messages(CONNECT)[-1]
    assert (stored.username, stored.icon_url) == ("Alice Archer", "https://avatars.example/a.png")


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_post_errors(client: WebClient) -> None:
    assert error_of(lambda: client.chat_postMessage(channel="C0NOPE", text="x")) == "channel_not_found"
    assert error_of(lambda: client.chat_postMessage(channel=EMPTY, text="x")) == "not_in_channel"
    assert error_of(lambda: client.chat_postMessage(channel=TRIAGE, text="x" * 40_001)) == "msg_too_long"
    assert error_of(lambda: client.chat_postMessage(channel=TRIAGE, text="")) == "no_text"


@pytest.mark.parametrize(
    "blocks",
    [
        [{"type": "divider"}] * 51,
        [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}],
        [{"type": "sparkle"}],
        [{"type": "header", "text": {"type": "mrkdwn", "text": "not plain"}}],
        [{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}],
    ],
    ids=["too-many", "long-section", "unknown-type", "mrkdwn-header", "duplicate-block-id"],
)
def test_invalid_blocks(client: WebClient, blocks: list) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=TRIAGE, text="x", blocks=blocks)
    assert raised.value.response["error"] == "invalid_blocks"
    assert raised.value.response["errors"]


def test_valid_blocks_are_stored(emulator: SlackEmulator, client: WebClient) -> None:
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3000}},
        {
            "type": "actions",
            "elements": [
                {"type": "button", "action_id": "close", "text": {"type": "plain_text", "text": "Close"}}
            ],
        },
    ]
    ts = client.chat_postMessage(channel=TRIAGE, text="x", blocks=blocks)["ts"]
    assert emulator.message(TRIAGE, ts).blocks == blocks


def test_metadata_only_with_include_all_metadata(client: WebClient) -> None:
    metadata = {"event_type": "outbox_delivery", "event_payload": {"row": 42}}
    root = client.chat_postMessage(channel=TRIAGE, text="root")
    client.chat_postMessage(channel=TRIAGE, text="reply", thread_ts=root["ts"], metadata=metadata)

    plain = client.conversations_replies(channel=TRIAGE, ts=root["ts"])["messages"]
    assert all("metadata" not in m for m in plain)
    full = client.conversations_replies(channel=TRIAGE, ts=root["ts"], include_all_metadata=True)["messages"]
    assert full[1]["metadata"] == metadata
    history = client.conversations_history(channel=TRIAGE, include_all_metadata=True)["messages"]
    assert "metadata" not in history[0]
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=TRIAGE, text="x", metadata={"event_payload": {}})
    assert raised.value.response["error"] == "invalid_metadata_format"


def test_update_and_delete(emulator: SlackEmulator, client: WebClient) -> None:
    ts = client.chat_postMessage(
        channel=TRIAGE, text="open", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "open"}}]
    )["ts"]
    updated = client.chat_update(channel=TRIAGE, ts=ts, text="closed")
    assert updated["text"] == "closed"
    stored = emulator.message(TRIAGE, ts)
    assert stored.text == "closed" and stored.edited is not None
    assert stored.blocks is not None  # Slack keeps blocks an update did not mention

    client.chat_delete(channel=TRIAGE, ts=ts)
    assert emulator.message(TRIAGE, ts).deleted
    assert error_of(lambda: client.chat_update(channel=TRIAGE, ts=ts, text="x")) == "message_not_found"
    assert error_of(lambda: client.chat_delete(channel=TRIAGE, ts="1.000001")) == "message_not_found"


def test_cannot_update_or_delete_a_persons_message(emulator: SlackEmulator, client: WebClient) -> None:
    ts = emulator.user_post(ALICE, TRIAGE, "mine")
    assert error_of(lambda: client.chat_update(channel=TRIAGE, ts=ts, text="x")) == "cant_update_message"
    assert error_of(lambda: client.chat_delete(channel=TRIAGE, ts=ts)) == "cant_delete_message"


def test_deleted_parent_with_replies_stays_as_a_tombstone(client: WebClient) -> None:
    root = client.chat_postMessage(channel=TRIAGE, text="root")["ts"]
    client.chat_postMessage(channel=TRIAGE, text="reply", thread_ts=root)
    client.chat_delete(channel=TRIAGE, ts=root)
    messages = client.conversations_replies(channel=TRIAGE, ts=root)["messages"]
    assert messages[0]["subtype"] == "tombstone"
    assert messages[1]["text"] == "reply"


def test_ephemeral_and_permalink(emulator: SlackEmulator, client: WebClient) -> None:
    answer = client.chat_postEphemeral(channel=TRIAGE, user=ALICE, text="only you")
    assert answer["message_ts"]
    assert [e.text for e in emulator.ephemerals(TRIAGE, ALICE)] == ["only you"]
    assert (
        error_of(lambda: client.chat_postEphemeral(channel=TRIAGE, user=CAROL, text="x"))
        == "user_not_in_channel"
    )

    root = client.chat_postMessage(channel=TRIAGE, text="root")["ts"]
    reply = client.chat_postMessage(channel=TRIAGE, text="reply", thread_ts=root)["ts"]
    link = client.chat_getPermalink(channel=TRIAGE, message_ts=reply)["permalink"]
    assert f"/archives/{TRIAGE}/p{reply.replace('.', '')}" in link
    assert f"thread_ts={root}" in link


def test_conversations_info_and_members_pagination(client: WebClient) -> None:
    info = client.conversations_info(channel=CONNECT)["channel"]
    assert info["is_ext_shared"] is True and info["is_member"] is True
    assert client.conversations_info(channel=EMPTY)["channel"]["is_member"] is False

    first = client.conversations_members(channel=CONNECT, limit=3)
    assert first["members"] == [DAN, ERIN, ALICE]
    cursor = first["response_metadata"]["next_cursor"]
    assert cursor
    second = client.conversations_members(channel=CONNECT, limit=3, cursor=cursor)
    assert second["members"] == [BOT_USER]
    assert second["response_metadata"]["next_cursor"] == ""
    assert (
        error_of(lambda: client.conversations_members(channel=CONNECT, cursor="bm9wZQ==")) == "invalid_cursor"
    )


def test_history_pagination_and_window(client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel=HELP, text=str(n))["ts"] for n in range(5)]
    page = client.conversations_history(channel=HELP, limit=2)
    assert [m["text"] for m in page["messages"]] == ["4", "3"] and page["has_more"]
    rest = client.conversations_history(
        channel=HELP, limit=10, cursor=page["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["2", "1", "0"] and not rest["has_more"]
    window = client.conversations_history(channel=HELP, oldest=stamps[1], latest=stamps[3])
    assert [m["text"] for m in window["messages"]] == ["2"]
    inclusive = client.conversations_history(channel=HELP, oldest=stamps[1], latest=stamps[3], inclusive=True)
    assert [m["text"] for m in inclusive["messages"]] == ["3", "2", "1"]
    assert error_of(lambda: client.conversations_history(channel=EMPTY)) == "not_in_channel"


def test_replies_pagination(client: WebClient) -> None:
    root = client.chat_postMessage(channel=TRIAGE, text="root")["ts"]
    for n in range(4):
        client.chat_postMessage(channel=TRIAGE, text=f"r{n}", thread_ts=root)
    page = client.conversations_replies(channel=TRIAGE, ts=root, limit=3)
    assert [m["text"] for m in page["messages"]] == ["root", "r0", "r1"] and page["has_more"]
    rest = client.conversations_replies(
        channel=TRIAGE, ts=root, cursor=page["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["r2", "r3"]


def test_join(emulator: SlackEmulator, client: WebClient) -> None:
    assert client.conversations_join(channel=EMPTY)["channel"]["is_member"] is True
    assert client.chat_postMessage(channel=EMPTY, text="now I can")["ok"]
    assert client.conversations_join(channel=EMPTY)["warning"] == "already_in_channel"


def test_reactions(emulator: SlackEmulator, client: WebClient) -> None:
    ts = emulator.user_post(ALICE, TRIAGE, "note: internal")
    client.reactions_add(channel=TRIAGE, timestamp=ts, name="lock")
    assert (
        error_of(lambda: client.reactions_add(channel=TRIAGE, timestamp=ts, name="lock")) == "already_reacted"
    )
    emulator.user_react(BOB, TRIAGE, ts, "lock")
    got = client.reactions_get(channel=TRIAGE, timestamp=ts)["message"]["reactions"]
    assert got == [{"name": "lock", "users": [BOT_USER, BOB], "count": 2}]
    client.reactions_remove(channel=TRIAGE, timestamp=ts, name="lock")
    assert (
        error_of(lambda: client.reactions_remove(channel=TRIAGE, timestamp=ts, name="lock")) == "no_reaction"
    )
    assert (
        error_of(lambda: client.reactions_add(channel=TRIAGE, timestamp="1.000001", name="x"))
        == "message_not_found"
    )


def test_users_info_and_slack_connect_users(client: WebClient) -> None:
    alice = client.users_info(user=ALICE)["user"]
    assert alice["team_id"] == HOME_TEAM
    assert alice["profile"]["display_name"] == "alice"
    assert alice["profile"]["real_name"] == "Alice Archer"
    assert alice["profile"]["image_72"].startswith("https://")
    bob = client.users_info(user=BOB)["user"]
    assert bob["profile"]["display_name"] == "" and bob["profile"]["real_name"] == "Bob Baker"

    dan = client.users_info(user=DAN)["user"]
    assert dan["team_id"] == EXTERNAL_TEAM and dan["profile"]["team"] == EXTERNAL_TEAM
    assert dan["profile"]["email"] == "dan@globex.example"
    erin = client.users_info(user=ERIN)["user"]
    assert "email" not in erin["profile"]  # Erin's org does not share her address
    assert error_of(lambda: client.users_info(user="U0NOBODY")) == "user_not_found"


def test_lookup_by_email(client: WebClient) -> None:
    assert client.users_lookupByEmail(email="DAN@globex.example")["user"]["id"] == DAN
    assert error_of(lambda: client.users_lookupByEmail(email="erin@globex.example")) == "users_not_found"
    assert error_of(lambda: client.users_lookupByEmail(email="nobody@x.example")) == "users_not_found"


def test_calls_are_recorded(emulator: SlackEmulator, client: WebClient) -> None:
    client.chat_postMessage(channel=TRIAGE, text="a")
    client.chat_postMessage(channel=HELP, text="b")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel=EMPTY, text="c")
    posts = emulator.calls_to("chat.postMessage")
    assert [(c.channel, c.ok, c.error, c.status) for c in posts] == [
        (TRIAGE, True, None, 200),
        (HELP, True, None, 200),
        (EMPTY, False, "not_in_channel", 200),
    ]
    assert [c.params["text"] for c in emulator.calls_to("chat.postMessage", channel=HELP)] == ["b"]
    assert posts[0].time <= posts[1].time


def test_async_web_client(emulator: SlackEmulator) -> None:
    async def post() -> str:
        client = AsyncWebClient(token="xoxb-sandbox-token", base_url=emulator.api_url, retry_handlers=[])
        answer = await client.chat_postMessage(channel=TRIAGE, text="async")
        return answer["ts"]

    ts = asyncio.run(post())
    assert emulator.message(TRIAGE, ts).text == "async"
