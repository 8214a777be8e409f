"""Settings: every variable has its default, and a bad value names the variable in one line."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from store.settings import Settings, SettingsError, load_settings

DEFAULTS = {
    "slack_api_url": "https://slack.com/api/",
    "database_url": "sqlite:///servicedesk.db",
    "http_host": "127.0.0.1",
    "http_port": 3000,
    "smtp_host": "127.0.0.1",
    "smtp_port": 8025,
    "support_address": "support@localhost",
    "smtp_relay_url": "smtp://127.0.0.1:1025",
    "sender_name": "Support",
    "triage_channel": None,
    "intake_channels": (),
    "reply_delay_seconds": 10,
    "files_dir": Path("servicedesk-files"),
    "max_message_bytes": 26214400,
    "templates_dir": None,
    "acknowledge": True,
    "public_url": "",
    "max_participants": 25,
    "slack_bot_token": None,
    "slack_signing_secret": None,
    "slack_app_token": None,
}


def test_no_secret_shows_in_the_settings_repr():
    """A Settings object in a log line or an error must not carry the tokens or passwords."""
    secrets = {
        "SLACK_BOT_TOKEN": "xoxb-bot-secret",
        "SLACK_SIGNING_SECRET": "signing-secret",
        "SLACK_APP_TOKEN": "xapp-app-secret",
        "SERVICEDESK_DATABASE_URL": "postgresql+psycopg://desk:db-password@db.example/desk",
        "SERVICEDESK_SMTP_RELAY_URL": "smtps://desk:relay-password@relay.example:465",
    }
    settings = load_settings(secrets, env_file=None)
    shown = repr(settings) + str(settings)
    for word in ("bot-secret", "signing-secret", "app-secret", "db-password", "relay-password"):
        assert word not in shown
    assert "support@localhost" in shown  # the rest still shows


def test_defaults_match_the_design():
    settings = load_settings({}, env_file=None)
    for name, expected in DEFAULTS.items():
        assert getattr(settings, name) == expected, name


def test_every_variable_is_read(tmp_path):
    environ = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "SLACK_APP_TOKEN": "xapp-1",
        "SLACK_API_URL": "http://127.0.0.1:9/api",
        "SERVICEDESK_DATABASE_URL": "sqlite:///x.db",
        "SERVICEDESK_HTTP_HOST": "0.0.0.0",
        "SERVICEDESK_HTTP_PORT": "8080",
        "SERVICEDESK_SMTP_HOST": "::",
        "SERVICEDESK_SMTP_PORT": "2525",
        "SERVICEDESK_SUPPORT_ADDRESS": "help@acme.example",
        "SERVICEDESK_SMTP_RELAY_URL": "smtps://u:p@mx:465",
        "SERVICEDESK_SENDER_NAME": "Acme Help",
        "SERVICEDESK_TRIAGE_CHANNEL": "C1",
        "SERVICEDESK_INTAKE_CHANNELS": "C2, C3,,",
        "SERVICEDESK_REPLY_DELAY_SECONDS": "2.5",
        "SERVICEDESK_FILES_DIR": str(tmp_path),
        "SERVICEDESK_MAX_MESSAGE_BYTES": "1000",
        "SERVICEDESK_TEMPLATES_DIR": str(tmp_path),
        "SERVICEDESK_ACKNOWLEDGE": "false",
        "SERVICEDESK_PUBLIC_URL": "https://desk.acme.example/",
        "SERVICEDESK_MAX_PARTICIPANTS": "3",
    }
    s = load_settings(environ, env_file=None)
    assert (s.slack_bot_token, s.slack_signing_secret, s.slack_app_token) == ("xoxb-1", "s", "xapp-1")
    assert s.slack_api_url == "http://127.0.0.1:9/api/"  # the trailing slash slack_sdk needs
    assert (s.http_host, s.http_port, s.smtp_host, s.smtp_port) == ("0.0.0.0", 8080, "::", 2525)
    assert s.support_address == "help@acme.example" and s.support_domain == "acme.example"
    assert s.smtp_relay_url == "smtps://u:p@mx:465" and s.sender_name == "Acme Help"
    assert s.triage_channel == "C1" and s.intake_channels == ("C2", "C3")
    assert s.reply_delay_seconds == 2.5 and s.max_message_bytes == 1000 and s.max_participants == 3
    assert s.files_dir == tmp_path and s.templates_dir == tmp_path
    assert s.acknowledge is False and s.public_url == "https://desk.acme.example"
    assert s.database_url == "sqlite:///x.db"


def test_dotenv_file_is_read_and_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SERVICEDESK_SENDER_NAME=From file\nSERVICEDESK_HTTP_PORT=4000\n")
    s = load_settings({"SERVICEDESK_HTTP_PORT": "5000"}, env_file=env_file)
    assert s.sender_name == "From file" and s.http_port == 5000


@pytest.mark.parametrize("blank", ["", "  ", "\t"])
def test_an_empty_value_is_unset_and_the_default_applies(tmp_path, blank):
    """A blank line such as `SERVICEDESK_HTTP_HOST=` must not mean every interface, nor an empty
    folder the working folder."""
    env_file = tmp_path / ".env"
    names = [
        "SERVICEDESK_HTTP_HOST",
        "SERVICEDESK_SMTP_HOST",
        "SERVICEDESK_TEMPLATES_DIR",
        "SERVICEDESK_FILES_DIR",
        "SERVICEDESK_HTTP_PORT",
        "SERVICEDESK_ACKNOWLEDGE",
        "SERVICEDESK_INTAKE_CHANNELS",
        "SERVICEDESK_PUBLIC_URL",
        "SLACK_API_URL",
    ]
    env_file.write_text("".join(f"{name}='{blank}'\n" for name in names))
    settings = load_settings({}, env_file=env_file)
    for name in ("http_host", "smtp_host", "templates_dir", "files_dir", "http_port", "acknowledge"):
        assert getattr(settings, name) == DEFAULTS[name], name
    for name in ("intake_channels", "public_url", "slack_api_url"):
        assert getattr(settings, name) == DEFAULTS[name], name


def test_an_empty_variable_in_the_environment_gives_the_default_over_the_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SERVICEDESK_HTTP_HOST=0.0.0.0\nSERVICEDESK_PUBLIC_URL=https://desk.example\n")
    settings = load_settings({"SERVICEDESK_HTTP_HOST": "", "SERVICEDESK_PUBLIC_URL": " "}, env_file=env_file)
    assert (settings.http_host, settings.public_url) == ("127.0.0.1", "")


def test_an_empty_required_setting_is_named_as_missing():
    settings = load_settings({"SLACK_BOT_TOKEN": " ", "SERVICEDESK_TRIAGE_CHANNEL": " "}, env_file=None)
    with pytest.raises(SettingsError, match=r"^SLACK_BOT_TOKEN is required here but is not set$"):
        settings.require("slack_bot_token")
    with pytest.raises(SettingsError, match=r"^SERVICEDESK_TRIAGE_CHANNEL is required here but is not set$"):
        settings.require("triage_channel")


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("export SERVICEDESK_ACKNOWLEDGE: false", "line 3 (SERVICEDESK_ACKNOWLEDGE)"),
        ('SLACK_BOT_TOKEN="xoxb-unterminated', "line 3 (SLACK_BOT_TOKEN)"),
        ("  = orphan value", "line 3"),
    ],
)
def test_an_env_file_line_that_is_not_name_equals_value_is_refused_naming_it(tmp_path, line, said):
    """Skipped, the setting on it would take its default (acknowledgements on, no token)."""
    env_file = tmp_path / ".env"
    env_file.write_text(f"SERVICEDESK_HTTP_PORT=4000\r\n\r\n{line}\r\nSERVICEDESK_SENDER_NAME=Acme\r\n")
    with pytest.raises(SettingsError) as caught:
        load_settings({}, env_file=env_file)
    assert str(caught.value).startswith(f"{env_file}: {said} is not NAME=VALUE; write it as ")
    assert "xoxb" not in str(caught.value) and "orphan" not in str(caught.value)


def test_an_env_file_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"SERVICEDESK_HTTP_PORT=4000\nSERVICEDESK_SENDER_NAME=Caf\xe9\n")
    with pytest.raises(SettingsError) as caught:
        load_settings({}, env_file=env_file)
    assert str(caught.value) == f"{env_file}: line 2 is not UTF-8 text (byte 0xe9); save the file as UTF-8"


def test_an_env_file_that_cannot_be_read_is_one_line_naming_it(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("SERVICEDESK_HTTP_PORT=4000\n", encoding="utf-8")
    if os.geteuid() != 0:  # root reads it whatever its mode, so the refusal is the OS's, simulated
        env_file.chmod(0)
    else:

        def refuse(self: Path) -> bytes:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(SettingsError) as caught:
        load_settings({}, env_file=env_file)
    assert str(caught.value) == f"{env_file}: cannot be read (permission denied)"


def test_an_env_file_in_utf8_keeps_its_accents(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("SERVICEDESK_SENDER_NAME=Café\n", encoding="utf-8")
    assert load_settings({}, env_file=env_file).sender_name == "Café"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SERVICEDESK_HTTP_PORT", "eighty"),
        ("SERVICEDESK_HTTP_PORT", "70000"),
        ("SERVICEDESK_SMTP_PORT", "-1"),
        ("SERVICEDESK_REPLY_DELAY_SECONDS", "soon"),
        ("SERVICEDESK_REPLY_DELAY_SECONDS", "inf"),
        ("SERVICEDESK_REPLY_DELAY_SECONDS", "1e30"),
        ("SERVICEDESK_REPLY_DELAY_SECONDS", "nan"),
        ("SERVICEDESK_REPLY_DELAY_SECONDS", "86401"),
        ("SERVICEDESK_MAX_MESSAGE_BYTES", "0"),
        ("SERVICEDESK_MAX_PARTICIPANTS", "many"),
        ("SERVICEDESK_ACKNOWLEDGE", "perhaps"),
        ("SERVICEDESK_SUPPORT_ADDRESS", "not-an-address"),
        ("SERVICEDESK_SUPPORT_ADDRESS", "support+x@acme.example"),
        ("SERVICEDESK_SUPPORT_ADDRESS", "support@@acme.example"),
        ("SERVICEDESK_SUPPORT_ADDRESS", "support@acme.example,other@acme.example"),
        ("SERVICEDESK_SUPPORT_ADDRESS", "support@acme.example;"),
        ("SERVICEDESK_SUPPORT_ADDRESS", "Support <support@acme.example>"),
        ("SLACK_API_URL", "slack.com/api"),
        ("SERVICEDESK_PUBLIC_URL", "desk.example"),
        ("SERVICEDESK_PUBLIC_URL", "https://"),
        ("SERVICEDESK_PUBLIC_URL", "https://desk example.com"),
        ("SERVICEDESK_PUBLIC_URL", "https://desk.example.com:abc"),
        ("SERVICEDESK_PUBLIC_URL", "https://desk.example.com/?a=1"),
        ("SERVICEDESK_TRIAGE_CHANNEL", "#triage"),
        ("SERVICEDESK_TRIAGE_CHANNEL", "C0TRIAGE,C0HELP"),
        ("SERVICEDESK_INTAKE_CHANNELS", "#help,general"),
        ("SERVICEDESK_INTAKE_CHANNELS", "C0HELP,help"),
        ("SLACK_BOT_TOKEN", "xoxp-user-token"),
        ("SLACK_APP_TOKEN", "xoxb-wrong-kind"),
        ("SERVICEDESK_DATABASE_URL", "not a url"),
        ("SERVICEDESK_DATABASE_URL", "postgres://u:p@h/db"),
        ("SERVICEDESK_DATABASE_URL", "mysql://u:p@h/db"),
        ("SERVICEDESK_DATABASE_URL", "oracle://u:p@h/db"),
        ("SERVICEDESK_DATABASE_URL", "postgresql+nosuchdriver://u:p@h/db"),
    ],
)
def test_malformed_value_names_the_variable(variable, value):
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value}, env_file=None)
    message = str(caught.value)
    assert message.startswith(f"{variable}:")
    assert "\n" not in message


def test_the_reply_delay_is_at_most_a_day():
    assert (
        load_settings({"SERVICEDESK_REPLY_DELAY_SECONDS": "86400"}, env_file=None).reply_delay_seconds
        == 86400
    )
    with pytest.raises(SettingsError, match=r"^SERVICEDESK_REPLY_DELAY_SECONDS: .*from 0 to 86400 \(a day\)"):
        load_settings({"SERVICEDESK_REPLY_DELAY_SECONDS": "inf"}, env_file=None)


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "sqlite+pysqlite:///x.db", "postgresql+psycopg://u:p@h/db"]
)
def test_sqlite_and_postgresql_urls_are_accepted(url):
    assert load_settings({"SERVICEDESK_DATABASE_URL": url}, env_file=None).database_url == url


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite+pysqlite:///:memory:",
        "sqlite:///:memory:?cache=shared",
        "sqlite:///file::memory:?uri=true",
        "sqlite:///file:desk?mode=memory&uri=true",
    ],
)
def test_an_in_memory_sqlite_database_is_refused(url):
    """Everything the desk accepted would be gone when the process exits."""
    with pytest.raises(SettingsError) as caught:
        load_settings({"SERVICEDESK_DATABASE_URL": url}, env_file=None)
    assert str(caught.value) == (
        "SERVICEDESK_DATABASE_URL: an in-memory SQLite database loses everything at exit; "
        "use sqlite:///PATH (got hidden)"
    )


def test_postgres_scheme_gets_the_url_to_write_instead():
    with pytest.raises(SettingsError) as caught:
        load_settings({"SERVICEDESK_DATABASE_URL": "postgres://u:secret@h/db"}, env_file=None)
    assert "write postgresql+psycopg://" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_secrets_are_never_echoed():
    with pytest.raises(SettingsError) as caught:
        load_settings({"SLACK_BOT_TOKEN": "xoxp-very-secret"}, env_file=None)
    assert "very-secret" not in str(caught.value)


def test_required_setting_named_when_missing():
    with pytest.raises(SettingsError, match=r"^SERVICEDESK_TRIAGE_CHANNEL is required"):
        Settings().require("triage_channel")


def test_a_files_folder_that_is_a_file_is_refused_and_a_missing_one_is_made_later(tmp_path):
    taken = tmp_path / "not-a-folder"
    taken.write_text("")
    with pytest.raises(SettingsError, match=r"^SERVICEDESK_FILES_DIR: .*exists and is not a folder"):
        load_settings({"SERVICEDESK_FILES_DIR": str(taken)}, env_file=None)
    later = tmp_path / "files"
    assert load_settings({"SERVICEDESK_FILES_DIR": str(later)}, env_file=None).files_dir == later


@pytest.mark.parametrize(
    ("variable", "value", "kept"),
    [
        (
            "SERVICEDESK_SUPPORT_ADDRESS",
            "help.desk@support.acme-corp.example",
            "help.desk@support.acme-corp.example",
        ),
        (
            "SERVICEDESK_PUBLIC_URL",
            "https://desk.example.com:8443/servicedesk/",
            "https://desk.example.com:8443/servicedesk",
        ),
        ("SERVICEDESK_INTAKE_CHANNELS", " C0123ABCD , G0PRIVATE ", ("C0123ABCD", "G0PRIVATE")),
    ],
)
def test_well_formed_values_are_kept(variable, value, kept):
    settings = load_settings({variable: value}, env_file=None)
    field = next(name for name, info in Settings.model_fields.items() if info.alias == variable)
    assert getattr(settings, field) == kept


def test_a_public_url_with_a_password_is_refused_without_echoing_it():
    """SERVICEDESK_PUBLIC_URL makes the links in customers' emails (attachments, unsubscribe): a
    `user:password@` in it was handed to every customer."""
    with pytest.raises(SettingsError) as caught:
        load_settings({"SERVICEDESK_PUBLIC_URL": "https://desk:s3cret@desk.example.com"}, env_file=None)
    assert str(caught.value) == (
        "SERVICEDESK_PUBLIC_URL: expected a URL without user:password@ (links with it go to customers) "
        "(got hidden)"
    )


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("sqlite:///x.db?mode=ro", "mode"),
        ("sqlite:///file:x.db?mode=ro&uri=true", "mode, uri"),
        ("sqlite:///x.db?immutable=1", "immutable"),
    ],
)
def test_sqlite_url_options_are_refused_rather_than_ignored(url, options):
    """`sqlite:///x.db?mode=ro` was accepted: SQLAlchemy drops `mode` without `uri=true` (a warning
    with a source line on stderr, the file opened read-write all the same), and with `uri=true` a
    read-only database passed `servicedesk check` and then refused every write."""
    with pytest.raises(SettingsError) as caught:
        load_settings({"SERVICEDESK_DATABASE_URL": url}, env_file=None)
    assert str(caught.value) == (
        f"SERVICEDESK_DATABASE_URL: query options ({options}) are not used for SQLite; "
        "write sqlite:///PATH (got hidden)"
    )


def test_a_kubernetes_service_link_on_a_port_setting_is_named_as_such():
    """A Service named servicedesk-http makes Kubernetes set SERVICEDESK_HTTP_PORT=tcp://IP:PORT in
    every pod of the namespace: "Input should be a valid integer" alone sent operators hunting."""
    with pytest.raises(SettingsError) as caught:
        load_settings({"SERVICEDESK_HTTP_PORT": "tcp://10.0.0.7:3000"}, env_file=None)
    said = str(caught.value)
    assert said.startswith("SERVICEDESK_HTTP_PORT: Input should be a valid integer")
    assert "Kubernetes service link" in said and "enableServiceLinks: false" in said
