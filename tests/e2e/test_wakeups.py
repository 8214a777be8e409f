"""The worker is woken by the work this process commits, not by its poll.

The service runs with a worker whose poll is far longer than any wait below: everything that
arrives must be handled because the commit woke the worker. (Waits bound a broken test; no
assertion is about speed.)
"""

from __future__ import annotations

import pytest

from bot.worker import WorkerConfig
from sandbox.workspace import ALICE, TRIAGE
from tests.e2e.conftest import WAIT_SECONDS, RunningDesk, StartService, message_text
from tests.e2e.test_email_flow import customer_mail, mails_to

pytestmark = pytest.mark.timeout(120)

# Three times the longest wait of a test: only a wake-up gets the work done in time.
LONG_POLL = 3 * WAIT_SECONDS


@pytest.fixture
def long_poll(start_service: StartService) -> RunningDesk:
    return start_service(worker_config=WorkerConfig(idle_sleep=LONG_POLL, max_idle_sleep=LONG_POLL))


def open_by_email(service: RunningDesk, number: int, subject: str) -> str:
    """A customer email over SMTP; returns its card's ts once the card and the message are in Slack."""
    raw, _ = customer_mail(f"Body of {subject}.", subject=subject)
    assert service.send_mail(raw)[0] == 250
    card = service.wait_for(lambda: service.card(number), f"the card of #{number}")
    assert subject in message_text(card)
    # The message follows the card in its lane: claimed when the card's slot frees, not at the poll.
    service.wait_for_thread_text(card.ts, f"Body of {subject}.")
    return card.ts


def test_an_email_gets_its_card_and_acknowledgement_without_waiting_for_the_poll(
    long_poll: RunningDesk,
) -> None:
    open_by_email(long_poll, 1, "First printer")
    long_poll.wait_for_mails(1)
    # By now both loops have gone back to sleep on their long poll (the first email may have been
    # picked up by the worker's first pass at start); the second one must wake them.
    open_by_email(long_poll, 2, "Second printer")
    acks = long_poll.wait_for_mails(2)
    assert [mail.message["Auto-Submitted"] for mail in acks] == ["auto-replied", "auto-replied"]


def test_a_staff_reply_in_slack_wakes_the_worker_and_goes_out_after_its_delay(long_poll: RunningDesk) -> None:
    card_ts = open_by_email(long_poll, 1, "Printer")
    long_poll.wait_for_mails(1)
    # The event is stored by the web role and handled by the worker; the email it writes is due only
    # after the reply delay, a time the worker learns from the commit and sleeps until.
    long_poll.post_as(ALICE, "Unplug it, please.", thread_ts=card_ts)
    [reply] = long_poll.wait_for(lambda: mails_to(long_poll, "bob@customer.test")[1:], "the reply by email")
    body = reply.message.get_body(("plain",))
    assert body is not None and "Unplug it, please." in body.get_content()


def test_a_slash_command_wakes_delivery(long_poll: RunningDesk) -> None:
    open_by_email(long_poll, 1, "Printer")
    long_poll.wait_for_mails(1)
    interaction = long_poll.emulator.user_command(ALICE, TRIAGE, "/desk", "priority 1 high").wait(10)
    assert (interaction.ack_payload or {}).get("text") == "#1 now has high priority."
    # The command's action writes the card update and a thread line in the web role's thread.
    long_poll.wait_for(
        lambda: "Priority: High" in message_text(long_poll.emulator.message(TRIAGE, long_poll.card(1).ts)),  # type: ignore[union-attr]
        "the card updated",
    )
    long_poll.wait_for_thread_text(long_poll.card(1).ts, "alice set priority to high")  # type: ignore[union-attr]
