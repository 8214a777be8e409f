"""The `servicedesk` command line. Settings are read once here and passed down.

Errors a person can fix (a bad setting, an unreachable database) print one line and exit 2;
never a traceback.
"""

from __future__ import annotations

# `_signal`, not `signal`: the C module loads at once, while `signal` spends tens of milliseconds
# building its enums, time in which a Ctrl-C would still be Python's traceback.
import _signal

EXIT_INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C (128 + SIGINT)


def _interrupted_while_importing(signum: int, frame: object) -> None:
    raise SystemExit(EXIT_INTERRUPTED)


# Ctrl-C while this module's own imports run comes before `main` can catch it, and Python would
# print a traceback: here it is a quiet stop too. Ctrl-C is Python's usual again at the end of this
# module. An ignored SIGINT (a background job) stays ignored.
_importing_sigint = _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
if _importing_sigint:
    _signal.signal(_signal.SIGINT, _interrupted_while_importing)

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

# Only the standard library at the top: `serve` takes over SIGTERM and SIGINT before anything heavy
# is imported (see `main`).
if TYPE_CHECKING:
    from store.settings import Settings

EXIT_USAGE = 2


def _add_role_options(parser: argparse.ArgumentParser, *, role: str, socket_mode: str) -> None:
    """`--role` and `--socket-mode`, the same for `serve` and for `check`. The names are
    `bot.service.ROLES`, written out here: this module imports only the standard library at the top."""
    parser.add_argument("--role", action="append", choices=["web", "smtp", "worker"], help=role)
    parser.add_argument("--socket-mode", action="store_true", help=socket_mode)


class _VersionAction(argparse.Action):
    """`--version`: the release and the schema revision it migrates to, which is what an operator
    compares with "the database is at schema revision …". Worked out only when asked (it imports
    Alembic)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the release and its database schema")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from importlib.metadata import version

        from alembic.script import ScriptDirectory

        from store.migrate import alembic_config

        head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
        print(f"servicedesk {version('servicedesk')} (database schema {head})")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servicedesk",
        description="A Slack-first service desk: email and Slack requests become tickets in Slack threads.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the Slack endpoint, the SMTP intake and the delivery worker"
    )
    _add_role_options(
        serve,
        role="run only this part (repeatable); default: all three",
        socket_mode="receive Slack events over Socket Mode, not HTTP",
    )

    demo = commands.add_parser("demo", help="play a short story against a local Slack emulator and mail sink")
    demo.add_argument("--keep", action="store_true", help="leave it running to play by hand")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    db_commands.add_parser("upgrade", help="apply the schema migrations")
    back = db_commands.add_parser(
        "downgrade", help="undo migrations down to REVISION (before going back to an older release)"
    )
    back.add_argument("revision", help="a revision such as 0004, or `base` (drops every table and its data)")

    manifest = commands.add_parser("manifest", help="print the Slack app manifest")
    manifest.add_argument("--url", help="public base URL of this service (HTTP mode); omit for Socket Mode")

    check = commands.add_parser(
        "check", help="validate settings, the Slack token, scopes and channel membership"
    )
    _add_role_options(
        check,
        role="check what this part of `serve` needs (repeatable); default: all three",
        socket_mode="the web role will receive events over Socket Mode (default: either way will do)",
    )

    box = commands.add_parser("outbox", help="list pending and failed deliveries, and intake that failed")
    # One retry per run: the two IDs number different things, and one would be silently dropped.
    retry = box.add_mutually_exclusive_group()
    retry.add_argument("--retry", type=int, metavar="ID", help="retry a failed delivery")
    retry.add_argument(
        "--retry-intake", type=int, metavar="ID", help="try a failed intake item (mail, Slack event) again"
    )
    box.add_argument("--limit", type=int, default=50)

    commands.add_parser(
        "report", help="metrics over a date range (arrives with the automation and metrics work)"
    )
    return parser


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiosmtpd logs about a dozen INFO lines per SMTP session (peer, connection, EOF, lost...):
    # under a burst of mail that is most of the log and a measurable share of the intake's CPU.
    # Its warnings stay; the intake logs what an operator needs (refusals, outages) itself.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot import event_loop
    from bot.service import ROLES, required_settings, run_service
    from store.settings import unrecognised_settings

    roles = set(args.role or ROLES)
    settings.require(*required_settings(roles, args.socket_mode))
    _configure_logging()
    log = logging.getLogger("servicedesk")
    for line in unrecognised_settings():
        log.warning("%s", line)
    log.info("starting: %s, on %s's event loop", ", ".join(sorted(roles)), event_loop.loop_name())
    event_loop.run(run_service(settings, roles, socket_mode=args.socket_mode))
    return 0


def _stop_before_start(signum: int, frame: object) -> None:
    """SIGTERM or SIGINT before the service installed its own handlers (once it listens): nothing
    has been accepted yet, so there is nothing to finish. Exits at once, even from inside a
    migration waiting for another process's lock (a thread an ordinary exit would wait for)."""
    os._exit(0)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from bot.demo import run_demo

    return run_demo(keep=args.keep)


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from store.db import Database
    from store.migrate import current_revision, downgrade, upgrade

    if args.db_command not in ("upgrade", "downgrade"):
        print("usage: servicedesk db upgrade | servicedesk db downgrade REVISION", file=sys.stderr)
        return EXIT_USAGE
    db = Database(settings.database_url)
    if args.db_command == "upgrade":
        upgrade(db)
        print("database is at the latest schema")
        return 0
    downgrade(db, args.revision)
    print(f"database is at schema revision {current_revision(db) or 'base (no tables)'}")
    return 0


def _manifest(args: argparse.Namespace, settings: Settings) -> int:
    from bot.manifest import render_manifest

    print(render_manifest(args.url), end="")
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from bot.check import ALL_ROLES, run_check
    from store.settings import unrecognised_settings

    roles = frozenset(args.role) if args.role else ALL_ROLES
    return run_check(
        settings,
        roles=roles,
        socket_mode=True if args.socket_mode else None,
        unrecognised=unrecognised_settings(),
    )


def _outbox(args: argparse.Namespace, settings: Settings) -> int:
    from bot.operator import list_outbox, retry_intake, retry_outbox

    if args.retry is not None:
        return retry_outbox(settings, args.retry)
    if args.retry_intake is not None:
        return retry_intake(settings, args.retry_intake)
    return list_outbox(settings, limit=args.limit)


def _report(args: argparse.Namespace, settings: Settings) -> int:
    print(
        "servicedesk report arrives with the automation and metrics work; not available yet", file=sys.stderr
    )
    return EXIT_USAGE


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": _serve,
    "demo": _demo,
    "db": _db,
    "manifest": _manifest,
    "check": _check,
    "outbox": _outbox,
    "report": _report,
}


def main(argv: Sequence[str] | None = None) -> int:
    # Ctrl-C while the heavy modules still import (the first half-second) is a stop like any other,
    # not a traceback.
    try:
        return _run(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _run(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "serve":
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _stop_before_start)
    from store.db import StoreError
    from store.settings import Settings, SettingsError, load_settings

    try:
        # The demo brings its own settings: it must run on a machine with nothing configured.
        settings = Settings() if args.command in ("demo", "manifest") else load_settings()
        return COMMANDS[args.command](args, settings)
    except SettingsError as exc:
        print(f"servicedesk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"servicedesk: {exc}", file=sys.stderr)
        return EXIT_USAGE


if _importing_sigint:  # the imports are done: `main` turns Ctrl-C into a quiet stop from here on
    signal.signal(signal.SIGINT, signal.default_int_handler)

if __name__ == "__main__":
    sys.exit(main())
