"""Files copied into the file store, mentions resolved to names, and what happens when a file can't be."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest

from sandbox.workspace import ALICE, CONNECT, DAN, TRIAGE
from store.context import Desk
from store.models import Attachment
from tests.bot.inbound_harness import (  # noqa: F401 (fixtures)
    Intake,
    all_done,
    desk_settings,
    emulator_fixture,
    intake_fixture,
    open_connect_ticket,
    triage_thread,
)

PDF = b"%PDF-1.4 quarterly report" * 10


def attachments(intake: Intake) -> list[Attachment]:
    with intake.db.transaction() as session:
        return list(session.query(Attachment).order_by(Attachment.id))


def test_customer_files_are_copied_into_the_file_store(intake: Intake) -> None:
    intake.emulator.user_post(DAN, CONNECT, "Here is the log", files=[("printer log.txt", b"E42 fuser\n")])
    intake.run()
    [attachment] = attachments(intake)
    assert attachment.filename == "printer log.txt" and attachment.size == 10
    assert attachment.sha256 == hashlib.sha256(b"E42 fuser\n").hexdigest()
    assert intake.desk.files.get(attachment.sha256) == b"E42 fuser\n"


def test_a_files_only_message_is_named_after_its_file(intake: Intake) -> None:
    intake.emulator.user_post(DAN, CONNECT, "", files=[("report.pdf", PDF, "application/pdf")])
    intake.run()
    [ticket] = intake.tickets()
    assert ticket.subject == "File: report.pdf"
    assert attachments(intake)[0].content_type == "application/pdf"


def test_slack_connect_file_stub_is_completed_with_files_info(intake: Intake) -> None:
    intake.emulator.user_post(DAN, CONNECT, "See attached", files=[("report.pdf", PDF, "application/pdf")])
    [envelope] = intake.emulator.events
    stubbed = copy.deepcopy(envelope)
    stubbed["event"]["files"] = [
        {"id": f["id"], "file_access": "check_file_info"} for f in stubbed["event"]["files"]
    ]
    intake.store(stubbed)
    intake.fed = 1
    intake.run()
    assert [a.size for a in attachments(intake)] == [len(PDF)]
    assert intake.emulator.calls_to("files.info")


@pytest.mark.parametrize("text", ["Use this driver", "note: their driver, for the record"])
def test_staff_files_are_kept_with_their_message(intake: Intake, text: str) -> None:
    """A reply's files go with it; a note's are kept in the ticket's record and go nowhere."""
    open_connect_ticket(intake)
    card = triage_thread(intake)
    intake.emulator.user_post(ALICE, TRIAGE, text, thread_ts=card, files=[("driver.zip", b"PK..")])
    intake.run()
    message = intake.messages()[-1]
    [attachment] = attachments(intake)
    assert attachment.message_id == message.id and attachment.filename == "driver.zip"
    assert intake.desk.files.get(attachment.sha256) == b"PK.."
    is_note = text.startswith("note:")
    assert len(intake.outbox("slack.origin_post")) == (0 if is_note else 1)


def test_a_file_too_large_is_named_in_the_triage_thread_and_the_message_kept(
    database_url: str, emulator, tmp_path: Path
) -> None:
    desk = Desk.build(desk_settings(database_url, emulator, tmp_path / "files", max_message_bytes=100))
    intake = Intake(emulator, desk)
    big = "<!channel> big_report*.pdf"
    emulator.user_post(DAN, CONNECT, "Two files", files=[("small.txt", b"ok"), (big, PDF)])
    intake.run()
    assert [a.filename for a in attachments(intake)] == ["small.txt"]
    [line] = [row.payload["text"] for row in intake.outbox("slack.thread_line")]
    # The name is the sender's: literal in Slack, never an @channel (and no Markdown backslashes).
    assert "&lt;!channel&gt; big_report*.pdf: " in line and "more than the 100 bytes" in line
    assert len(intake.messages()) == 1
    desk.db.dispose()


def test_the_bot_token_never_goes_to_a_host_that_is_not_slacks(intake: Intake) -> None:
    intake.emulator.user_post(DAN, CONNECT, "See attached", files=[("report.pdf", PDF)])
    [envelope] = intake.emulator.events
    forged = copy.deepcopy(envelope)
    # A whole file object (not Slack Connect's stub) whose addresses point elsewhere.
    forged["event"]["files"] = [
        {
            "id": slack_file["id"],
            "name": "report.pdf",
            "file_access": "visible",
            "url_private": "https://attacker.example/steal",
            "url_private_download": "https://attacker.example/steal",
        }
        for slack_file in forged["event"]["files"]
    ]
    intake.store(forged)
    intake.fed = 1
    intake.run()
    assert attachments(intake) == []
    [line] = [row.payload["text"] for row in intake.outbox("slack.thread_line")]
    assert "not one of Slack's file hosts" in line


def test_mentions_are_stored_as_names(intake: Intake) -> None:
    intake.emulator.user_post(DAN, CONNECT, "Can <@U0ALICE> look at <#C0HELP>? :fire:")
    intake.run()
    [message] = intake.messages()
    assert message.body_markdown == "Can @alice look at #it-help? 🔥"
    assert all_done(intake)


@pytest.mark.parametrize(
    ("name", "shown"),
    [("../../etc/passwd", "passwd"), ("a\x00b\x1f.txt", "ab.txt"), ("", "F")],
)
def test_file_names_are_sanitised(name: str, shown: str) -> None:
    from bot.slack_files import safe_filename

    assert safe_filename(name, "F") == shown
