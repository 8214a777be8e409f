"""The ticket card as data: words, controls, ids and Block Kit limits."""

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from slack_sdk.models.blocks import Block

from bot.blocks import (
    ACTION_ASSIGNEE,
    ACTION_LABELS,
    ACTION_PRIORITY,
    ACTION_STATUS,
    CardView,
    TicketLinkView,
    card_blocks,
    card_text,
    parse_ticket_number,
)

VIEW = CardView(
    number=42,
    subject="Printer <on> fire & smoke",
    requester_name="Dan Jones",
    requester_contact="dan@globex.example",
    organization="Globex",
    origin="email",
    origin_label="email",
    status="open",
    priority="high",
    assignee_user_id="U0ALICE",
    labels=("bug", "billing"),
    available_labels=("bug", "billing", "question"),
    links=(
        TicketLinkView(kind="blocks", target_number=17, url=None),
        TicketLinkView(kind="relates", target_number=None, url="https://github.com/acme/app/issues/9"),
        TicketLinkView(kind="duplicated_by", target_number=51, url=None),
    ),
    repeat_requests_30d=3,
    merged_into=None,
    created_at=datetime(2026, 11, 26, 9, 30, tzinfo=UTC),
)


def validate(blocks):
    assert len(blocks) <= 50
    for block in blocks:
        Block.parse(block).validate_json()
    ids = [block["block_id"] for block in blocks if "block_id" in block]
    assert len(ids) == len(set(ids))


def all_text(blocks):
    return json.dumps(blocks, ensure_ascii=False)


def element(blocks, action_id):
    for block in blocks:
        for candidate in block.get("elements", []):
            if candidate.get("action_id") == action_id:
                return block, candidate
    raise AssertionError(f"no {action_id}")


def test_card_shows_state_as_words():
    blocks = card_blocks(VIEW)
    validate(blocks)
    assert blocks[0] == {
        "type": "header",
        "block_id": "ticket:42:title",
        "text": {"type": "plain_text", "text": "#42 Printer <on> fire & smoke", "emoji": True},
    }
    facts = blocks[1]["text"]["text"]
    assert "Requester: Dan Jones (dan@globex.example) · Globex" in facts
    assert "Via: email" in facts
    assert "Status: Open" in facts
    assert "Priority: High" in facts
    assert "Assignee: <@U0ALICE>" in facts
    assert "Labels: bug, billing" in facts
    links = blocks[2]["text"]["text"]  # links have sections of their own, each link whole
    assert links.startswith("Links: ")
    assert "#17 (blocks)" in links
    assert "<https://github.com/acme/app/issues/9|github.com #9>" in links
    assert "#51 (duplicated by)" in links
    assert "3rd ticket in 30 days" in all_text(blocks)


def test_card_text_fallback():
    assert card_text(VIEW) == (
        "#42 Printer &lt;on&gt; fire &amp; smoke · Status: Open · Priority: High · "
        "Assignee: <@U0ALICE> · Labels: bug, billing"
    )


def test_controls_carry_the_ticket_number_and_current_state():
    blocks = card_blocks(VIEW)
    block, status = element(blocks, ACTION_STATUS)
    assert parse_ticket_number(block["block_id"]) == 42
    assert status["type"] == "static_select"
    assert [option["value"] for option in status["options"]] == ["open", "pending", "resolved", "closed"]
    assert status["initial_option"] == {
        "text": {"type": "plain_text", "text": "Open", "emoji": True},
        "value": "open",
    }
    _, priority = element(blocks, ACTION_PRIORITY)
    assert priority["initial_option"]["value"] == "high"
    _, assignee = element(blocks, ACTION_ASSIGNEE)
    assert assignee == {
        "type": "users_select",
        "action_id": "ticket_assignee",
        "placeholder": {"type": "plain_text", "text": "Assign to…", "emoji": True},
        "initial_user": "U0ALICE",
    }
    _, labels = element(blocks, ACTION_LABELS)
    assert labels["type"] == "multi_static_select"
    assert [option["value"] for option in labels["options"]] == ["bug", "billing", "question"]
    assert [option["value"] for option in labels["initial_options"]] == ["bug", "billing"]


def test_controls_block_id_changes_with_state_so_clients_refresh_selects():
    before, _ = element(card_blocks(VIEW), ACTION_STATUS)
    after, _ = element(card_blocks(replace(VIEW, status="pending")), ACTION_STATUS)
    assert before["block_id"] != after["block_id"]
    assert parse_ticket_number(after["block_id"]) == 42


def test_unassigned_and_unlabelled():
    view = replace(VIEW, assignee_user_id=None, labels=(), links=(), repeat_requests_30d=1)
    blocks = card_blocks(view)
    validate(blocks)
    facts = blocks[1]["text"]["text"]
    assert "Assignee: Unassigned" in facts and "Labels: None" in facts and "Links" not in facts
    _, assignee = element(blocks, ACTION_ASSIGNEE)
    assert "initial_user" not in assignee
    _, labels = element(blocks, ACTION_LABELS)
    assert "initial_options" not in labels
    assert "ticket in 30 days" not in all_text(blocks)


def test_no_labels_defined_has_no_empty_select():
    blocks = card_blocks(replace(VIEW, labels=(), available_labels=()))
    validate(blocks)
    with pytest.raises(AssertionError):
        element(blocks, ACTION_LABELS)
    assert "/desk label-create" in all_text(blocks)


def test_label_on_ticket_but_not_available_is_still_an_option():
    blocks = card_blocks(replace(VIEW, labels=("legacy",), available_labels=("bug",)))
    validate(blocks)
    _, labels = element(blocks, ACTION_LABELS)
    assert [option["value"] for option in labels["options"]] == ["legacy", "bug"]
    assert [option["value"] for option in labels["initial_options"]] == ["legacy"]


def test_limits_hold_for_huge_input():
    view = replace(
        VIEW,
        subject="S" * 500,
        requester_name="N" * 4000,
        labels=tuple(f"label-{n}-" + "x" * 80 for n in range(3)),
        available_labels=tuple(f"label-{n}-" + "x" * 80 for n in range(150)),
    )
    blocks = card_blocks(view)
    validate(blocks)
    _, labels = element(blocks, ACTION_LABELS)
    # More than 100 labels: groups of at most 100, every label offered.
    groups = labels["option_groups"]
    assert [len(group["options"]) for group in groups] == [100, 50]
    assert all(len(option["text"]["text"]) <= 75 for group in groups for option in group["options"])
    assert all(len(group["label"]["text"]) <= 75 for group in groups)
    assert len(blocks[0]["text"]["text"]) <= 150
    assert len(blocks[1]["text"]["text"]) <= 3000


def test_merged_card_has_banner_and_no_controls():
    blocks = card_blocks(replace(VIEW, merged_into=17, status="closed"))
    validate(blocks)
    assert "Merged into #17" in blocks[1]["text"]["text"]
    assert all(block["type"] != "actions" for block in blocks)
    assert "Merged into #17" in card_text(replace(VIEW, merged_into=17))


@pytest.mark.parametrize(
    ("block_id", "expected"),
    [
        ("ticket:42:controls", 42),
        ("ticket:42:controls:ab12cd34", 42),
        ("ticket:7", 7),
        ("ticket:x:controls", None),
        ("other:42", None),
        ("", None),
    ],
)
def test_parse_ticket_number(block_id, expected):
    assert parse_ticket_number(block_id) == expected
