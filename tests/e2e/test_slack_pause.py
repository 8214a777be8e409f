"""A bot token Slack stops accepting, against the running service: Slack delivery pauses (rows kept),
mail keeps flowing, `servicedesk outbox` says why the Slack rows are not moving, and everything
goes out once the token works again."""

from __future__ import annotations

import pytest

from bot.cli import main
from sandbox.faults import Fault
from store.service_state import slack_paused
from tests.e2e.conftest import RunningDesk
from tests.e2e.test_email_flow import customer_mail, mails_to

pytestmark = pytest.mark.timeout(120)


def outbox_listing(
    service: RunningDesk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    monkeypatch.setenv("SERVICEDESK_DATABASE_URL", service.settings.database_url)
    capsys.readouterr()
    assert main(["outbox"]) == 0
    return capsys.readouterr().out


def test_the_outbox_listing_says_slack_delivery_is_paused_and_why(
    service: RunningDesk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service.emulator.add_fault("*", Fault.slack_error("token_revoked"), times=None)
    raw, _message_id = customer_mail("The printer is on fire")
    assert service.send_mail(raw)[0] == 250
    service.wait_for(lambda: slack_paused(service.db), "Slack delivery paused")
    service.wait_for(lambda: mails_to(service, "bob@customer.test"), "the acknowledgement, mail not paused")

    listing = outbox_listing(service, monkeypatch, capsys)
    assert "Slack delivery is paused: Slack rejected the bot token (token_revoked)" in listing
    assert "slack.card" in listing  # the card waits, kept

    service.emulator.clear_faults()
    service.wait_for(lambda: service.card(1), "the card once the token works")
    service.wait_for(lambda: not slack_paused(service.db), "Slack delivery resumed")
    assert "paused" not in outbox_listing(service, monkeypatch, capsys)


def test_a_slow_token_check_while_paused_does_not_hold_back_mail(service: RunningDesk) -> None:
    """While Slack delivery is paused the worker asks `auth.test` whether the token works again.
    Slack slow to answer that (here 10 s) held back every claim meanwhile, emails included: a
    customer's acknowledgement waited for Slack, which it does not need. It now goes while the
    check is still waiting for its answer."""
    service.emulator.add_fault("*", Fault.slack_error("token_revoked"), times=None)
    raw, _message_id = customer_mail("The printer is on fire")
    assert service.send_mail(raw)[0] == 250
    service.wait_for(lambda: slack_paused(service.db), "Slack delivery paused")
    service.wait_for(lambda: mails_to(service, "bob@customer.test"), "the first acknowledgement")

    service.emulator.clear_faults()
    slow = service.emulator.add_fault("auth.test", Fault.hang(10.0), times=None)
    service.emulator.add_fault("*", Fault.slack_error("token_revoked"), times=None)
    service.wait_for(lambda: slow.hits >= 1, "a token check under way")
    answered = len(service.emulator.calls_to("auth.test"))
    raw, _message_id = customer_mail(
        "The scanner is on fire too", subject="Scanner", message_id="<scan@customer.test>"
    )
    assert service.send_mail(raw)[0] == 250

    service.wait_for(lambda: len(mails_to(service, "bob@customer.test")) >= 2, "the second acknowledgement")
    assert len(service.emulator.calls_to("auth.test")) == answered  # the check was still waiting
    service.emulator.clear_faults()
