"""The command line: every subcommand listed, bad settings give one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.manifest import EXAMPLE_URL, render_manifest

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ("serve", "demo", "db", "manifest", "check", "outbox", "report")


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(cwd or ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        cwd=cwd or ROOT,
    )


def test_help_lists_every_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SERVICEDESK_HTTP_PORT": "abc"}, "SERVICEDESK_HTTP_PORT"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, "SERVICEDESK_TRIAGE_CHANNEL"),
        ({"SERVICEDESK_TRIAGE_CHANNEL": "C1", "SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN"),
        ({"SERVICEDESK_TRIAGE_CHANNEL": "C1", "SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET"),
    ],
)
def test_serve_with_bad_settings_says_one_line_and_exits_2(tmp_path, env, variable):
    result = run_cli(
        "serve", env={"SERVICEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", **env}, cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_smtp_role_needs_no_slack_token(tmp_path):
    # Settings problems are reported before anything starts; here none is expected for the SMTP role,
    # so a bad port is the only complaint.
    result = run_cli("serve", "--role", "smtp", env={"SERVICEDESK_SMTP_PORT": "99999"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "SERVICEDESK_SMTP_PORT" in result.stderr and "SLACK" not in result.stderr


def test_dotenv_in_working_folder_is_read(tmp_path):
    (tmp_path / ".env").write_text("SERVICEDESK_HTTP_PORT=not-a-port\n")
    result = run_cli("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 2 and "SERVICEDESK_HTTP_PORT" in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path):
    result = run_cli(
        "db", "upgrade", env={"SERVICEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d.db").exists()


def test_unreachable_database_is_one_line(tmp_path):
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    result = run_cli("db", "upgrade", env={"SERVICEDESK_DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("delay", ["inf", "1e30"])
def test_an_endless_reply_delay_stops_serve_with_one_line(tmp_path, delay):
    env = {
        "SERVICEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        "SERVICEDESK_SMTP_PORT": "0",
        "SERVICEDESK_REPLY_DELAY_SECONDS": delay,
    }
    result = run_cli("serve", "--role", "smtp", env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SERVICEDESK_REPLY_DELAY_SECONDS" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("postgres://u:secret@h/db", "postgresql+psycopg://"),
        ("mysql://u:secret@h/db", "mysql is not supported"),
        ("postgresql+nosuchdriver://u:secret@h/db", "not installed"),
    ],
)
def test_an_unsupported_database_url_is_one_line(tmp_path, url, hint):
    result = run_cli("outbox", env={"SERVICEDESK_DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("servicedesk: SERVICEDESK_DATABASE_URL: ") and hint in lines[0]
    assert "secret" not in result.stderr


def test_report_is_announced_not_silent():
    result = run_cli("report")
    assert result.returncode == 2 and "report" in result.stderr


def test_manifest_matches_the_committed_file():
    committed = (ROOT / "app.manifest.yml").read_text()
    assert render_manifest(EXAMPLE_URL) == committed
    result = run_cli("manifest", "--url", EXAMPLE_URL)
    assert result.returncode == 0 and result.stdout == committed


@pytest.mark.parametrize(
    "url", ["desk.example.com", "ftp://desk.example.com", "https://", "https://desk.example.com/?x=1"]
)
def test_manifest_refuses_a_url_that_is_not_absolute_http(url):
    result = run_cli("manifest", "--url", url)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"servicedesk: --url: expected an absolute http(s) URL such as {EXAMPLE_URL} (got {url!r})\n"
    )


def test_manifest_declares_what_the_design_fixes():
    text = render_manifest("https://desk.example")
    assert "command: /desk" in text and "should_escape: true" in text
    assert "callback_id: create_ticket" in text
    for event in (
        "message.channels",
        "message.groups",
        "reaction_added",
        "member_joined_channel",
        "member_left_channel",
        "app_home_opened",
    ):
        assert f"- {event}" in text
    assert "request_url: https://desk.example/slack/events" in text
    socket_mode = render_manifest(None)
    assert "request_url" not in socket_mode and "socket_mode_enabled: true" in socket_mode


def test_the_sandbox_grants_every_scope_the_manifest_asks_for():
    from bot.manifest import BOT_SCOPES
    from sandbox.workspace import DEFAULT_SCOPES

    assert set(BOT_SCOPES) <= set(DEFAULT_SCOPES)
