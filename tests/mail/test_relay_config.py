"""SERVICEDESK_SMTP_RELAY_URL parsed into a RelayConfig, and malformed values explained."""

from __future__ import annotations

import pytest

from mail.relay import DEFAULT_URL, DeliveryStatus, RelayConfig, SendResult


def test_default_setting():
    config = RelayConfig.from_url(DEFAULT_URL)
    assert config == RelayConfig(host="127.0.0.1", port=1025)
    assert not config.implicit_tls and not config.starttls
    assert config.username is None and config.password is None
    assert config.timeout == 60.0


@pytest.mark.parametrize(
    ("url", "host", "port", "implicit_tls"),
    [
        ("smtp://mail.example.com", "mail.example.com", 25, False),
        ("smtp://mail.example.com/", "mail.example.com", 25, False),
        ("smtps://mail.example.com", "mail.example.com", 465, True),
        ("smtps://mail.example.com:2465", "mail.example.com", 2465, True),
        ("SMTP://Mail.Example.com:587", "mail.example.com", 587, False),
        ("smtp://[::1]:2525", "::1", 2525, False),
        ("  smtp://relay:25  ", "relay", 25, False),
    ],
)
def test_forms(url: str, host: str, port: int, implicit_tls: bool):
    config = RelayConfig.from_url(url)
    assert (config.host, config.port, config.implicit_tls) == (host, port, implicit_tls)


def test_credentials_are_percent_decoded():
    config = RelayConfig.from_url("smtp://desk%40acme.test:p%40ss%3Aw%2Frd@relay.acme.test:587?starttls=1")
    assert config.username == "desk@acme.test"
    assert config.password == "p@ss:w/rd"
    assert config.starttls


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("yes", True), ("0", False), ("false", False), ("", False)],
)
def test_starttls_flag(value: str, expected: bool):
    assert RelayConfig.from_url(f"smtp://relay?starttls={value}").starttls is expected


def test_timeout_and_helo_options():
    config = RelayConfig.from_url("smtp://relay?timeout=2.5&helo=desk.acme.test")
    assert config.timeout == 2.5
    assert config.helo_name == "desk.acme.test"


@pytest.mark.parametrize("helo", ["desk", "desk-1.acme.test", "[192.0.2.1]", "[IPv6:2001:db8::1]"])
def test_helo_is_a_host_name_or_an_address_literal(helo: str):
    assert RelayConfig.from_url(f"smtp://relay?helo={helo}").helo_name == helo
    assert RelayConfig.from_url("smtp://relay?helo=").helo_name is None  # smtplib's default


def test_helo_with_a_line_break_is_refused_at_start_not_at_every_mail():
    """smtplib itself refuses CR/LF only when it sends EHLO: every mail would fail, after the
    check had called the relay usable."""
    with pytest.raises(ValueError, match=r"helo='a\\r\\nQUIT' is not a host name"):
        RelayConfig.from_url("smtp://127.0.0.1:1025?helo=a%0D%0AQUIT")


def test_port_0_is_refused_rather_than_taken_for_the_default():
    with pytest.raises(ValueError, match=r"^SERVICEDESK_SMTP_RELAY_URL: port 0 is not a port"):
        RelayConfig.from_url("smtp://relay:0")
    assert RelayConfig.from_url("smtp://relay:").port == 25


@pytest.mark.parametrize("timeout", ["0", "-1", "3600.5", "nan"])
def test_a_timeout_out_of_range_says_the_range_allowed(timeout: str):
    with pytest.raises(ValueError) as caught:
        RelayConfig.from_url(f"smtp://relay?timeout={timeout}")
    assert f"timeout={timeout} is out of range: more than 0 and at most 3600 seconds" in str(caught.value)
    assert RelayConfig.from_url("smtp://relay?timeout=3600").timeout == 3600


@pytest.mark.parametrize(
    "url",
    [
        "",
        "relay.acme.test:25",
        "http://relay.acme.test",
        "smtp://",
        "smtp://relay:port",
        "smtp://relay:70000",
        "smtp://relay/queue",
        "smtp://relay#x",
        "smtp://:secret@relay",
        "smtp://relay?starttls=maybe",
        "smtp://relay?tls=1",
        "smtps://relay?starttls=1",
        "smtp://relay?timeout=soon",
        "smtp://relay?timeout=0",
        "smtp://relay:0",
        "smtp://127.0.0.1:1025?helo=a%0D%0AQUIT",
        "smtp://relay?helo=desk%0A",
        "smtp://relay?helo=desk_1",
        "smtp://relay?helo=-desk",
        "smtp://relay?helo=desk%20acme",
        "smtp://relay?helo=[2001:db8::1]",
        "smtp://relay?helo=[IPv6:fe80::1%25%0D%0AQUIT]",
        "smtp://relay?helo=[192.0.2.300]",
    ],
)
def test_malformed_url_names_the_setting_and_what_is_expected(url: str):
    with pytest.raises(ValueError) as caught:
        RelayConfig.from_url(url)
    message = str(caught.value)
    assert message.startswith("SERVICEDESK_SMTP_RELAY_URL: ")
    assert "expected smtp://[user:password@]host[:port][?starttls=1] or smtps://" in message
    assert "\n" not in message


def test_malformed_url_message_never_shows_the_password():
    for url in ("smtp://desk:s3cret@relay:port", "desk:s3cret@relay", "smtps://desk:s3cret@relay?starttls=1"):
        with pytest.raises(ValueError) as caught:
            RelayConfig.from_url(url)
        assert "s3cret" not in str(caught.value)
        assert "desk:***@" in str(caught.value)


def test_password_is_kept_out_of_repr_and_logs():
    config = RelayConfig.from_url("smtp://desk:s3cret@relay:587?starttls=1")
    assert "s3cret" not in repr(config)
    assert config.redacted_url() == "smtp://desk:***@relay:587?starttls=1"
    assert RelayConfig.from_url("smtps://[::1]").redacted_url() == "smtps://[::1]:465"


def test_send_result_description():
    result = SendResult(DeliveryStatus.PERMANENT, 550, "5.1.1 No such user", "rcpt")
    assert result.describe() == "550 5.1.1 No such user (at RCPT)"
    assert not result.relay_problem
    refused = SendResult(DeliveryStatus.TEMPORARY, None, "ConnectionRefusedError: refused", "connect")
    assert refused.describe() == "ConnectionRefusedError: refused (at CONNECT)"
    assert refused.relay_problem
