"""The one settings object, built once from the environment (and a `.env` file) in `main`.

Nothing reads the environment at import time: `load_settings()` is called by the CLI and the
result is passed down. Tests build `Settings(...)` directly with field names.
"""

from __future__ import annotations

import difflib
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from store.limits import MAX_ADDRESS_CHARS

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


class SettingsError(Exception):
    """A missing or malformed setting; the message is one line naming the variable."""


# The longest a staff reply may wait before delivery: a day. Past that it is no "undo" window, and
# a huge or infinite delay would overflow the date arithmetic of every reply.
MAX_REPLY_DELAY_SECONDS = 86_400
# The engines the store is written and tested for, and the URL to suggest instead of another.
DATABASE_BACKENDS = ("sqlite", "postgresql")
POSTGRESQL_URL_HINT = "postgresql+psycopg://USER:PASSWORD@HOST/DATABASE"


# The support address as the intake can route it: a plain ASCII addr-spec without "+" (the desk adds
# "+<key>" forms itself) and without quotes or a display name; a bare host such as localhost is fine.
_SUPPORT_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# A Slack channel ID (public C…, private G…), as the channel's About tab shows it; never a #name.
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{1,31}$")
CHANNEL_ID_HINT = "expected a channel ID such as C0123ABCD (the channel's About tab shows it), not a name"


def _channel_id(value: str) -> str:
    if not _CHANNEL_ID.match(value):
        raise ValueError(f"{value!r}: {CHANNEL_ID_HINT}")
    return value


def _positive(name: str, value: int) -> int:
    if value <= 0:
        raise ValueError(f"{name} must be a positive whole number")
    return value


