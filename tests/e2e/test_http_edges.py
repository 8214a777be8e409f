"""Requests signed with Slack's secret but in no shape Bolt can read: a clear 400, one log line, and
the service goes on answering. Forged ones with headers the verifier cannot read: 401, nothing stored."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from sandbox.sender import signature_for
from sandbox.workspace import ALICE, SIGNING_SECRET, TRIAGE
from store.models import InboundItem
from tests.e2e.conftest import RunningDesk, wait_until

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
UNREADABLE = [
    (b"{not json", JSON),
    (b"[1, 2]", JSON),
    (b'"a string"', JSON),
    (urlencode({"payload": "{bad"}).encode(), FORM),
    (urlencode({"payload": "[]"}).encode(), FORM),
    (json.dumps({"type": "event_callback", "event_id": "Ev1", "event": "not an object"}).encode(), JSON),
]


def post_signed(url: str, body: bytes, content_type: str, signature: str | None = None) -> tuple[int, bytes]:
    timestamp = int(time.time())
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature or signature_for(SIGNING_SECRET, timestamp, body),
    }
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize(("body", "content_type"), UNREADABLE)
def test_a_signed_request_bolt_cannot_read_gets_400(
    service: RunningDesk, body: bytes, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    status, answer = post_signed(f"{service.http_url}/slack/events", body, content_type)
    assert (status, json.loads(answer)) == (400, {"error": "invalid request"})
    assert "a signed request Bolt cannot read" in caplog.text
    assert "Traceback" not in caplog.text
    # The service goes on: a command right after is answered.
    answer_to_help = service.emulator.user_command(ALICE, TRIAGE, "/desk", "help").wait(10)
    assert answer_to_help.ack_payload and answer_to_help.ack_payload.get("text")


def test_a_body_that_is_not_utf8_gets_401_not_a_500(
    service: RunningDesk, caplog: pytest.LogCaptureFixture
) -> None:
    # Slack signs UTF-8 text: no such body carries a valid signature, and the check must not crash.
    body = b'{"type": "event_callback", "x": "\xff"}'
    status, answer = post_signed(f"{service.http_url}/slack/events", body, JSON, signature="v0=" + "0" * 64)
    assert (status, json.loads(answer)) == (401, {"error": "invalid request"})
    assert "Traceback" not in caplog.text


def test_a_client_that_goes_mid_body_leaves_one_line_not_a_traceback(
    service: RunningDesk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    host, port = service.http_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    wait_until(lambda: "ended before its body did" in caplog.text, "the line about the request")
    assert "Traceback" not in caplog.text and "Error handling request" not in caplog.text


def post_raw(url: str, body: bytes, headers: dict[str, bytes]) -> tuple[int, bytes]:
    """A POST whose header values go out as the bytes given (urllib would re-encode them)."""
    host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        head = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        head += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers.items())
        client.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


FORGED_HEADERS = {
    # Past Python's 4300-digit limit on int(): the verifier's int() raised, and the answer was a 500.
    "a timestamp of 5000 digits": {
        "X-Slack-Request-Timestamp": b"9" * 5000,
        "X-Slack-Signature": b"v0=" + b"0" * 64,
    },
    # hmac.compare_digest raises TypeError on a str that is not ASCII: another 500.
    "a signature that is not ASCII": {
        "X-Slack-Request-Timestamp": b"%d",
        "X-Slack-Signature": "v0=é".encode(),
    },
    "a signature of Latin-1 bytes": {
        "X-Slack-Request-Timestamp": b"%d",
        "X-Slack-Signature": b"v0=\xe9" * 30,
    },
}


@pytest.mark.parametrize("headers", FORGED_HEADERS.values(), ids=FORGED_HEADERS.keys())
def test_forged_headers_the_verifier_cannot_read_get_401_not_a_500(
    service: RunningDesk, headers: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(
        {
            "type": "event_callback",
            "event_id": "EvFORGED",
            "team_id": "T0HOME",
            "event": {
                "type": "message",
                "channel": TRIAGE,
                "user": ALICE,
                "text": "forged",
                "ts": "1.000001",
            },
        }
    ).encode()
    now = b"%d" % int(time.time())
    sent = {name: value.replace(b"%d", now) for name, value in headers.items()}
    status, answer = post_raw(
        f"{service.http_url}/slack/events", body, {"Content-Type": JSON.encode(), **sent}
    )
    assert (status, json.loads(answer)) == (401, {"error": "invalid request"})
    assert "Traceback" not in caplog.text
    with service.db.read() as session:
        assert session.scalar(select(func.count()).select_from(InboundItem)) == 0
