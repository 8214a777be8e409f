"""`servicedesk serve` as a real process: healthz, signature checks, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.app import web_client
from bot.service import _check_app_token
from sandbox import RequestSender, SlackEmulator
from sandbox.workspace import BOT_TOKEN, SIGNING_SECRET, TRIAGE
from store.db import Database
from store.migrate import MIGRATION_LOCK_KEY
from tests.conftest import POSTGRES_URL, lock_waits
from tests.e2e.conftest import START_SECONDS, free_port, wait_until
from tests.faults.silent_server import SilentServer


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator() as running:
        yield running


def serve_env(
    tmp_path: Path, emulator: SlackEmulator, database_url: str, http_port: int, smtp_port: int
) -> dict[str, str]:
    # Not the suite's own SERVICEDESK_TEST_DATABASE_URL: serve warns about a SERVICEDESK_ name that
    # is no setting.
    inherited = {k: v for k, v in os.environ.items() if k != "SERVICEDESK_TEST_DATABASE_URL"}
    return {
        **inherited,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": emulator.api_url,
        "SERVICEDESK_TRIAGE_CHANNEL": TRIAGE,
        "SERVICEDESK_DATABASE_URL": database_url,
        "SERVICEDESK_HTTP_PORT": str(http_port),
        "SERVICEDESK_SMTP_PORT": str(smtp_port),
        "SERVICEDESK_FILES_DIR": str(tmp_path / "files"),
        "SERVICEDESK_SMTP_RELAY_URL": f"smtp://127.0.0.1:{free_port()}",
    }


def launch_serve(tmp_path: Path, env: dict[str, str], stderr: int = subprocess.PIPE) -> subprocess.Popen[str]:
    """`servicedesk serve` as its own process; its log is on stderr (or with stdout)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def start_serve(tmp_path: Path, emulator: SlackEmulator, database_url: str, **env: str) -> dict[str, object]:
    """`servicedesk serve`, once it answers /healthz; `env` sets more of its environment variables."""
    http_port, smtp_port = free_port(), free_port()
    process = launch_serve(
        tmp_path,
        {**serve_env(tmp_path, emulator, database_url, http_port, smtp_port), **env},
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{http_port}"

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"serve exited early: {process.stdout.read() if process.stdout else ''}")
        try:
            return get(f"{base}/healthz")[0] == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    wait_until(healthy, "serve to answer /healthz", timeout=START_SECONDS)
    return {"process": process, "base": base, "smtp_port": smtp_port}


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture
def served(tmp_path: Path, emulator: SlackEmulator, database_url: str) -> Iterator[dict[str, object]]:
    running = start_serve(tmp_path, emulator, database_url)
    yield running
    stop(running["process"])  # type: ignore[arg-type]


def test_healthz_answers_when_the_database_does(served):
    status, body = get(f"{served['base']}/healthz")
    assert status == 200
    assert body["database"] == "ok"


def test_forged_and_stale_requests_get_401(served):
    sender = RequestSender(f"{served['base']}/slack/events", SIGNING_SECRET)
    envelope = {
        "type": "event_callback",
        "event_id": "EvFORGED",
        "team_id": "T0HOME",
        "event": {"type": "message", "channel": TRIAGE, "user": "U0ALICE", "text": "hi", "ts": "1.1"},
    }
    forged = sender.send_event_sync(envelope, retries=False, signing_secret="not-the-secret")
    assert forged.status == 401
    stale = sender.send_event_sync(envelope, retries=False, timestamp=int(time.time()) - 600)
    assert stale.status == 401


def test_sigterm_stops_cleanly_with_exit_0(served):
    process: subprocess.Popen[str] = served["process"]  # type: ignore[assignment]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_sigterm_closes_every_listener_and_lets_a_mail_being_sent_finish(served, database_url):
    """Every listener stops accepting at once, while a mail being sent is still stored and answered;
    SMTP sessions then get 421 (RFC 5321 3.8)."""
    process: subprocess.Popen[str] = served["process"]  # type: ignore[assignment]
    port = int(served["smtp_port"])  # type: ignore[call-overload]
    mail = b"From: bob@customer.test\r\nSubject: Late\r\nMessage-ID: <late@customer.test>\r\n\r\nHello\r\n"
    sending = smtplib.SMTP("127.0.0.1", port, timeout=10)
    sending.ehlo("client.example")
    sending.mail("bob@customer.test")
    sending.rcpt("support@localhost")
    sending.putcmd("data")
    assert sending.getreply()[0] == 354
    sending.send(mail[:20])
    idle = smtplib.SMTP("127.0.0.1", port, timeout=10)
    idle.ehlo("client.example")
    process.send_signal(signal.SIGTERM)
    assert idle.getreply() == (421, b"4.3.2 Service shutting down, try again later")

    def http_closed() -> bool:
        try:
            get(f"{served['base']}/healthz")
        except (urllib.error.URLError, ConnectionError):
            return True
        return False

    wait_until(http_closed, "the HTTP listener to close while the mail is still being sent")
    sending.send(mail[20:] + b".\r\n")
    assert sending.getreply()[0] == 250
    assert sending.getreply()[0] == 421
    assert process.wait(timeout=10) == 0
    db = Database(database_url)
    try:
        with db.engine.connect() as connection:
            keys = connection.execute(text("SELECT dedupe_key FROM inbound_items")).scalars().all()
    finally:
        db.dispose()
    assert keys == ["email:late@customer.test"]


def test_serve_runs_on_uvloop_and_starts_without_a_warning(served):
    pytest.importorskip("uvloop")
    process: subprocess.Popen[str] = served["process"]  # type: ignore[assignment]
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    [started] = [line for line in output.splitlines() if "starting:" in line]
    assert started.endswith("on uvloop's event loop")
    # A warning at every start (Bolt's about a token it will not use) would teach operators to
    # ignore the ones that matter.
    assert [line for line in output.splitlines() if " WARNING " in line] == []