class Settings(BaseModel):
    """Every variable of the design's settings table, typed, with its default."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    # repr=False on every field that can hold a secret (tokens, passwords in URLs): a Settings that
    # ends up in a log line, an error or a test's failure output shows none of them.
    slack_bot_token: Annotated[str | None, Field(alias="SLACK_BOT_TOKEN", repr=False)] = None
    slack_signing_secret: Annotated[str | None, Field(alias="SLACK_SIGNING_SECRET", repr=False)] = None
    slack_app_token: Annotated[str | None, Field(alias="SLACK_APP_TOKEN", repr=False)] = None
    slack_api_url: Annotated[str, Field(alias="SLACK_API_URL")] = "https://slack.com/api/"
    database_url: Annotated[str, Field(alias="SERVICEDESK_DATABASE_URL", repr=False)] = (
        "sqlite:///servicedesk.db"
    )
    http_host: Annotated[str, Field(alias="SERVICEDESK_HTTP_HOST")] = "127.0.0.1"
    http_port: Annotated[int, Field(alias="SERVICEDESK_HTTP_PORT", ge=0, le=65535)] = 3000
    smtp_host: Annotated[str, Field(alias="SERVICEDESK_SMTP_HOST")] = "127.0.0.1"
    smtp_port: Annotated[int, Field(alias="SERVICEDESK_SMTP_PORT", ge=0, le=65535)] = 8025
    support_address: Annotated[str, Field(alias="SERVICEDESK_SUPPORT_ADDRESS")] = "support@localhost"
    smtp_relay_url: Annotated[str, Field(alias="SERVICEDESK_SMTP_RELAY_URL", repr=False)] = (
        "smtp://127.0.0.1:1025"
    )
    sender_name: Annotated[str, Field(alias="SERVICEDESK_SENDER_NAME")] = "Support"
    triage_channel: Annotated[str | None, Field(alias="SERVICEDESK_TRIAGE_CHANNEL")] = None
    intake_channels: Annotated[tuple[str, ...], Field(alias="SERVICEDESK_INTAKE_CHANNELS")] = ()
    reply_delay_seconds: Annotated[float, Field(alias="SERVICEDESK_REPLY_DELAY_SECONDS")] = 10
    files_dir: Annotated[Path, Field(alias="SERVICEDESK_FILES_DIR")] = Path("servicedesk-files")
    max_message_bytes: Annotated[int, Field(alias="SERVICEDESK_MAX_MESSAGE_BYTES", gt=0)] = 26_214_400
    templates_dir: Annotated[Path | None, Field(alias="SERVICEDESK_TEMPLATES_DIR")] = None
    acknowledge: Annotated[bool, Field(alias="SERVICEDESK_ACKNOWLEDGE")] = True
    public_url: Annotated[str, Field(alias="SERVICEDESK_PUBLIC_URL")] = ""
    max_participants: Annotated[int, Field(alias="SERVICEDESK_MAX_PARTICIPANTS", ge=0)] = 25
    # Pace Slack calls to Slack's published limits; off only for a Slack-compatible endpoint without
    # them (the sandbox emulator). 429s are honoured either way.
    slack_pacing: Annotated[bool, Field(alias="SERVICEDESK_SLACK_PACING")] = True

    @field_validator("intake_channels", mode="before")
    @classmethod
    def _split_channels(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        expected = "expected an http(s) URL such as https://slack.com/api/"
        try:
            parts = urlsplit(value)
            port_ok = parts.port != 0  # a port that is not a number, or out of range, raises here
        except ValueError:
            raise ValueError(expected) from None
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or not port_ok
            or any(c.isspace() or not c.isprintable() for c in value)
            # slack_sdk adds the method name after the URL: after a query or fragment it reaches none.
            or "?" in value
            or "#" in value
        ):
            raise ValueError(expected)
        try:
            parts.hostname.encode("idna")  # as the resolver will, else a UnicodeError at the first call
        except UnicodeError:  # an empty label, one too long
            raise ValueError(expected) from None
        if _has_userinfo(value):
            # slack_sdk sends no credentials from the URL (it fails on the host "user:password@…"),
            # and an error naming the URL would show the password.
            raise ValueError("expected a URL without user:password@ (Slack takes the token, not these)")
        # slack_sdk joins the method name straight onto the base URL.
        return value if value.endswith("/") else value + "/"

    @field_validator("http_host", "smtp_host")
    @classmethod
    def _listen_host(cls, value: str) -> str:
        try:
            value.encode("idna")  # as getaddrinfo will, where a UnicodeError is no OSError: a traceback
        except UnicodeError:
            raise ValueError(
                "expected a host name or IP address to listen on, such as 127.0.0.1 or 0.0.0.0"
            ) from None
        return value

    @field_validator("support_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if len(value) > MAX_ADDRESS_CHARS or not _SUPPORT_ADDRESS.match(value):
            raise ValueError("expected a plain address such as support@example.com (no '+')")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not value:
            return value
        expected = "expected an http(s) URL such as https://desk.example.com, or nothing"
        parts = urlsplit(value)
        try:
            _ = parts.port  # a port that is not a number raises here
        except ValueError:
            raise ValueError(expected) from None
        if _has_userinfo(value):
            # Links with it go to customers in every email: the password would be handed out.
            raise ValueError("expected a URL without user:password@ (links with it go to customers)")
        # Links are made by adding a path: a query or fragment here would swallow it.
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or "?" in value  # an empty query or fragment ("…/desk?") is one all the same
            or "#" in value
            or any(c.isspace() or not c.isprintable() for c in value)
        ):
            raise ValueError(expected)
        try:
            return _ascii_url(parts).rstrip("/")
        except UnicodeError:  # a host name IDNA cannot write (an empty label, one too long)
            raise ValueError(expected) from None

    @field_validator("triage_channel")
    @classmethod
    def _triage_channel(cls, value: str | None) -> str | None:
        return _channel_id(value) if value else None

    @field_validator("intake_channels")
    @classmethod
    def _intake_channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_channel_id(channel) for channel in value)

    @field_validator("files_dir")
    @classmethod
    def _files_dir(cls, value: Path) -> Path:
        # Made on first use; a path that is something else would fail every mail with a file.
        try:
            if value.exists() and not value.is_dir():
                raise ValueError(f"{str(value)!r} exists and is not a folder")
        except OSError as error:  # a name too long, a folder on the way we may not look into
            raise ValueError(f"cannot be used as a folder ({error.strerror or error})") from None
        return value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: str | None) -> str | None:
        if value and not value.startswith("xoxb-"):
            raise ValueError("expected a bot token starting with xoxb-")
        return value or None

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: str | None) -> str | None:
        if value and not value.startswith("xapp-"):
            raise ValueError("expected an app-level token starting with xapp-")
        return value or None

    @field_validator("reply_delay_seconds")
    @classmethod
    def _reply_delay(cls, value: float) -> float:
        if not 0 <= value <= MAX_REPLY_DELAY_SECONDS:  # also refuses nan
            raise ValueError(f"expected a number of seconds from 0 to {MAX_REPLY_DELAY_SECONDS} (a day)")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        check_database_url(value)
        return value

    @field_validator("slack_signing_secret")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    # ----- derived values -----

    @property
    def support_local_part(self) -> str:
        return self.support_address.partition("@")[0]

    @property
    def support_domain(self) -> str:
        return self.support_address.partition("@")[2]

    def require(self, *names: str) -> None:
        """Stop with one line when a setting this role needs is missing."""
        for name in names:
            field = type(self).model_fields[name]
            if not getattr(self, name):
                raise SettingsError(f"{field.alias} is required here but is not set")


def _ascii_url(parts: SplitResult) -> str:
    """The URL as links in mail must write it: every header and link is ASCII (compose refuses
    anything else), so a scheme in capitals (`HTTPS://`, RFC 3986 3.1: case-insensitive) is
    lowercased, an internationalised host name takes its IDNA form (`bücher.example` is
    `xn--bcher-kva.example`) and other characters in the path are percent-encoded."""
    host = parts.hostname or ""
    host = host if host.isascii() else host.encode("idna").decode("ascii")
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    # No user:password@: the validator refuses one before this (it would go to customers).
    path = quote(parts.path, safe="/%:@!$&'()*+,;=~")
    return urlunsplit((parts.scheme.lower(), netloc, path, "", ""))


def check_database_url(value: str) -> None:
    """A SQLite or PostgreSQL URL whose driver is installed and synchronous, else ValueError."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise ValueError("expected an SQLAlchemy URL such as sqlite:///servicedesk.db") from exc
    if "@" in (url.host or ""):
        # SQLAlchemy ends the password at its first "@": the rest became the host, and the driver's
        # "cannot resolve host" error would print it, a piece of the password.
        raise ValueError("the host name holds an '@': one in the user name or password must be written %40")
    try:
        (url.host or "").encode("idna")  # as the driver's resolver will: a UnicodeError is no database error
    except UnicodeError:
        raise ValueError(
            "the host is no name a resolver takes (an empty label, or one over 63 characters)"
        ) from None
    backend = url.get_backend_name()
    if backend == "postgres":
        raise ValueError(f"postgres:// is not a URL SQLAlchemy reads; write {POSTGRESQL_URL_HINT}")
    if backend not in DATABASE_BACKENDS:
        raise ValueError(f"{backend} is not supported; expected sqlite:///PATH or {POSTGRESQL_URL_HINT}")
    try:
        dialect = url.get_dialect()
        dialect.import_dbapi()
    except (NoSuchModuleError, ImportError):
        raise ValueError(
            f"the database driver {url.drivername} is not installed; "
            f"use sqlite:///PATH or {POSTGRESQL_URL_HINT}"
        ) from None
    if dialect.is_async:
        raise ValueError(
            f"{url.drivername} is an asyncio driver, which the store cannot use; "
            f"use sqlite:///PATH or {POSTGRESQL_URL_HINT}"
        )
    if backend == "sqlite" and _is_in_memory_sqlite(url):
        # Each connection would be a database of its own, and all of them vanish at exit: every
        # ticket and mail accepted would be lost.
        raise ValueError("an in-memory SQLite database loses everything at exit; use sqlite:///PATH")
    if backend == "sqlite" and url.query:
        # The store opens the file itself, read-write, with its own busy timeout and pragmas:
        # without `uri=true` SQLAlchemy drops `?mode=ro` and the like with only a warning, and
        # with it a read-only database refuses every ticket and mail the desk accepts.
        raise ValueError(
            f"query options ({', '.join(sorted(url.query))}) are not used for SQLite; write sqlite:///PATH"
        )
    if backend == "sqlite":
        _check_sqlite_path(Path(url.database or ""))


