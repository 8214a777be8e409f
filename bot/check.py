"""`servicedesk check`: is this desk set up right? Settings, database, token, scopes, channels, in
plain words.

Every finding is one line an operator can act on. Exit 0 when nothing is wrong, 1 otherwise.
The check only reads: it never joins a channel or changes anything in Slack, and never creates or
migrates the database.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.manifest import BOT_SCOPES
from bot.service import ROLES, required_settings
from bot.slack_errors import REFUSED_TOKEN
from store import inbound, outbox
from store.db import StoreError
from store.migrate import SchemaNotReady, open_migrated
from store.models import OutboxState
from store.outbox import TRIAGE_RECHECK_MAX
from store.settings import Settings


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def ok(self, text: str) -> None:
        self.lines.append(f"ok       {text}")

    def problem(self, text: str) -> None:
        self.problems.append(text)
        self.lines.append(f"PROBLEM  {text}")

    def note(self, text: str) -> None:
        self.lines.append(f"note     {text}")


ALL_ROLES = frozenset(ROLES)
DEFAULT_SUPPORT_ADDRESS = Settings.model_fields["support_address"].default


def check_settings(
    settings: Settings, report: Report, roles: frozenset[str] = ALL_ROLES, socket_mode: bool | None = None
) -> None:
    """The settings the roles to be run need (`serve`'s default: all three). `socket_mode` None: either
    way of receiving Slack's events will do."""
    needed = set(required_settings(set(roles), bool(socket_mode)))
    if settings.slack_bot_token:
        report.ok("SLACK_BOT_TOKEN is set")
    elif "slack_bot_token" in needed:
        report.problem(
            "SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-…) "
            "from the app's OAuth & Permissions page"
        )
    if settings.triage_channel:
        report.ok(f"SERVICEDESK_TRIAGE_CHANNEL is {settings.triage_channel}")
    elif "triage_channel" in needed:
        report.problem(
            "SERVICEDESK_TRIAGE_CHANNEL is not set: give the ID (C…) of the channel where tickets open"
        )
    if settings.slack_signing_secret:
        report.ok("SLACK_SIGNING_SECRET is set (HTTP mode)")
    if settings.slack_app_token:
        report.ok("SLACK_APP_TOKEN is set (Socket Mode)")
    if "web" in roles:
        _check_event_receiving(settings, report, socket_mode)
    if roles & {"smtp", "worker"} and settings.support_address == DEFAULT_SUPPORT_ADDRESS:
        report.note(
            f"SERVICEDESK_SUPPORT_ADDRESS is {DEFAULT_SUPPORT_ADDRESS} (the default): fine for a trial, "
            "but customers' replies to a ticket go to an address on localhost; set the address they write to"
        )
    if not roles & {"web", "worker"}:
        return  # intake channels matter to the roles that read Slack
    host = urlsplit(settings.slack_api_url).hostname or ""
    if not settings.slack_pacing and (host == "slack.com" or host.endswith((".slack.com", ".slack-gov.com"))):
        report.note(
            "SERVICEDESK_SLACK_PACING is off while SLACK_API_URL is Slack's own: bursts will be refused "
            "with 429s (honoured, but slower); leave it on"
        )
    if settings.triage_channel and settings.triage_channel in settings.intake_channels:
        report.problem(
            f"{settings.triage_channel} is both the triage channel and an intake channel: "
            "customers would read the team's internal notes"
        )
    if not settings.intake_channels:
        report.note("SERVICEDESK_INTAKE_CHANNELS is empty: tickets come by email, the emoji and the shortcut")


def _check_event_receiving(settings: Settings, report: Report, socket_mode: bool | None) -> None:
    if socket_mode is None and not settings.slack_signing_secret and not settings.slack_app_token:
        report.problem(
            "neither SLACK_SIGNING_SECRET (for HTTP mode) nor SLACK_APP_TOKEN (for --socket-mode) "
            "is set: Slack's events could not be received"
        )
    elif socket_mode is True and not settings.slack_app_token:
        report.problem("SLACK_APP_TOKEN is not set: --socket-mode needs the app-level token (xapp-…)")
    elif socket_mode is False and not settings.slack_signing_secret:
        report.problem("SLACK_SIGNING_SECRET is not set: HTTP mode verifies Slack's requests with it")


def check_delivery(settings: Settings, report: Report) -> None:
    """What stops the delivery worker at start (the relay URL, the email templates), and whether the
    relay takes our session: one that is unreachable or refuses the login fails every email."""
    from mail.delivery import delivery_settings_problems, relay_problem
    from mail.relay import RelayConfig

    problems = delivery_settings_problems(settings)
    for problem in problems:
        report.problem(problem)
    if problems:
        return
    report.ok("SERVICEDESK_SMTP_RELAY_URL and the email templates are usable")
    unusable = relay_problem(settings)
    if unusable is not None:
        report.problem(unusable)
    else:
        relay = RelayConfig.from_url(settings.smtp_relay_url).redacted_url()
        report.ok(f"the SMTP relay {relay} takes our connection and {settings.support_address} as sender")


def check_files(settings: Settings, report: Report) -> None:
    """The files folder as the worker needs it: it, or (when `serve` is still to make it) its nearest
    existing parent, must be a folder this user may write in. The check writes nothing."""
    folder = settings.files_dir
    existing = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        report.problem(f"SERVICEDESK_FILES_DIR: cannot keep files in {str(folder)!r}")
    else:
        report.ok(f"SERVICEDESK_FILES_DIR {str(folder)!r} can keep files")


def check_database(settings: Settings, report: Report) -> None:
    """Reachable and at this release's schema (the URL itself is never shown: it may hold a password)."""
    try:
        open_migrated(settings.database_url).dispose()
    except SchemaNotReady as error:
        # Not a problem: `serve` migrates it on start (a fresh install is checked before it runs).
        report.note(f"{error} (or let `servicedesk serve` do it on start)")
        return
    except StoreError as error:
        report.problem(str(error))
        return
    report.ok("the database is reachable and at this release's schema")


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value if isinstance(value, str) else ",".join(value)
    return None


def _answered_as_slack(error: SlackApiError) -> bool:
    """Whether the error is Slack's own answer (JSON with `ok`, even on a 429 or 5xx), not a web page
    from a server that is no Slack Web API (a wrong path: slack_sdk makes up the error text then)."""
    if error.response.status_code == 404:
        return False
    return not str(error.response.get("error") or "").startswith("Received a response in a non-JSON format")


def check_token(client: WebClient, report: Report) -> bool:
    """auth.test and the granted scopes; False when Slack cannot be used at all."""
    try:
        answer = client.auth_test()
    except SlackApiError as error:
        code = error.response.get("error")
        if code in REFUSED_TOKEN:
            report.problem(f"Slack refused the bot token ({code}): reinstall the app and copy the new token")
        elif not _answered_as_slack(error):
            report.problem(
                f"SLACK_API_URL: {client.base_url} did not answer auth.test as Slack's Web API does "
                f"(HTTP {error.response.status_code}); Slack's is https://slack.com/api/ (with /api/)"
            )
        else:
            report.problem(f"auth.test failed ({code})")
        return False
    except (SlackClientError, OSError) as error:
        report.problem(f"could not reach Slack at {client.base_url} ({type(error).__name__}: {error})")
        return False
    report.ok(f"the token works: bot @{answer.get('user')} in workspace {answer.get('team')}")
    granted_header = _header(answer.headers, "x-oauth-scopes")
    if granted_header is None:
        report.note("Slack did not say which scopes the token has; scopes not checked")
        return True
    granted = {scope.strip() for scope in granted_header.split(",") if scope.strip()}
    missing = [scope for scope in BOT_SCOPES if scope not in granted]
    if missing:
        plural = len(missing) > 1
        report.problem(
            f"the app lacks the scope{'s' if plural else ''} {', '.join(missing)}: add "
            f"{'them' if plural else 'it'} under OAuth & Permissions (or from `servicedesk manifest`) "
            "and reinstall the app"
        )
    else:
        report.ok("the token has every scope the app needs")
    return True


def check_app_token(settings: Settings, report: Report) -> None:
    """Socket Mode's token: `apps.connections.open` hands out a socket URL only for a good one
    (the URL is not used; nothing connects)."""
    client = WebClient(base_url=settings.slack_api_url, timeout=15)
    try:
        client.apps_connections_open(app_token=settings.slack_app_token or "")
    except SlackApiError as error:
        code = error.response.get("error")
        report.problem(
            f"Slack refused SLACK_APP_TOKEN ({code}): create an app-level token with the "
            "connections:write scope under Basic Information"
        )
        return
    except (SlackClientError, OSError) as error:
        report.problem(f"could not check SLACK_APP_TOKEN ({type(error).__name__})")
        return
    report.ok("the app-level token works (Socket Mode)")


def check_channel(client: WebClient, channel: str, role: str, report: Report) -> None:
    try:
        answer = client.conversations_info(channel=channel)
    except SlackApiError as error:
        code = error.response.get("error")
        if code == "channel_not_found":
            report.problem(
                f"the {role} channel {channel} was not found: check the ID, and for a private "
                "channel invite the bot first (it cannot see private channels it is not in)"
            )
        elif code == "missing_scope":
            report.problem(f"could not look at the {role} channel {channel}: the token lacks channels:read")
        else:
            report.problem(f"could not look at the {role} channel {channel} ({code})")
        return
    except (SlackClientError, OSError) as error:
        report.problem(f"could not look at the {role} channel {channel} ({type(error).__name__})")
        return
    info = answer.get("channel") or {}
    name = f"#{info.get('name', channel)} ({channel})"
    if info.get("is_archived"):
        report.problem(f"the {role} channel {name} is archived: unarchive it or choose another")
        return
    if not info.get("is_member"):
        report.problem(
            f"the bot is not a member of the {role} channel {name}: "
            "invite it there with `/invite @servicedesk`"
        )
        return
    if role == "triage" and (info.get("is_ext_shared") or info.get("is_shared")):
        report.problem(
            f"the triage channel {name} is shared with another organization: they would read "
            "internal notes; use a channel only your team is in"
        )
        return
    report.ok(f"the bot is in the {role} channel {name}")


def check_failed_work(settings: Settings, report: Report) -> None:
    """Deliveries and intake that failed for good are kept for a person to retry: a note, so that a
    check after an outage says there is work left (the setup itself may be fine)."""
    try:
        db = open_migrated(settings.database_url)
    except StoreError:
        return  # check_database has said why
    try:
        _rows, counts = outbox.undelivered(db, limit=1)
        intake = inbound.failed_count(db)
    except StoreError:
        return
    finally:
        db.dispose()
    deliveries = counts.get(OutboxState.FAILED, 0)
    if not deliveries and not intake:
        return
    said = []
    if deliveries:
        said.append(f"{deliveries} {'delivery' if deliveries == 1 else 'deliveries'}")
    if intake:
        said.append(f"{intake} intake {'item' if intake == 1 else 'items'}")
    report.note(f"failed and kept: {', '.join(said)}; `servicedesk outbox` lists them and how to retry one")


def check_triage_waiting(settings: Settings, report: Report, triage_ok: bool | None) -> None:
    """New tickets' cards and thread posts the triage channel refused, kept in the outbox until it
    is fixed: a problem while the channel is not seen to be fixed (staff cannot see those tickets),
    a note once it is (they go up at their next try)."""
    try:
        db = open_migrated(settings.database_url)
    except StoreError:
        return  # check_database has said why
    try:
        waiting = outbox.waiting_for_triage(db)
    except StoreError:
        return
    finally:
        db.dispose()
    if not waiting.total:
        return
    if triage_ok:
        later = TRIAGE_RECHECK_MAX.total_seconds() // 60
        report.note(
            f"waiting for the triage channel: {waiting.said()}; they go up within {later:.0f} minutes"
        )
    else:
        report.problem(
            f"waiting for the triage channel: {waiting.said()}; staff cannot see them until the "
            "channel takes posts again"
        )


def run_check(
    settings: Settings,
    *,
    roles: frozenset[str] = ALL_ROLES,
    socket_mode: bool | None = None,
    out: TextIO | None = None,
    client_factory: Callable[[Settings], WebClient] | None = None,
    unrecognised: Sequence[str] = (),
) -> int:
    """`servicedesk check [--role R …] [--socket-mode]`: what the roles to be run need.
    `unrecognised`: variables that look meant for the desk but are no setting (notes: another
    program's may share the prefix)."""
    out = out or sys.stdout
    report = Report()
    triage_ok: bool | None = None  # not looked at in Slack
    for line in unrecognised:
        report.note(line)
    check_settings(settings, report, roles, socket_mode)
    if "worker" in roles:
        check_delivery(settings, report)
        check_files(settings, report)
    check_database(settings, report)
    # Slack is called only for the roles that use it: a host running `--role smtp` may keep the
    # desk's whole .env and still have no way to reach Slack, which is no problem of its own.
    if settings.slack_bot_token and roles & {"web", "worker"}:
        client = (client_factory or _client)(settings)
        if check_token(client, report):
            if settings.triage_channel:
                before = len(report.problems)
                check_channel(client, settings.triage_channel, "triage", report)
                triage_ok = len(report.problems) == before
            for channel in settings.intake_channels:
                if channel != settings.triage_channel:
                    check_channel(client, channel, "intake", report)
    if settings.slack_app_token and "web" in roles and socket_mode is not False:
        check_app_token(settings, report)
    if roles & {"web", "worker"}:  # the Slack side's state, as the Slack checks above
        check_triage_waiting(settings, report, triage_ok)
    if "worker" in roles:  # what the worker gave up on
        check_failed_work(settings, report)
    for line in report.lines:
        print(line, file=out)
    if report.problems:
        count = len(report.problems)
        print(f"{count} problem{'s' if count > 1 else ''} found.", file=out)
        return 1
    print("All good: the desk is ready.", file=out)
    return 0


def _client(settings: Settings) -> WebClient:
    return WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=15)
