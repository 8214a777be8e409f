"""`servicedesk serve`: the HTTP endpoint, the SMTP intake and the worker on one asyncio loop.

Roles can run apart (`--role web|smtp|worker`) to scale out around one PostgreSQL. Database work
runs in threads so it never blocks the loop. SIGTERM/SIGINT: stop accepting, finish or give back
what is held, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack_errors import REFUSED_APP_TOKEN
from store.context import Desk
from store.migrate import upgrade
from store.settings import Settings, SettingsError

if TYPE_CHECKING:
    from bot.socket_mode import WatchedSocketModeHandler
    from bot.worker import WorkerConfig

log = logging.getLogger(__name__)

ROLES = ("web", "smtp", "worker")
STOP_GRACE_SECONDS = 8.0
# The design's "exits within 10 s of SIGTERM", kept even when a database call never returns (the
# network to PostgreSQL dropping packets, a paused server): such a thread cannot be cancelled, and
# asyncio's executor shutdown and the interpreter's exit would each wait for it without end.
EXIT_DEADLINE_SECONDS = 9.5


@dataclass
class RunningService:
    """Where each role listens, once started (ports may have been chosen by the OS)."""

    http_port: int | None = None
    smtp_port: int | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def required_settings(roles: set[str], socket_mode: bool) -> list[str]:
    needed: list[str] = []
    if roles & {"web", "worker"}:
        needed += ["slack_bot_token", "triage_channel"]
    if "web" in roles:
        needed.append("slack_app_token" if socket_mode else "slack_signing_secret")
    return needed


async def run_service(
    settings: Settings,
    roles: set[str],
    *,
    socket_mode: bool = False,
    on_ready: Callable[[RunningService], Awaitable[None] | None] | None = None,
    running: RunningService | None = None,
    worker_config: WorkerConfig | None = None,
) -> None:
    settings.require(*required_settings(roles, socket_mode))
    if "worker" in roles:
        from mail.delivery import check_delivery_settings

        check_delivery_settings(settings)  # a bad relay URL or template stops here, with one line
    from bot.app import build_bolt_app, slack_client, slack_session
    from bot.assembly import build_worker
    from bot.socket_mode import WatchedSocketModeHandler
    from mail.intake import start_smtp_intake

    desk = Desk.build(settings)
    if "worker" in roles:  # the worker keeps every mail's and Slack file's bytes there
        problem = await asyncio.to_thread(desk.files.usable_problem)
        if problem is not None:
            desk.db.dispose()
            raise SettingsError(f"SERVICEDESK_FILES_DIR: {problem}")
    await asyncio.to_thread(upgrade, desk.db)
    running = running or RunningService()
    loop = asyncio.get_running_loop()
    # Signals reach the main thread only (tests and the demo run the service in another), and
    # asyncio's loop on Windows has no signal handlers.
    if threading.current_thread() is threading.main_thread():

        def on_stop_signal() -> None:
            if not running.stop.is_set():
                _exit_after(EXIT_DEADLINE_SECONDS)
            running.stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, on_stop_signal)

    cleanups: list[Callable[[], Awaitable[None]]] = []
    connecting: list[asyncio.Task[None]] = []  # Socket Mode's first connect, while it lasts
    tasks: list[asyncio.Task[None]] = []
    # One pool of kept-alive connections for every Web API call this process makes (Bolt's and the
    # worker's): without it slack_sdk opens and closes a connection, and on Slack a TLS handshake,
    # per call. Closed last, once the worker has stopped.
    slack_http = slack_session() if roles & {"web", "worker"} else None
    try:
        if "web" in roles:
            client = slack_client(desk, session=slack_http)
            bolt = build_bolt_app(desk, client=client, socket_mode=socket_mode)
            from bot.http import build_web_app
            from bot.web_routes import extra_routes

            # Built before the web app, so that /healthz can say how the connection is.
            handler = WatchedSocketModeHandler(bolt, settings.slack_app_token or "") if socket_mode else None
            if handler is not None:  # its client holds a session and a task from the start
                cleanups.append(_socket_mode_closer(handler, connecting))
            web_app = build_web_app(
                desk.db,
                None if socket_mode else bolt,
                signing_secret=None if socket_mode else settings.slack_signing_secret,
                extra_routes=extra_routes(desk),
                socket_mode_state=handler.client.state if handler is not None else None,
            )
            runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=STOP_GRACE_SECONDS / 2)
            await runner.setup()
            cleanups.append(runner.cleanup)
            site = web.TCPSite(runner, settings.http_host, settings.http_port)
            with _listening("SERVICEDESK_HTTP_HOST", "SERVICEDESK_HTTP_PORT", settings.http_port):
                await site.start()
            running.http_port = _bound_port(runner)
            log.info("HTTP listening on %s:%s", settings.http_host, running.http_port)
            if handler is not None:
                # Slack out of reach: the token check waits out its timeout and the handler keeps
                # trying; a stop signal must still stop either (before anything else listens).
                checking = _check_app_token(client, settings.slack_app_token)
                if not await _unless_stopped(checking, running.stop):
                    return
                # Connecting waits for as long as Slack's link is out of reach (slack_sdk tries again
                # every 10 s): the SMTP intake and the worker need no Slack events, and start now.
                connecting.append(asyncio.create_task(_connect_socket_mode(handler)))
        if "smtp" in roles:
            with _listening("SERVICEDESK_SMTP_HOST", "SERVICEDESK_SMTP_PORT", settings.smtp_port):
                intake = await start_smtp_intake(desk)
            running.smtp_port = intake.port
            cleanups.append(intake.close)
            log.info("SMTP listening on %s:%s", settings.smtp_host, intake.port)
        if "worker" in roles:
            worker = build_worker(desk, client=slack_client(desk, session=slack_http), config=worker_config)
            # Every role here shares desk.db, so SMTP intake, Slack events, commands and the worker's
            # own ingest wake the worker after their commits. Other processes are found by its poll.
            unsubscribe = worker.wake_on(desk.db.wakeups)
            tasks.append(asyncio.create_task(worker.run()))

            async def stop_worker() -> None:
                unsubscribe()
                worker.stop()

            cleanups.append(stop_worker)
        if on_ready is not None:
            result = on_ready(running)
            if result is not None:
                await result
        await running.stop.wait()
        log.info("stopping: accepting nothing new, finishing what is held")
    finally:
        # One budget for the whole stop, however many roles run here: SIGTERM to exit stays within
        # the design's 10 s even when every component takes as long as it may.
        deadline = loop.time() + STOP_GRACE_SECONDS

        def left() -> float:
            return max(deadline - loop.time(), 0.1)

        await _stop_together(cleanups, left())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=left())
            for task in pending:
                task.cancel()
        if slack_http is not None:
            await slack_http.close()
        desk.db.dispose()


async def _connect_socket_mode(handler: WatchedSocketModeHandler) -> None:
    await handler.connect_async()
    log.info("Socket Mode connected")


def _socket_mode_closer(
    handler: WatchedSocketModeHandler, connecting: list[asyncio.Task[None]]
) -> Callable[[], Awaitable[None]]:
    """Stop connecting (a stop must not wait out slack_sdk's 10 s between tries), then close."""

    async def close() -> None:
        for task in connecting:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await handler.close_async()

    return close


def _exit_after(seconds: float) -> None:
    """Once a stop signal came: if the process is still here after `seconds`, exit 0 at once. What
    it held and had not committed is rolled back with its connections and retried (SMTP got no 250;
    claimed rows are found by the next worker), as after a crash, which loses nothing."""

    def hard_exit() -> None:
        log.warning(
            "stopping took longer than %.1f s (a call that cannot be cancelled did not return): exiting now",
            seconds,
        )
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(OSError, ValueError):  # a closed or broken stream: exit anyway
                handler.flush()
        os._exit(0)

    timer = threading.Timer(seconds, hard_exit)
    timer.daemon = True  # never what keeps the process alive
    timer.start()


@contextlib.contextmanager
def _listening(host_setting: str, port_setting: str, port: int) -> Iterator[None]:
    """A port taken or a host that does not resolve is a setting to fix: one line naming them."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        raise SettingsError(
            f"{host_setting}/{port_setting}: cannot listen on port {port}: {reason}"
        ) from None


async def _check_app_token(client: AsyncWebClient, app_token: str | None) -> None:
    """A Socket Mode token Slack refuses is a setting to fix, not something to retry forever."""
    try:
        await client.apps_connections_open(app_token=app_token or "")
    except SlackApiError as error:
        code = str(error.response.get("error", ""))
        if code in REFUSED_APP_TOKEN:
            raise SettingsError(f"SLACK_APP_TOKEN was refused by Slack ({code})") from None
        log.warning("could not check SLACK_APP_TOKEN (%s); connecting anyway", code)
    except (aiohttp.ClientError, TimeoutError) as error:
        # A timeout's text is empty: its type is then the only reason there is to tell.
        reason = str(error) or type(error).__name__
        log.warning("could not check SLACK_APP_TOKEN (%s); connecting anyway", reason)


async def _unless_stopped(work: Awaitable[None], stop: asyncio.Event) -> bool:
    """Run `work` until it ends or `stop` is set (then cancel it): True if it ended."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        stopped.cancel()
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


async def _stop_together(cleanups: list[Callable[[], Awaitable[None]]], timeout: float) -> None:
    """Stop every component at once: all listeners stop accepting at the same moment (one draining
    must not leave another taking new work), and each finishes what it holds beside the others.

    One not done in `timeout` is cancelled, as are all of them if this is. Every failure is logged,
    and the first is raised once all have ended."""
    stopping = [asyncio.ensure_future(cleanup()) for cleanup in cleanups]
    if not stopping:
        return
    try:
        await asyncio.wait(stopping, timeout=timeout)
    finally:
        late = [task for task in stopping if not task.done()]
        for task in late:
            task.cancel()
    if late:
        log.warning("%d component(s) did not stop in time", len(late))
    outcomes = await asyncio.gather(*stopping, return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    for failure in failures[1:]:
        log.error("another component failed to stop", exc_info=failure)
    if failures:
        raise failures[0]


def _bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("HTTP site has no socket")