def _check_sqlite_path(path: Path) -> None:
    """The SQLite file exists, or can be made where it is named: else SQLite's "unable to open database
    file" from `db upgrade` and `serve`, which names nothing, after `check` said all was well."""
    try:
        if path.is_dir():
            raise ValueError(
                f"{path} is a folder, not a SQLite file; name a file in it, such as sqlite:///PATH/servicedesk.db"
            )
        folder = path.absolute().parent
        if path.exists() or folder.is_dir():
            return
        state = "is not a folder" if folder.exists() else "does not exist"
    except OSError as error:  # a name too long, a folder on the way we may not look into
        raise ValueError(f"{path} cannot be used as a file ({error.strerror or error})") from None
    raise ValueError(
        f"the folder {folder}, where the SQLite file would be, {state}; create it or give another path"
    )


def _is_in_memory_sqlite(url: URL) -> bool:
    """`sqlite://`, `sqlite:///:memory:`, and SQLite's URI forms of an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:"):
        return True
    as_uri = "uri" in url.query
    return as_uri and (database.startswith("file::memory:") or url.query.get("mode") == "memory")


# Tokens and secrets are never echoed, not even in an error line.
_SECRET_SETTINGS = frozenset(
    {
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "SERVICEDESK_DATABASE_URL",
        "SERVICEDESK_SMTP_RELAY_URL",
    }
)


def _field_alias(field_name: str) -> str:
    field = Settings.model_fields.get(field_name)
    return field.alias if field and field.alias else field_name


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> Settings:
    """Read settings from `environ` over a `.env` file; raise SettingsError with one line."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update(_read_env_file(env_file))
    source = os.environ if environ is None else environ
    known = {field.alias for field in Settings.model_fields.values()}
    values.update({k: v for k, v in source.items() if k in known})
    # An empty value is how an env file or a deployment template leaves a setting out; taken
    # literally it would be an empty host (every interface) or folder (the working folder). The
    # environment still wins over .env: an empty variable there gives the default.
    values = {k: v for k, v in values.items() if v.strip()}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = error["loc"][0] if error["loc"] else "?"
        name = location if isinstance(location, str) and location.isupper() else _field_alias(str(location))
        message = str(error["msg"]).removeprefix("Value error, ")
        value = str(values.get(name, ""))
        if _KUBERNETES_LINK_VALUE.match(value):
            message += (
                "; this value is a Kubernetes service link (a Service named like the variable):"
                " set the variable in the pod, or enableServiceLinks: false"
            )
        # A password put in a URL that should hold none (SERVICEDESK_PUBLIC_URL) is not echoed either.
        secret = name in _SECRET_SETTINGS or _has_userinfo(value)
        shown = "hidden" if secret else repr(value)
        raise SettingsError(f"{name}: {message} (got {shown})") from None


