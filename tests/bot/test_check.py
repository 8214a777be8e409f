"""`servicedesk check` against the emulator: settings, token, scopes, channel membership."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.check import run_check
from bot.cli import main
from bot.manifest import BOT_SCOPES
from sandbox.mail_sink import MailSink
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import APP_TOKEN, BOT_TOKEN, CONNECT, EMPTY, HELP, TRIAGE
from store.db import Database
from store.migrate import upgrade
from store.settings import Settings


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    emu = SlackEmulator().start()
    emu.scopes = list(BOT_SCOPES)
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[MailSink]:
    """A relay that takes connections, as a ready desk has one; `settings_for` and `main` use it."""
    with MailSink() as sink:
        monkeypatch.setenv("SERVICEDESK_SMTP_RELAY_URL", sink.url)
        yield sink


def settings_for(emulator: SlackEmulator, database_url: str, **overrides: Any) -> Settings:
    """A desk that is ready (the emulator, a migrated database, a relay) but for `overrides`."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "smtp_relay_url": os.environ["SERVICEDESK_SMTP_RELAY_URL"],
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": "secret",
        "slack_api_url": emulator.api_url,
        "triage_channel": TRIAGE,
        "intake_channels": (CONNECT, HELP),
    }
    values.update(overrides)
    return Settings(**values)


def check(settings: Settings) -> tuple[int, str]:
    out = io.StringIO()
    code = run_check(settings, out=out)
    return code, out.getvalue()


def test_all_good_exits_0(emulator: SlackEmulator, database_url: str) -> None:
    code, text = check(settings_for(emulator, database_url))
    assert code == 0
    assert "PROBLEM" not in text
    assert "the bot is in the triage channel #triage (C0TRIAGE)" in text
    assert text.rstrip().endswith("All good: the desk is ready.")


def test_a_missing_scope_is_named(emulator: SlackEmulator, database_url: str) -> None:
    emulator.scopes = [scope for scope in BOT_SCOPES if scope != "reactions:write"]
    code, text = check(settings_for(emulator, database_url))
    assert code == 1
    assert "PROBLEM  the app lacks the scope reactions:write: add it under OAuth & Permissions" in text


def test_a_channel_the_bot_is_not_in_is_named(emulator: SlackEmulator, database_url: str) -> None:
    code, text = check(settings_for(emulator, database_url, intake_channels=(CONNECT, EMPTY)))
    assert code == 1
    assert (
        "PROBLEM  the bot is not a member of the intake channel #random (C0EMPTY): "
        "invite it there with `/invite @servicedesk`"
    ) in text


def test_an_unknown_channel_is_named(emulator: SlackEmulator, database_url: str) -> None:
    code, text = check(settings_for(emulator, database_url, triage_channel="C0NOSUCH"))
    assert code == 1
    assert "the triage channel C0NOSUCH was not found" in text


def test_a_refused_token_is_said_plainly(emulator: SlackEmulator, database_url: str) -> None:
    code, text = check(settings_for(emulator, database_url, slack_bot_token="xoxb-wrong"))
    assert code == 1
    assert "Slack refused the bot token (invalid_auth)" in text
    assert "triage channel" not in text.split("Slack refused")[1]


def test_slack_unreachable_is_said_plainly() -> None:
    settings = Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret="secret",
        slack_api_url="http://127.0.0.1:9/api/",
        triage_channel=TRIAGE,
    )
    code, text = check(settings)
    assert code == 1
    assert "could not reach Slack at http://127.0.0.1:9/api/" in text


def test_missing_settings_are_named_without_calling_slack() -> None:
    code, text = check(Settings())
    assert code == 1
    assert "SLACK_BOT_TOKEN is not set" in text
    assert "SERVICEDESK_TRIAGE_CHANNEL is not set" in text
    assert "neither SLACK_SIGNING_SECRET" in text


def test_triage_channel_as_intake_channel_is_refused(emulator: SlackEmulator, database_url: str) -> None:
    code, text = check(settings_for(emulator, database_url, intake_channels=(TRIAGE,)))
    assert code == 1
    assert "customers would read the team's internal notes" in text


def set_environment(
    monkeypatch: pytest.MonkeyPatch, emulator: SlackEmulator, database_url: str, **more: str
) -> None:
    """The environment of a ready desk, and `more`, for `main(["check"])`."""
    for name, value in {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": "secret",
        "SLACK_API_URL": emulator.api_url,
        "SERVICEDESK_TRIAGE_CHANNEL": TRIAGE,
        "SERVICEDESK_DATABASE_URL": database_url,
        **more,
    }.items():
        monkeypatch.setenv(name, value)


