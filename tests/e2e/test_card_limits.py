"""The card at Slack's Block Kit limits, driven end to end: signed `/desk` commands into the running
service, the card posted and updated (`chat.update`) in the Slack emulator, which checks the blocks
as Slack does (a section's text at most 3,000 characters, a select menu at most 100 options).

- 30 tracker links on one ticket: every one shows on the card, none cut inside its `<url|words>`.
- 150 labels: every label can be picked from the card's label menu.
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from sandbox.blocks import validate_blocks
from sandbox.workspace import ALICE, BOB, TRIAGE
from store import actions
from store.models import Outbox, OutboxState
from tests.e2e.conftest import RunningDesk
from tests.e2e.test_triage import Triage

pytestmark = pytest.mark.timeout(180)

_TOKEN = re.compile(r"<[^<>]*>")


def _card_blocks(running: Triage, number: int) -> list[dict]:
    message = running.emulator.message(TRIAGE, running.card_ts(number))
    assert message is not None
    return list(message.blocks or [])


def _mrkdwn_texts(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b.get("type") == "section" and "text" in b]


def test_thirty_tracker_links_all_show_on_the_card_and_none_is_cut(service: RunningDesk) -> None:
    running = Triage(service)
    assert running.command(ALICE, "new dan@globex.example Checkout fails").startswith("Opened #1")
    running.card_ts(1)
    urls = [
        "https://jira.example-corp.atlassian.net/browse/SHOP-"
        f"{1000 + i}?focusedCommentId={500000 + i}&page=com.atlassian.jira.plugin.system.issuetabpanels"
        for i in range(30)
    ]
    # Two staff members share the work: each has a burst of 20 commands.
    for index, url in enumerate(urls):
        who = ALICE if index % 2 else BOB
        answer = running.command(who, f"link 1 <{url}>")
        assert "Linked" in answer or "link" in answer.lower(), answer
    service.wait_for(lambda: len(actions_links(running)) == 30, "30 links stored")
    running.wait_worker_idle()
    settled(running)

    texts = _mrkdwn_texts(_card_blocks(running, 1))
    shown = "\n".join(texts)
    missing = [f"SHOP-{1000 + i}" for i in range(30) if f"SHOP-{1000 + i}" not in shown]
    assert missing == [], f"links missing from the card: {missing}"
    for text in texts:
        # Every `<` opens a token Slack closes: a cut `<https://…` shows as raw markup.
        stripped = _TOKEN.sub("", text)
        assert "<" not in stripped and ">" not in stripped, f"a link cut in two on the card: {text[-200:]!r}"
    assert len(service.cards()) == 1
    assert_show_is_valid(running)


def settled(running: Triage) -> None:
    """Every event handled and every delivery done; none failed (Slack refused nothing)."""
    running.wait_worker_idle()

    def delivered() -> bool:
        with running.db.transaction() as session:
            rows = session.execute(select(Outbox.kind, Outbox.state, Outbox.last_error)).all()
        states = [row.state for row in rows]
        assert OutboxState.FAILED not in states, "a delivery failed: Slack refused a call"
        return all(state in (OutboxState.DONE, OutboxState.CANCELLED) for state in states)

    # A thread line per change, paced by Slack's per-channel limit (about one post a second).
    running.service.wait_for(delivered, "every delivery done", timeout=120)


def actions_links(running: Triage) -> list[tuple[str, int | None, str | None]]:
    with running.db.transaction() as session:
        ticket = actions.ticket_by_number(session, 1)
        return list(actions.links_of(session, ticket))


def test_every_one_of_150_labels_can_be_picked_on_the_card(service: RunningDesk) -> None:
    running = Triage(service)
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    running.card_ts(1)
    names = [f"team-{i:03d}" for i in range(149)]
    with running.db.transaction() as session:
        for name in names:
            actions.create_label(session, name)
    # The 150th through the real command, then a triage change re-renders the card.
    assert running.command(ALICE, "label-create zz-last").startswith("Created the label zz-last")
    assert running.command(ALICE, "label 1 +zz-last") == "#1's labels: zz-last."
    assert running.command(ALICE, "priority 1 high") == "#1 now has high priority."
    settled(running)
    assert "Priority: High" in running.card_text(1)

    [controls] = [b for b in _card_blocks(running, 1) if b.get("type") == "actions"]
    [menu] = [e for e in controls["elements"] if e.get("action_id") == "ticket_labels"]
    groups = menu.get("option_groups") or [{"options": menu.get("options", [])}]
    offered = {option["value"] for group in groups for option in group["options"]}
    unreachable = sorted((set(names) | {"zz-last"}) - offered)
    assert unreachable == [], f"{len(unreachable)} labels cannot be picked on the card: {unreachable[:5]}…"
    assert [o["value"] for o in menu["initial_options"]] == ["zz-last"]

    # Picking one more on the card keeps the one it had: the menu sends the whole choice.
    action = {
        "action_id": "ticket_labels",
        "block_id": controls["block_id"],
        "type": "multi_static_select",
        "selected_options": [
            {"text": {"type": "plain_text", "text": "team-000"}, "value": "team-000"},
            {"text": {"type": "plain_text", "text": "zz-last"}, "value": "zz-last"},
        ],
        "action_ts": "1.1",
    }
    running.emulator.user_block_action(ALICE, TRIAGE, running.card_ts(1), action).wait(10)
    assert sorted(label.name for label in running.ticket(1).labels) == ["team-000", "zz-last"]
    assert len(service.cards()) == 1
    assert_show_is_valid(running)


def test_a_label_created_after_the_card_can_be_picked_on_it(service: RunningDesk) -> None:
    """The card's menu offers the labels that existed when it was last drawn; a card drawn before
    any label existed says "No labels defined yet". Creating a label must reach the open cards,
    or the card keeps telling staff to create one that exists and never offers it."""
    running = Triage(service)
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    running.wait_card(1, "No labels defined yet")
    assert running.command(ALICE, "label-create billing").startswith("Created the label billing")
    settled(running)

    def offered() -> bool:
        blocks = _card_blocks(running, 1)
        menus = [
            e
            for b in blocks
            if b.get("type") == "actions"
            for e in b["elements"]
            if e.get("action_id") == "ticket_labels"
        ]
        return bool(menus) and "No labels defined yet" not in json.dumps(blocks)

    service.wait_for(offered, "the card offering the new label")
    assert len(service.cards()) == 1
    assert_show_is_valid(running)


def test_a_ticket_with_sixty_long_labels_shows_every_one_and_its_state(service: RunningDesk) -> None:
    """The card shows label names as words (DESIGN.md): all of them, not the first 3,000 characters."""
    running = Triage(service)
    assert running.command(ALICE, "new dan@globex.example Printer").startswith("Opened #1")
    running.card_ts(1)
    names = [f"{i:02d}-" + "component-subsystem-area-" * 2 + "x" * 9 for i in range(60)]
    assert all(len(name) <= 64 for name in names)
    staff = actions.Actor("alice", slack_id=ALICE)
    with running.db.transaction() as session:
        for name in names:
            actions.create_label(session, name)
        ticket = actions.ticket_by_number(session, 1)
        actions.change_labels(session, ticket, names, [], staff)
    assert running.command(ALICE, "priority 1 urgent") == "#1 now has urgent priority."
    settled(running)
    texts = _mrkdwn_texts(_card_blocks(running, 1))
    shown = "\n".join(texts)
    assert "Priority: Urgent" in shown
    missing = [name for name in names if name not in shown]
    assert missing == [], f"{len(missing)} of 60 labels missing from the card, first {missing[:2]}"

    assert_show_is_valid(running)


def assert_show_is_valid(running: Triage) -> None:
    """`/desk show 1` answers with the card and details: blocks Slack would take."""
    interaction = running.emulator.user_command(BOB, TRIAGE, "/desk", "show 1").wait(10)
    blocks = (interaction.ack_payload or {}).get("blocks")
    assert blocks, interaction.ack_payload
    assert validate_blocks(blocks) == []
