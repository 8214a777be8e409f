"""The mail sink, driven with smtplib: storage, fault modes and AUTH."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from sandbox.mail_sink import MailSink


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


def message(subject: str = "Hello", to: str = "customer@example.com") -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Support <support@acme.example>"
    mail["To"] = to
    mail["Subject"] = subject
    mail.set_content("Plain part")
    mail.add_alternative("<p>HTML part</p>", subtype="html")
    return mail


def test_keeps_envelope_raw_and_parsed(sink: MailSink) -> None:
    with smtplib.SMTP(sink.host, sink.port) as smtp:
        smtp.send_message(
            message(), from_addr="bounce+x@acme.example", to_addrs=["a@example.com", "b@example.com"]
        )
    [mail] = sink.wait_for(1)
    assert mail.mail_from == "bounce+x@acme.example"
    assert mail.rcpt_tos == ["a@example.com", "b@example.com"]
    assert mail.message["Subject"] == "Hello"
    plain = mail.message.get_body(("plain",))
    assert plain is not None and plain.get_content().strip() == "Plain part"
    assert b"HTML part" in mail.raw


def test_temporary_failure_for_the_next_messages_then_recovery(sink: MailSink) -> None:
    sink.fail_next(2, code=451)
    for _ in range(2):
        with smtplib.SMTP(sink.host, sink.port) as smtp, pytest.raises(smtplib.SMTPDataError) as raised:
            smtp.send_message(message())
        assert raised.value.smtp_code == 451
    with smtplib.SMTP(sink.host, sink.port) as smtp:
        smtp.send_message(message("third"))
    assert [m.message["Subject"] for m in sink.wait_for(1)] == ["third"]
    assert sink.refused == 2


def test_permanent_failure(sink: MailSink) -> None:
    sink.fail_next(1, code=554, message="5.7.1 Rejected as spam")
    with smtplib.SMTP(sink.host, sink.port) as smtp, pytest.raises(smtplib.SMTPDataError) as raised:
        smtp.send_message(message())
    assert (raised.value.smtp_code, raised.value.smtp_error) == (554, b"5.7.1 Rejected as spam")


def test_recipient_refused_at_rcpt_until_cleared(sink: MailSink) -> None:
    sink.reject_recipient("gone@example.com")
    with smtplib.SMTP(sink.host, sink.port) as smtp:
        refused = smtp.send_message(message(), to_addrs=["gone@example.com", "here@example.com"])
    assert refused == {"gone@example.com": (550, b"5.1.1 No such user")}
    assert sink.wait_for(1)[0].rcpt_tos == ["here@example.com"]

    sink.reject_recipient("busy@example.com", code=450)
    with smtplib.SMTP(sink.host, sink.port) as smtp, pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        smtp.send_message(message(), to_addrs=["busy@example.com"])
    assert raised.value.recipients["busy@example.com"][0] == 450

    sink.clear_faults()
    with smtplib.SMTP(sink.host, sink.port) as smtp:
        smtp.send_message(message(), to_addrs=["gone@example.com"])
    assert sink.wait_for(2)[1].rcpt_tos == ["gone@example.com"]


def test_auth_required_when_configured() -> None:
    with MailSink(auth=("relay", "s3cret")) as sink:
        assert sink.url == f"smtp://relay:s3cret@127.0.0.1:{sink.port}"
        with smtplib.SMTP(sink.host, sink.port) as smtp, pytest.raises(smtplib.SMTPSenderRefused) as raised:
            smtp.send_message(message())
        assert raised.value.smtp_code == 530
        with smtplib.SMTP(sink.host, sink.port) as smtp, pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("relay", "wrong")
        for mechanism in ("PLAIN", "LOGIN"):
            with smtplib.SMTP(sink.host, sink.port) as smtp:
                smtp.ehlo()
                smtp.user, smtp.password = "relay", "s3cret"
                smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"), initial_response_ok=True)
                smtp.send_message(message(mechanism))
        assert [(m.message["Subject"], m.auth_user) for m in sink.wait_for(2)] == [
            ("PLAIN", "relay"),
            ("LOGIN", "relay"),
        ]


def test_wait_for_times_out(sink: MailSink) -> None:
    with pytest.raises(TimeoutError):
        sink.wait_for(1, timeout=0.1)