def test_the_command_line_runs_the_check(
    emulator: SlackEmulator,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    set_environment(monkeypatch, emulator, database_url, SERVICEDESK_INTAKE_CHANNELS=f"{CONNECT},{EMPTY}")
    emulator.scopes = [scope for scope in BOT_SCOPES if scope != "files:read"]
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "the app lacks the scope files:read" in out
    assert "not a member of the intake channel #random (C0EMPTY)" in out
    assert out.rstrip().endswith("2 problems found.")


def test_the_socket_mode_token_is_checked(emulator: SlackEmulator, database_url: str) -> None:
    code, text = check(settings_for(emulator, database_url, slack_app_token=APP_TOKEN))
    assert code == 0 and "the app-level token works (Socket Mode)" in text
    code, text = check(settings_for(emulator, database_url, slack_app_token="xapp-wrong"))
    assert code == 1 and "Slack refused SLACK_APP_TOKEN (invalid_auth)" in text


def test_delivery_settings_that_would_stop_serve_are_problems(
    emulator: SlackEmulator,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    set_environment(
        monkeypatch,
        emulator,
        database_url,
        SERVICEDESK_SMTP_RELAY_URL="http://x",
        SERVICEDESK_TEMPLATES_DIR=str(tmp_path / "nonexistent"),
    )
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM  SERVICEDESK_SMTP_RELAY_URL: unknown scheme http://" in out
    assert "PROBLEM  SERVICEDESK_TEMPLATES_DIR: " in out
    assert out.rstrip().endswith("2 problems found.")


def test_a_missing_database_file_is_a_note_and_is_not_created(
    emulator: SlackEmulator, tmp_path: Path
) -> None:
    """A fresh install is checked before `serve` first runs (and migrates it): a note, not a problem."""
    path = tmp_path / "none.db"
    code, text = check(settings_for(emulator, f"sqlite:///{path}"))
    assert code == 0
    assert f"note     the database file {path} does not exist: run `servicedesk db upgrade`" in text
    assert not path.exists()


def test_a_database_without_the_current_schema_is_a_note(emulator: SlackEmulator, tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    code, text = check(settings_for(emulator, f"sqlite:///{path}"))
    assert code == 0
    assert "note     the database has no schema yet: run `servicedesk db upgrade`" in text
    old = Database(f"sqlite:///{path}")
    upgrade(old, "0001")
    old.dispose()
    code, text = check(settings_for(emulator, f"sqlite:///{path}"))
    assert code == 0
    assert "note     the database schema is older than this release: run `servicedesk db upgrade`" in text


def test_a_database_migrated_by_a_newer_release_is_a_problem(emulator: SlackEmulator, tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    newer = Database(f"sqlite:///{path}")
    upgrade(newer)
    with newer.transaction() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    newer.dispose()
    code, out = check(settings_for(emulator, f"sqlite:///{path}"))
    assert code == 1
    assert "PROBLEM  " in out and "newer than this release" in out


def test_an_unreachable_database_is_a_problem_without_its_password(emulator: SlackEmulator) -> None:
    code, text = check(settings_for(emulator, "postgresql+psycopg://desk:hunter2@127.0.0.1:1/desk"))
    assert code == 1
    assert "PROBLEM  database unavailable: " in text
    assert "hunter2" not in text


def test_a_ready_database_is_said_to_be(emulator: SlackEmulator, database_url: str) -> None:
    code, text = check(settings_for(emulator, database_url))
    assert code == 0
    assert "ok       the database is reachable and at this release's schema" in text
    assert "ok       SERVICEDESK_SMTP_RELAY_URL and the email templates are usable" in text


def test_a_host_running_only_the_smtp_role_needs_no_slack_settings(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SERVICEDESK_TRIAGE_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SERVICEDESK_DATABASE_URL", database_url)
    assert main(["check", "--role", "smtp"]) == 0
    out = capsys.readouterr().out
    assert "PROBLEM" not in out and out.rstrip().endswith("All good: the desk is ready.")
    # The same host checked for every role still names what the others would need.
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "SLACK_BOT_TOKEN is not set" in out and "neither SLACK_SIGNING_SECRET" in out


def test_the_web_role_in_socket_mode_needs_the_app_token(emulator: SlackEmulator, database_url: str) -> None:
    out = io.StringIO()
    settings = settings_for(emulator, database_url)
    assert run_check(settings, roles=frozenset({"web"}), socket_mode=True, out=out) == 1
    assert "SLACK_APP_TOKEN is not set: --socket-mode needs the app-level token" in out.getvalue()
    out = io.StringIO()
    assert run_check(settings, roles=frozenset({"worker"}), out=out) == 0, out.getvalue()


def test_the_smtp_role_does_not_call_slack_even_with_tokens_set(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host running `--role smtp` often has the desk's whole .env; Slack out of its reach is no
    problem of that host."""
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "SERVICEDESK_TRIAGE_CHANNEL": TRIAGE,
        "SERVICEDESK_DATABASE_URL": database_url,
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["check", "--role", "smtp"]) == 0
    out = capsys.readouterr().out
    assert "PROBLEM" not in out and "Slack" not in out, out


def test_the_worker_role_checks_the_bot_token_but_not_the_app_token(
    emulator: SlackEmulator,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    set_environment(monkeypatch, emulator, database_url, SLACK_APP_TOKEN="xapp-wrong")
    assert main(["check", "--role", "worker"]) == 0
    out = capsys.readouterr().out
    assert "the token works" in out and "the bot is in the triage channel" in out
    assert "SLACK_APP_TOKEN (" not in out and "app-level token works" not in out
    # The web role may receive its events over Socket Mode: there the app token is checked.
    assert main(["check", "--role", "web"]) == 1
    assert "Slack refused SLACK_APP_TOKEN (invalid_auth)" in capsys.readouterr().out


def test_a_relay_helo_with_a_line_break_is_a_problem(
    emulator: SlackEmulator,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    set_environment(
        monkeypatch,
        emulator,
        database_url,
        SERVICEDESK_SMTP_RELAY_URL="smtp://127.0.0.1:1025?helo=a%0D%0AQUIT",
    )
    assert main(["check", "--role", "worker"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM  SERVICEDESK_SMTP_RELAY_URL: helo='a\\r\\nQUIT' is not a host name" in out


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_relay_that_cannot_be_reached_or_refuses_the_login_is_a_problem(
    emulator: SlackEmulator, database_url: str, relay: MailSink
) -> None:
    """Every email (acknowledgements, replies) goes through the relay: a desk that cannot reach it, or
    whose login it refuses, is not ready, whatever the URL's form."""
    code, text = check(settings_for(emulator, database_url))
    assert code == 0, text
    assert f"ok       the SMTP relay {relay.url} takes our connection and support@localhost as sender" in text

    unreachable = f"smtp://127.0.0.1:{closed_port()}"
    code, text = check(settings_for(emulator, database_url, smtp_relay_url=unreachable))
    assert code == 1, text
    [line] = [line for line in text.splitlines() if "SMTP relay" in line]
    said = f"PROBLEM  SERVICEDESK_SMTP_RELAY_URL: the SMTP relay {unreachable} cannot be used"
    assert line.startswith(said)
    assert "(at CONNECT)" in line and "Connection refused" in line

    with MailSink(auth=("desk", "right-password")) as guarded:
        wrong = guarded.url.replace("right-password", "wr0ng-secret")
        code, text = check(settings_for(emulator, database_url, smtp_relay_url=wrong))
        assert code == 1, text
        assert "PROBLEM  SERVICEDESK_SMTP_RELAY_URL: the SMTP relay smtp://desk:***@" in text
        assert "(at AUTH)" in text and "wr0ng-secret" not in text
        # Without credentials the session opens, and the relay says so at MAIL FROM, as to every mail.
        anonymous = f"smtp://127.0.0.1:{guarded.port}"
        code, text = check(settings_for(emulator, database_url, smtp_relay_url=anonymous))
        assert code == 1, text
        assert f"PROBLEM  SERVICEDESK_SMTP_RELAY_URL: the SMTP relay {anonymous} cannot be used: 530 " in text
        assert "(at AUTH)" in text
        code, text = check(settings_for(emulator, database_url, smtp_relay_url=guarded.url))
        assert code == 0, text
        assert guarded.messages == []  # looked at, nothing sent


def test_a_misspelt_setting_is_named_with_the_one_meant(
    emulator: SlackEmulator,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A typo leaves the real setting at its default (acknowledgements on, no signing secret) with
    nothing said; `check` names it, and the one it probably meant."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SERVICEDESK_TEST_DATABASE_URL", raising=False)  # the suite's own, on PostgreSQL
    set_environment(
        monkeypatch,
        emulator,
        database_url,
        SERVICEDESK_ACKNOWLEGE="false",
        # Kubernetes' links to a Service named servicedesk: no settings, no typos.
        SERVICEDESK_PORT="tcp://10.0.0.7:3000",
        SERVICEDESK_SERVICE_HOST="10.0.0.7",
        SERVICEDESK_PORT_3000_TCP_ADDR="10.0.0.7",
    )
    (tmp_path / ".env").write_text(
        "SLACK_SIGNING_SECRETS=s3cret\nSERVICEDESK_COLOUR=blue\nOTHER_TOOL=1\nSLACK_CLIENT_SECRET=x\n"
    )
    assert main(["check", "--role", "smtp"]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "is not a setting" in line]
    assert notes == [
        "note     SERVICEDESK_ACKNOWLEGE is not a setting (did you mean SERVICEDESK_ACKNOWLEDGE?): ignored",
        "note     SERVICEDESK_COLOUR (in .env) is not a setting: ignored",
        "note     SLACK_SIGNING_SECRETS (in .env) is not a setting "
        "(did you mean SLACK_SIGNING_SECRET?): ignored",
    ]
    assert "s3cret" not in out


def test_a_slack_api_url_that_is_not_slacks_web_api_names_the_setting(
    emulator: SlackEmulator, database_url: str
) -> None:
    """The emulator's (or Slack's) host without /api/ answers 404 with a page: before, "auth.test
    failed (Received a response in a non-JSON format: 404: Not Found)", which names no setting."""
    wrong = emulator.api_url.removesuffix("api/")
    code, text = check(settings_for(emulator, database_url, slack_api_url=wrong))
    assert code == 1
    [line] = [line for line in text.splitlines() if line.startswith("PROBLEM")]
    assert line == (
        f"PROBLEM  SLACK_API_URL: {wrong} did not answer auth.test as Slack's Web API does (HTTP 404); "
        "Slack's is https://slack.com/api/ (with /api/)"
    )


def test_failed_deliveries_and_intake_are_noted_with_where_to_see_them(
    emulator: SlackEmulator, db: Database, database_url: str
) -> None:
    """A desk set up right may still hold mail and posts that failed for good: `check` said only "All
    good", and an operator looking after an outage learnt nothing of them."""
    from tests.bot.test_delivery_operator import fail_first_row, open_ticket, park_failed_mail

    open_ticket(db)
    fail_first_row(db, "channel_not_found")
    park_failed_mail(db)
    code, text = check(settings_for(emulator, database_url))
    assert code == 0, text
    assert (
        "note     failed and kept: 1 delivery, 1 intake item; `servicedesk outbox` lists them "
        "and how to retry one" in text
    )


@pytest.mark.parametrize("host", ["relay..acme.test", f"{'a' * 64}.acme.test"])
def test_a_relay_host_the_resolver_cannot_take_is_a_problem_not_a_crash(
    emulator: SlackEmulator, database_url: str, host: str
) -> None:
    """An empty label, or one over 63 characters: socket.getaddrinfo raises UnicodeError (no OSError),
    which killed `check` with a traceback and failed the worker's every mail."""
    code, text = check(settings_for(emulator, database_url, smtp_relay_url=f"smtp://{host}:25"))
    assert code == 1
    assert "PROBLEM  SERVICEDESK_SMTP_RELAY_URL: the host is no name a resolver takes" in text


def test_the_default_support_address_is_noted_where_mail_is_handled(
    emulator: SlackEmulator, database_url: str
) -> None:
    """support@localhost is for trials: acknowledgements and replies would carry reply addresses on
    localhost, which no customer's mail reaches. Before, `check` did not mention it."""
    default = "note     SERVICEDESK_SUPPORT_ADDRESS is support@localhost (the default)"
    code, text = check(settings_for(emulator, database_url))
    assert code == 0 and default in text
    code, text = check(settings_for(emulator, database_url, support_address="help@acme.test"))
    assert code == 0 and "SERVICEDESK_SUPPORT_ADDRESS" not in text


def test_pacing_turned_off_against_slack_itself_is_noted(emulator: SlackEmulator, database_url: str) -> None:
    """SERVICEDESK_SLACK_PACING=false is for an endpoint without Slack's limits; against Slack's own
    API every burst then collects 429s. The emulator's URL (no limits) says nothing."""
    settings = settings_for(emulator, database_url, slack_pacing=False)
    code, text = check(settings)
    assert code == 0 and "SERVICEDESK_SLACK_PACING" not in text
    slack = settings.model_copy(update={"slack_api_url": "https://slack.com/api/", "slack_bot_token": None})
    out = io.StringIO()
    run_check(slack, roles=frozenset({"worker"}), out=out)
    assert (
        "note     SERVICEDESK_SLACK_PACING is off while SLACK_API_URL is Slack's own: "
        "bursts will be refused with 429s (honoured, but slower); leave it on" in out.getvalue()
    )
