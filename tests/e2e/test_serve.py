"""`servicedesk serve` as a real process: healthz, signature checks, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import RequestSender, SlackEmulator
from sandbox.workspace import BOT_TOKEN, SIGNING_SECRET, TRIAGE
from tests.e2e.conftest import START_SECONDS, free_port, wait_until


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


def start_serve(tmp_path: Path, emulator: SlackEmulator, database_url: str) -> dict[str, object]:
    http_port, smtp_port = free_port(), free_port()
    env = {
        **os.environ,
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
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
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


def test_serve_runs_on_uvloop(served):
    pytest.importorskip("uvloop")
    process: subprocess.Popen[str] = served["process"]  # type: ignore[assignment]
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    [started] = [line for line in output.splitlines() if "starting:" in line]
    assert started.endswith("on uvloop's event loop")


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
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": emulator.api_url,
        "SERVICEDESK_TRIAGE_CHANNEL": TRIAGE,
        "SERVICEDESK_DATABASE_URL": database_url,
        "SERVICEDESK_HTTP_PORT": str(free_port()),
        "SERVICEDESK_SMTP_PORT": str(free_port()),
        "SERVICEDESK_FILES_DIR": str(tmp_path / "files"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait until the program itself runs (its first log line), then stop it before it serves.
    assert process.stderr is not None
    assert "starting" in process.stderr.readline()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