def test_serve_warns_of_a_misspelt_setting_at_start(tmp_path, emulator, database_url):
    """A typo leaves the real setting at its default (here: acknowledgements on) with nothing said."""
    env = serve_env(tmp_path, emulator, database_url, free_port(), free_port())
    process = launch_serve(tmp_path, {**env, "SERVICEDESK_ACKNOWLEGE": "false"}, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if " WARNING " in line or "starting:" in line:
                break
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert line.rstrip().endswith(
        "WARNING servicedesk: SERVICEDESK_ACKNOWLEGE is not a setting "
        "(did you mean SERVICEDESK_ACKNOWLEDGE?): ignored"
    ), line


def test_healthz_says_503_while_the_database_is_unreachable(tmp_path, emulator):
    data = tmp_path / "data"
    data.mkdir()
    running = start_serve(tmp_path, emulator, f"sqlite:///{data}/desk.db")
    try:
        data.rename(tmp_path / "moved")  # the database file is gone from where the service opens it
        status, body = get(f"{running['base']}/healthz")
        assert status == 503 and body["database"] == "unreachable"
        (tmp_path / "moved").rename(data)
        status, _ = get(f"{running['base']}/healthz")
        assert status == 200
    finally:
        stop(running["process"])  # type: ignore[arg-type]


def test_sigterm_while_starting_is_still_a_clean_exit(tmp_path, emulator, database_url):
    process = launch_serve(tmp_path, serve_env(tmp_path, emulator, database_url, free_port(), free_port()))
    # Wait until the program itself runs (its first log line), then stop it before it serves.
    assert process.stderr is not None
    assert "starting" in process.stderr.readline()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_sigterm_while_waiting_for_another_process_to_migrate_exits_at_once(tmp_path, emulator, database_url):
    """Several processes starting at once: one migrates, the others wait for its lock. A SIGTERM
    to one that waits stops it (nothing was accepted yet), however long the migration takes."""
    db = Database(database_url)
    lock = {"key": MIGRATION_LOCK_KEY}
    try:
        with db.engine.connect() as migrating:
            migrating.execute(text("SELECT pg_advisory_lock(:key)"), lock)
            migrating.commit()
            process = launch_serve(
                tmp_path, serve_env(tmp_path, emulator, database_url, free_port(), free_port())
            )
            try:
                wait_until(lambda: lock_waits(db, "advisory") > 0, "serve to wait for the migration lock")
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=10) == 0
            finally:
                stop(process)  # type: ignore[arg-type]
            migrating.execute(text("SELECT pg_advisory_unlock(:key)"), lock)
            migrating.commit()
    finally:
        db.dispose()


def serve_once(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`servicedesk serve <args>` run to its end (it is expected to stop by itself)."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_port_already_taken_is_one_line_naming_the_setting(tmp_path, emulator, database_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = serve_env(tmp_path, emulator, database_url, free_port(), port)
        result = serve_once(tmp_path, {**env, "SERVICEDESK_SMTP_HOST": "127.0.0.1"}, "--role", "smtp")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "SERVICEDESK_SMTP_PORT" in line]
    assert f"cannot listen on port {port}" in line


def test_a_socket_mode_token_slack_refuses_is_one_line_naming_it(tmp_path, emulator, database_url):
    env = serve_env(tmp_path, emulator, database_url, free_port(), free_port())
    result = serve_once(
        tmp_path, {**env, "SLACK_APP_TOKEN": "xapp-not-ours"}, "--role", "web", "--socket-mode"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "servicedesk: SLACK_APP_TOKEN was refused by Slack (invalid_auth)"
    )


def test_sigterm_while_socket_mode_cannot_reach_slack_exits_at_once(tmp_path, emulator, database_url):
    """Slack out of reach: Socket Mode keeps trying to connect, and a stop signal still stops it."""
    env = serve_env(tmp_path, emulator, database_url, free_port(), free_port())
    unreachable = {
        **env,
        "SLACK_APP_TOKEN": "xapp-1",
        "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--role", "web", "--socket-mode"],
        env=unreachable,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        wait_until(lambda: "could not check SLACK_APP_TOKEN" in process.stderr.readline(), "the connect")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        stop(process)


def test_sigterm_while_the_app_token_check_waits_on_a_silent_slack_exits_at_once(
    tmp_path, emulator, database_url
):
    """Slack takes the connection and never answers: the start-up check of SLACK_APP_TOKEN would
    wait out its 15 s timeout, and a stop signal must not wait with it (exit within 10 s)."""
    env = serve_env(tmp_path, emulator, database_url, free_port(), free_port())
    with SilentServer() as slack:
        silent = {**env, "SLACK_APP_TOKEN": "xapp-1", "SLACK_API_URL": f"http://127.0.0.1:{slack.port}/api/"}
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--role", "web", "--socket-mode"],
            env=silent,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            slack.accept()  # apps.connections.open has been sent, and is waiting for an answer
            process.send_signal(signal.SIGTERM)
            # Bounds the wait well under the client's 15 s timeout the check used to wait out.
            assert process.wait(timeout=10) == 0
        finally:
            stop(process)


def test_an_app_token_check_that_times_out_says_so(caplog):
    """A timeout has no text of its own: the warning names it instead of an empty reason."""
    with SilentServer() as slack:
        client = web_client(None, f"http://127.0.0.1:{slack.port}/api/", timeout=1)
        with caplog.at_level("WARNING", logger="bot.service"):
            asyncio.run(_check_app_token(client, "xapp-1"))
    assert "could not check SLACK_APP_TOKEN (TimeoutError); connecting anyway" in caplog.messages
