"""Helpers for the command tests: a desk on the test database, staff, and what the outbox holds.

(No tests here; the other test_commands_* modules import these.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.commands import CommandContext, CommandReply, run_desk_command, run_thread_command
from store import actions
from store.actions import Actor
from store.context import Desk
from store.db import Database
from store.models import Origin, Outbox, SlackUser, TicketEvent
from store.settings import Settings

TRIAGE = "C0TRIAGE"
ALICE = "U0ALICE"
BOB = "U0BOB"
OUTSIDER = "U0DAN"


def make_desk(db: Database, tmp_path: Path) -> Desk:
    settings = Settings(
        triage_channel=TRIAGE,
        support_address="support@example.com",
        files_dir=tmp_path / "files",
        database_url=db.url,
    )
    desk = Desk.build(settings, db=db)
    with db.transaction() as session:
        session.add(SlackUser(user_id=ALICE, name="alice", display_name="Alice", is_staff=True))
        session.add(SlackUser(user_id=BOB, name="bob", display_name="Bob", real_name="Bob B", is_staff=True))
        session.add(SlackUser(user_id="U0ROBOT", name="robot", is_bot=True))
    return desk


def staff(desk: Desk, user_id: str = ALICE, name: str = "Alice") -> CommandContext:
    return CommandContext(desk, user_id, name, True, workspace_url="https://acme.slack.com/")


def desk_cmd(desk: Desk, text: str, ctx: CommandContext | None = None) -> CommandReply:
    return run_desk_command(ctx or staff(desk), text)


def thread_cmd(desk: Desk, number: int, text: str) -> CommandReply:
    return run_thread_command(staff(desk), number, text)


def email_ticket(
    desk: Desk, email: str = "dan@globex.example", subject: str = "Printer", body: str = ""
) -> int:
    with desk.db.transaction() as s:
        customer = actions.customer_for_email(s, email, email.partition("@")[0].title())
        ticket = actions.open_ticket(
            s,
            desk.policy,
            subject=subject,
            requester=customer,
            origin=Origin.EMAIL,
            actor=Actor("c", email=email),
        )
        if body:
            actions.add_customer_message(
                s,
                desk.policy,
                ticket,
                customer=customer,
                body_markdown=body,
                source="email",
                email_message_id=f"<{subject}.{ticket.number}@globex.example>",
            )
        return ticket.number


def slack_ticket(desk: Desk, user_id: str = "U0EXTERIN", thread_ts: str = "1700000000.000100") -> int:
    with desk.db.transaction() as s:
        customer = actions.customer_for_slack_user(s, user_id, name="Erin", team_id="T0EXT")
        ticket = actions.open_ticket(
            s,
            desk.policy,
            subject="From Slack",
            requester=customer,
            origin=Origin.SLACK,
            actor=Actor("Erin"),
            origin_channel="C0CONNECT",
            origin_thread_ts=thread_ts,
        )
        actions.add_customer_message(
            s,
            desk.policy,
            ticket,
            customer=customer,
            body_markdown="hello",
            source="slack",
            slack_channel="C0CONNECT",
            slack_ts=thread_ts,
        )
        return ticket.number


def outbox_rows(desk: Desk, kind: str | None = None) -> list[Outbox]:
    with desk.db.transaction() as s:
        query = select(Outbox).order_by(Outbox.id)
        if kind:
            query = query.where(Outbox.kind == kind)
        return list(s.scalars(query))


def thread_lines(desk: Desk) -> list[str]:
    return [str(row.payload.get("text")) for row in outbox_rows(desk, "slack.thread_line")]


def emails(desk: Desk) -> list[dict[str, Any]]:
    return [row.payload for row in outbox_rows(desk, "email.send")]


def counts(desk: Desk) -> tuple[int, int]:
    """(outbox rows, ticket events): both unchanged when a command changes nothing."""
    with desk.db.transaction() as s:
        rows = s.scalar(select(func.count()).select_from(Outbox)) or 0
        events = s.scalar(select(func.count()).select_from(TicketEvent)) or 0
        return int(rows), int(events)
