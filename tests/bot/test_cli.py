"""The command line: every subcommand listed, bad settings give one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

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


def test_version_names_the_release_and_the_schema_it_migrates_to():
    """What an operator compares with "the database is at schema revision 0006, newer than this
    release knows": before, `--version` was "unrecognized arguments"."""
    from importlib.metadata import version

    from alembic.script import ScriptDirectory

    from store.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite:///unused.db")).get_current_head()
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"servicedesk {version('servicedesk')} (database schema {head})\n"


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


def test_a_dotenv_line_that_is_not_name_equals_value_is_one_line_not_a_default(tmp_path):
    """Before: python-dotenv skipped the line with a warning of its own (naming the wrong line) and
    the desk ran on the default relay: `check` said All good. (Other forms: tests/store/test_settings.py)"""
    lines = ["# the desk", "SERVICEDESK_SMTP_PORT=0", "", "SERVICEDESK_SMTP_RELAY_URL smtp://relay.acme.test"]
    (tmp_path / ".env").write_text("\n".join(lines) + "\nSERVICEDESK_SENDER_NAME=Acme\n")
    result = run_cli("check", "--role", "smtp", "--role", "worker", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [
        "servicedesk: .env: line 4 (SERVICEDESK_SMTP_RELAY_URL) is not NAME=VALUE; "
        "write it as SERVICEDESK_SMTP_RELAY_URL=VALUE, closing any quote it opens"
    ]
    assert "relay.acme.test" not in result.stderr  # values are never shown: a line may hold a token


@pytest.mark.parametrize("command", [("check", "--role", "smtp"), ("db", "upgrade")])
def test_a_sqlite_file_in_a_missing_folder_or_a_folder_itself_is_one_line(tmp_path, command):
    """Before: `check` said All good (the file was only "to be created"), then `db upgrade` and
    `serve` stopped on SQLite's own "unable to open database file", which names nothing."""
    env = {"SERVICEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/missing/desk.db", "SERVICEDESK_SMTP_PORT": "0"}
    result = run_cli(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [
        f"servicedesk: SERVICEDESK_DATABASE_URL: the folder {tmp_path}/missing, where the SQLite file "
        "would be, does not exist; create it or give another path (got hidden)"
    ]
    env["SERVICEDESK_DATABASE_URL"] = f"sqlite:///{tmp_path}"
    result = run_cli(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"servicedesk: SERVICEDESK_DATABASE_URL: {tmp_path} is a folder, not a SQLite file; "
        "name a file in it, such as sqlite:///PATH/servicedesk.db (got hidden)"
    ]
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", [("db", "upgrade"), ("check", "--role", "smtp"), ("outbox",)])
def test_another_programs_database_is_not_called_newer_than_this_release(tmp_path, command):
    """A database another Alembic-managed program set up (a shared PostgreSQL database, a wrong file)
    carries a revision this release does not know: before, "newer than this release knows; upgrade
    servicedesk", sending the operator to upgrade instead of to SERVICEDESK_DATABASE_URL."""
    path = tmp_path / "crm.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        connection.execute(text("INSERT INTO alembic_version VALUES ('3f9a1c2b7d4e')"))
        connection.execute(text("CREATE TABLE contacts (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    env = {"SERVICEDESK_DATABASE_URL": f"sqlite:///{path}"}
    result = run_cli(*command, env=env, cwd=tmp_path)
    said = (
        "the database holds another program's schema (revision 3f9a1c2b7d4e, none of servicedesk's "
        "tables): give SERVICEDESK_DATABASE_URL a database of the desk's own"
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert said in result.stdout + result.stderr, result.stdout + result.stderr
    assert "newer" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", [("db", "upgrade"), ("check", "--role", "smtp")])
def test_a_database_password_with_a_bare_at_sign_is_never_shown(tmp_path, command):
    """SQLAlchemy ends the password at its first "@" and takes the rest for the host: before, the
    driver's "failed to resolve host 't-tail@127.0.0.1'" printed the password's tail."""
    env = {"SERVICEDESK_DATABASE_URL": "postgresql+psycopg://desk:s3cr@t-tail@127.0.0.1:1/desk"}
    result = run_cli(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [
        "servicedesk: SERVICEDESK_DATABASE_URL: the host name holds an '@': one in the user name or "
        "password must be written %40 (got hidden)"
    ]
    assert "t-tail" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", [("db", "upgrade"), ("outbox",)])
def test_a_database_host_the_resolver_cannot_take_is_one_line(tmp_path, command):
    """An empty label: psycopg's resolver raised UnicodeError, no database error, and every command
    died with a traceback."""
    env = {"SERVICEDESK_DATABASE_URL": "postgresql+psycopg://desk@db..acme.test/desk"}
    result = run_cli(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [
        "servicedesk: SERVICEDESK_DATABASE_URL: the host is no name a resolver takes "
        "(an empty label, or one over 63 characters) (got hidden)"
    ]


def test_db_upgrade_creates_the_schema(tmp_path):
    result = run_cli(
        "db", "upgrade", env={"SERVICEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d.db").exists()


def test_db_downgrade_goes_back_to_a_revision_and_refuses_one_it_does_not_know(tmp_path):
    env = {"SERVICEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    result = run_cli("db", "downgrade", "0004", env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "database is at schema revision 0004\n"), result.stderr
    unknown = run_cli("db", "downgrade", "9999", env=env, cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "servicedesk: no schema revision '9999': this release knows base to 0005"
    ]
    above = run_cli("db", "downgrade", "0005", env=env, cwd=tmp_path)
    assert above.returncode == 2 and "Traceback" not in above.stderr, above.stderr
    # Before: Alembic's "Destination 0005 is not a valid downgrade target from current head(s)".
    assert above.stderr.splitlines() == [
        "servicedesk: the database is at schema revision 0004, below 0005: "
        "`servicedesk db upgrade` goes forward"
    ]
    result = run_cli("db", "downgrade", "base", env=env, cwd=tmp_path)
    assert result.stdout == "database is at schema revision base (no tables)\n", result.stderr
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    # A database file that is not there has nothing to undo; before, one was made, empty.
    missing = {"SERVICEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/typo.db"}
    result = run_cli("db", "downgrade", "base", env=missing, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"servicedesk: the database file {tmp_path}/typo.db does not exist: nothing to undo"
    ]
    assert not (tmp_path / "typo.db").exists()


def test_unreachable_database_is_one_line(tmp_path):
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    result = run_cli("db", "upgrade", env={"SERVICEDESK_DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [("db", "upgrade"), ("serve", "--role", "smtp")])
def test_a_file_that_is_not_a_database_is_one_line(tmp_path, command):
    (tmp_path / "desk.db").write_bytes(b"not an SQLite database, just some bytes" * 4)
    env = {"SERVICEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/desk.db", "SERVICEDESK_SMTP_PORT": "0"}
    result = run_cli(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    # `serve` logs that it is starting first; the reason is the last line.
    assert result.stderr.strip().splitlines()[-1] == (
        "servicedesk: cannot migrate the database: file is not a database"
    )


@pytest.fixture
def url_without_create_rights(database_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database whose user may not create tables (PostgreSQL 15's default for a
    user that does not own the database)."""
    admin_url = make_url(database_url)
    if admin_url.get_backend_name() != "postgresql":
        pytest.skip("needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
    suffix = uuid.uuid4().hex[:8]
    role, name = f"sd_limited_{suffix}", f"sd_limited_{suffix}"

    def admin(sql: str, database: str | None = None) -> None:
        engine = create_engine(
            admin_url.set(database=database or admin_url.database), isolation_level="AUTOCOMMIT"
        )
        with engine.connect() as connection:
            connection.execute(text(sql))
        engine.dispose()

    admin(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    admin(f"CREATE DATABASE {name}")
    admin("REVOKE CREATE ON SCHEMA public FROM PUBLIC", name)
    try:
        yield admin_url.set(username=role, password="pw", database=name).render_as_string(hide_password=False)
    finally:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.parametrize("command", [("db", "upgrade"), ("serve", "--role", "smtp")])
def test_a_migration_the_database_refuses_is_one_line_naming_why(
    url_without_create_rights, tmp_path, command
):
    env = {"SERVICEDESK_DATABASE_URL": url_without_create_rights, "SERVICEDESK_SMTP_PORT": "0"}
    result = run_cli(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "servicedesk: cannot migrate the database: permission denied for schema public"
    )


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


@pytest.mark.parametrize("command", [("check",), ("serve",), ("outbox",)])
def test_an_env_file_that_is_not_utf8_is_one_line(tmp_path, command):
    (tmp_path / ".env").write_bytes(b"SERVICEDESK_HTTP_PORT=0\nSERVICEDESK_SENDER_NAME=Caf\xe9\n")
    result = run_cli(*command, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [
        "servicedesk: .env: line 2 is not UTF-8 text (byte 0xe9); save the file as UTF-8"
    ]


@pytest.mark.parametrize("command", [("db", "upgrade"), ("serve", "--role", "smtp")])
@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused_with_one_line(tmp_path, command, url):
    """Everything accepted would be lost when the process exits."""
    env = {"SERVICEDESK_DATABASE_URL": url, "SERVICEDESK_SMTP_PORT": "0"}
    result = run_cli(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [
        "servicedesk: SERVICEDESK_DATABASE_URL: an in-memory SQLite database loses everything at exit; "
        "use sqlite:///PATH (got hidden)"
    ]


def test_outbox_retries_one_kind_at_a_time(tmp_path):
    env = {"SERVICEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    result = run_cli("outbox", "--retry", "3", "--retry-intake", "1", env=env, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "argument --retry-intake: not allowed with argument --retry" in result.stderr


@pytest.mark.parametrize("url", ["", " "])
def test_manifest_refuses_an_empty_url_rather_than_printing_the_socket_mode_one(url):
    """`servicedesk manifest --url "$PUBLIC_URL"` with the variable unset printed the Socket Mode
    manifest (no request URLs, `socket_mode_enabled: true`) and exited 0: the app was set up for a
    mode the service does not run in, and Slack's events never reached it."""
    result = run_cli("manifest", "--url", url)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"servicedesk: --url: is empty; give this service's public URL such as {EXAMPLE_URL}, "
        "or leave --url out for Socket Mode\n"
    )


def test_manifest_refuses_a_password_in_the_url_without_echoing_it():
    """A `user:password@` in --url was written into the manifest, which is pasted into Slack's app
    settings and shared, while Slack sends no credentials from a request URL."""
    result = run_cli("manifest", "--url", "https://desk:s3cret@desk.example.com")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("servicedesk: --url: a user name or password in the URL")
    assert "s3cret" not in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("given", ["/slack/events", "/slack/events/"])
def test_manifest_given_the_request_url_itself_does_not_double_its_path(given):
    """`--url https://desk.example.com/slack/events` (the request URL, as Slack's settings show it)
    made every request URL `…/slack/events/slack/events`, where the service answers 404."""
    result = run_cli("manifest", "--url", f"{EXAMPLE_URL}{given}")
    assert result.returncode == 0
    assert result.stdout == (ROOT / "app.manifest.yml").read_text()


@pytest.mark.parametrize(
    "relay_url",
    [
        # A password with "/" not percent-encoded: the URL is malformed, and its error echoed the password.
        "smtp://desk:pa/s3cret@relay.acme.test",
        "smtp://de/sk:s3cret@relay.acme.test:587",
        "smtps://desk:s3cret/x@relay.acme.test?timeout=5",
    ],
)
@pytest.mark.parametrize("command", ["serve", "check"])
def test_a_malformed_relay_url_never_shows_its_password(tmp_path, relay_url, command):
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "SERVICEDESK_TRIAGE_CHANNEL": "C1",
        "SERVICEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        "SERVICEDESK_SMTP_RELAY_URL": relay_url,
    }
    result = run_cli(command, env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "SERVICEDESK_SMTP_RELAY_URL" in result.stdout + result.stderr
    assert "s3cret" not in result.stdout + result.stderr
