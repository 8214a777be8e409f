"""`!` commands typed in a ticket's triage thread: run once, never delivered, answered privately."""

from __future__ import annotations

import copy

from bot.commands import CommandContext, run_desk_command
from bot.inbound_commands import is_command, unformatted_command
from bot.inbound_triage import StaffMessageKind, classify_staff_message
from sandbox.workspace import ALICE, CONNECT, DAN, TRIAGE
from tests.bot.inbound_harness import (  # noqa: F401 (fixtures)
    Intake,
    all_done,
    emulator_fixture,
    intake_fixture,
    open_connect_ticket,
    triage_thread,
)


def test_a_thread_command_acts_on_the_threads_ticket_and_is_never_delivered(intake: Intake) -> None:
    open_connect_ticket(intake)
    card = triage_thread(intake)
    intake.emulator.user_post(ALICE, TRIAGE, "!priority high", thread_ts=card)
    intake.run()
    [ticket] = intake.tickets()
    assert ticket.priority == "high"
    assert len(intake.messages()) == 1  # the customer's; the command is not a message
    assert intake.outbox("slack.origin_post") == [] and intake.outbox("email.send") == []
    assert all_done(intake)


def test_an_unknown_command_gets_a_usage_line_in_the_thread(intake: Intake) -> None:
    open_connect_ticket(intake)
    card = triage_thread(intake)
    intake.emulator.user_post(ALICE, TRIAGE, "!frobnicate", thread_ts=card)
    intake.run()
    [answer] = intake.emulator.ephemerals(channel=TRIAGE, user=ALICE)
    assert "frobnicate" in answer.text
    assert intake.emulator.calls_to("chat.postEphemeral")[0].params.get("thread_ts") == card
    assert len(intake.messages()) == 1


def test_a_command_delivered_twice_runs_once(intake: Intake) -> None:
    open_connect_ticket(intake)
    card = triage_thread(intake)
    intake.emulator.user_post(ALICE, TRIAGE, "!label-create urgent-fix", thread_ts=card)
    intake.run()
    again = copy.deepcopy(intake.emulator.events[-1])
    again["event_id"] = "Ev0COMMANDAGAIN"
    intake.store(again)
    intake.run()
    # A second run would have answered that the label exists already.
    assert len(intake.emulator.ephemerals(user=ALICE)) == 1
    assert all_done(intake)


def test_a_thread_command_names_the_people_it_mentions(intake: Intake) -> None:
    open_connect_ticket(intake)
    card = triage_thread(intake)
    intake.emulator.user_post(ALICE, TRIAGE, "!assign <@U0BOB>", thread_ts=card)
    intake.emulator.user_post(ALICE, TRIAGE, "!note ask <@U0BOB> about the fuser", thread_ts=card)
    intake.run()
    [ticket] = intake.tickets()
    assert ticket.assignee_slack_id == "U0BOB"
    # The new owner is mentioned in the thread (Slack shows his name and tells him); the note,
    # kept as words, names him.
    lines = [row.payload["text"] for row in intake.outbox("slack.thread_line")]
    assert "alice assigned the ticket to <@U0BOB>" in lines, lines
    assert any("ask @Bob Baker about the fuser" in message.body_markdown for message in intake.messages())


def test_a_command_in_a_merged_tickets_thread_is_refused_and_changes_neither_ticket(intake: Intake) -> None:
    intake.emulator.user_post(DAN, CONNECT, "The printer is broken")
    intake.emulator.user_post(DAN, CONNECT, "The printer is still broken")
    intake.run()
    first_thread = triage_thread(intake, 1)
    assert run_desk_command(CommandContext(intake.desk, ALICE, "Alice", True), "merge 1 into 2").ok
    intake.emulator.user_post(ALICE, TRIAGE, "!priority urgent", thread_ts=first_thread)
    intake.run()

    [answer] = intake.emulator.ephemerals(channel=TRIAGE, user=ALICE)
    assert "#1 was merged into #2" in answer.text
    assert [ticket.priority for ticket in intake.tickets()] == ["normal", "normal"]
    assert all_done(intake)


def test_a_message_is_a_command_however_its_mark_is_typed_or_formatted() -> None:
    """What decides that a staff message is never delivered: `!` or the full-width `！` an input
    method types, bare or inside formatting; the hint names the plain command either way."""
    for text in ["!close", " ！close", "*!close*", "*！close*", "_!note_ the driver", "`！priority high`"]:
        assert is_command(text), text
        assert classify_staff_message(text) is StaffMessageKind.COMMAND, text
    assert unformatted_command("*！close*") == "!close"
    assert unformatted_command("_!note_ the driver") == "!note the driver"
    for text in ["*Important!*", "hello *!close*", "> !close", "Thanks!"]:
        assert not is_command(text), text
        assert classify_staff_message(text) is StaffMessageKind.REPLY, text
