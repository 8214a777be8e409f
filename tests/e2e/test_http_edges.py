"""Requests signed with Slack's secret but in no shape Bolt can read: a clear 400, one log line, and
the service goes on answering."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from sandbox.sender import signature_for
from sandbox.workspace import ALICE, SIGNING_SECRET, TRIAGE
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
