"""The Socket Mode connection's life, seen by the operator: Slack refusing the app token after the
service started (the token revoked, Socket Mode turned off) is said in one plain log line and by
`/healthz`, and the service connects again by itself once the token works."""

from __future__ import annotations

import json
import logging
import signal
import smtplib
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sandbox import SlackEmulator
from sandbox.faults import Fault, FaultKind
from sandbox.workspace import APP_TOKEN, CONNECT, DAN, HELP
from tests.e2e.conftest import StartService, free_port, wait_until
from tests.e2e.test_serve import serve_env, stop
from tests.e2e.test_slack import Desk

pytestmark = pytest.mark.timeout(120)


def _health(desk: Desk) -> dict[str, object]:
    with urllib.request.urlopen(f"{desk.service.http_url}/healthz", timeout=10) as answer:
        assert answer.status == 200
        body: dict[str, object] = json.loads(answer.read())
        return body


def test_an_app_token_refused_while_running_is_said_and_the_socket_comes_back(
    start_service: StartService, caplog: pytest.LogCaptureFixture
) -> None:
    desk = Desk(start_service(socket_mode=True, intake_channels=(CONNECT, HELP)))
    emulator = desk.emulator
    assert _health(desk)["socket_mode"] == "connected"
    emulator.add_fault(
        "apps.connections.open", Fault(FaultKind.SLACK_ERROR, error="invalid_auth"), times=None
    )
    caplog.set_level(logging.INFO)
    emulator.socket_disconnect("link_disabled", close_after=0.2)  # Slack drops the link; no new one

    def said() -> str | None:
        state = str(_health(desk)["socket_mode"])
        return state if "invalid_auth" in state else None

    state = desk.service.wait_for(said, "/healthz to say the socket is down and why", timeout=40)
    assert state.startswith("disconnected") and "SLACK_APP_TOKEN" in state, state
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("bot.")]
    told = [line for line in lines if "SLACK_APP_TOKEN" in line and "invalid_auth" in line]
    assert len(told) == 1, lines  # once, however many times the reconnect is tried
    assert "no Slack events arrive" in told[0]
    # No busy loop: a few tries, paced (slack_sdk's 10 s), not hundreds.
    assert len(emulator.calls_to("apps.connections.open")) < 10

    emulator.clear_faults("apps.connections.open")
    desk.service.wait_for(lambda: _health(desk)["socket_mode"] == "connected", "the socket back", timeout=40)
    posted = emulator.user_post(DAN, CONNECT, "Back again?")
    desk.wait_thread_text(CONNECT, posted, "Ticket #1 opened")
    assert any("Socket Mode connected again" in r.getMessage() for r in caplog.records)


def test_email_is_taken_while_socket_mode_cannot_connect_yet(
    tmp_path: Path, emulator: SlackEmulator, database_url: str
) -> None:
    """Slack's Socket Mode link out of reach at the start (an outage, a proxy not yet up): the
    SMTP intake and the worker do not depend on it, and must run meanwhile, as in HTTP mode."""
    emulator.add_fault("apps.connections.open", Fault.server_error(503), times=None)
    smtp_port = free_port()
    env = {
        **serve_env(tmp_path, emulator, database_url, free_port(), smtp_port),
        "SLACK_APP_TOKEN": APP_TOKEN,
    }
    del env["SLACK_SIGNING_SECRET"]  # not needed in Socket Mode
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--socket-mode"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:

        def smtp_answers() -> bool:
            assert process.poll() is None, "serve exited"
            try:
                with smtplib.SMTP("127.0.0.1", smtp_port, timeout=5) as client:
                    return client.noop()[0] == 250
            except OSError:
                return False

        wait_until(smtp_answers, "the SMTP intake to answer while Slack refuses the socket", timeout=20)
        assert emulator.socket_connections == 0
        emulator.clear_faults("apps.connections.open")
        emulator.wait_for_socket(timeout=30)  # and the socket connects by itself once it can
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        stop(process)


def test_a_socket_url_that_fails_to_connect_is_not_tried_forever(start_service: StartService) -> None:
    """A URL from apps.connections.open is good for one connection (Slack's are single use, and
    expire): one that fails to connect (a proxy's 502, a network blip after it was issued, a ticket
    gone stale) must be replaced by a new one, or the desk never hears from Slack again."""
    desk = Desk(start_service(socket_mode=True, intake_channels=(CONNECT, HELP)))
    emulator = desk.emulator
    state = emulator.hub.state

    class FirstTicketSpoiled(dict[str, bool]):
        spoil = 1

        def __setitem__(self, ticket: str, used: bool) -> None:
            if used is False and FirstTicketSpoiled.spoil:
                FirstTicketSpoiled.spoil = 0
                used = True  # the next URL handed out is refused when connected to
            super().__setitem__(ticket, used)

    with state.lock:
        state.socket_tickets = FirstTicketSpoiled(state.socket_tickets)
    emulator.socket_disconnect("refresh_requested", close_after=0.2)
    emulator.wait_for(lambda: FirstTicketSpoiled.spoil == 0 and emulator.socket_connections == 0, timeout=20)
    emulator.wait_for_socket(timeout=40)  # slack_sdk waits 10 s between tries
    posted = emulator.user_post(DAN, CONNECT, "Still there?")
    desk.wait_thread_text(CONNECT, posted, "Ticket #1 opened")