# What Kubernetes sets in every pod of a namespace with a Service named "servicedesk" or
# "servicedesk-…" (its service links): not settings, and not typos either.
_KUBERNETES_SERVICE_LINK = re.compile(
    r"^SERVICEDESK(_[A-Z0-9_]+?)?_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$"
)
# The value of such a link, SERVICEDESK_HTTP_PORT=tcp://10.0.0.7:3000 for a Service named
# "servicedesk-http": it lands on our own setting.
_KUBERNETES_LINK_VALUE = re.compile(r"^(tcp|udp|sctp)://[0-9a-fA-F.:\[\]]+:\d+$")


def unrecognised_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> list[str]:
    """One line per variable that looks meant for this program but is none of its settings (a typo
    leaves the real one at its default, with nothing said), naming the closest setting. Considered:
    `SERVICEDESK_*` in the environment, and in `.env` (which is ours) `SERVICEDESK_*` and the `SLACK_*`
    close to one of ours (SLACK_CLIENT_SECRET from Slack's samples is no typo); `SLACK_*` in the
    environment may well be another tool's. Never a value."""
    known = [field.alias for field in Settings.model_fields.values() if field.alias]
    source = os.environ if environ is None else environ
    found: dict[str, str] = {name: "" for name in source if name.startswith("SERVICEDESK_")}
    if env_file is not None and env_file.is_file():
        for name in _read_env_file(env_file):
            if name.startswith(("SERVICEDESK_", "SLACK_")):
                found.setdefault(name, f" (in {env_file})")
    lines = []
    for name, where in sorted(found.items(), key=lambda item: (bool(item[1]), item[0])):
        if name in known or _KUBERNETES_SERVICE_LINK.match(name):
            continue
        meant = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        if not meant and not name.startswith("SERVICEDESK_"):
            continue  # SLACK_CLIENT_SECRET and the like from Slack's own samples: another tool's
        hint = f" (did you mean {meant[0]}?)" if meant else ""
        lines.append(f"{name}{where} is not a setting{hint}: ignored")
    return lines


def _has_userinfo(value: str) -> bool:
    try:
        return "@" in urlsplit(value).netloc
    except ValueError:  # not a URL at all ("http://[")
        return False


def _read_env_file(env_file: Path) -> dict[str, str]:
    """The settings in a `.env` file; one that cannot be read, or is not UTF-8, is a SettingsError
    naming it (and the line)."""
    try:
        data = env_file.read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise SettingsError(f"{env_file}: cannot be read ({reason.lower()})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start]
        raise SettingsError(
            f"{env_file}: line {line} is not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8"
        ) from None
    _refuse_unparsed_line(env_file, text)
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


# The name a line that is not NAME=VALUE starts with, to say which setting it meant (never its value,
# which may be a token).
_LEADING_NAME = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)")


def _refuse_unparsed_line(env_file: Path, text: str) -> None:
    """python-dotenv skips a line it cannot parse with a warning of its own: the setting on it would
    silently take its default (the local relay, acknowledgements on). A SettingsError naming the line."""
    for binding in parse_stream(io.StringIO(text)):
        if not binding.error:
            continue
        statement = binding.original.string
        # A statement starts with the blank lines before it: the line meant is the first with text.
        body = statement.lstrip()
        line = binding.original.line + statement[: len(statement) - len(body)].count("\n")
        name = _LEADING_NAME.match(body)
        which = f"line {line} ({name.group(1)})" if name else f"line {line}"
        written = f"{name.group(1)}=VALUE" if name else "NAME=VALUE"
        raise SettingsError(
            f"{env_file}: {which} is not NAME=VALUE; write it as {written}, closing any quote it opens"
        )
