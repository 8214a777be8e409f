"""A local Slack: the Web API, files, Socket Mode and the people in a workspace, on 127.0.0.1.

    emulator = SlackEmulator()
    emulator.start()                      # background thread with its own event loop
    client = WebClient(token=BOT_TOKEN, base_url=emulator.api_url)
    emulator.user_post(DAN, CONNECT, "Printer is on fire")
    ...
    emulator.stop()

or `await emulator.start_async()` inside a running loop. `python -m sandbox.slack_emulator --port N`
runs it standalone. See docs/sandbox.md for the workspace, the control API and the differences from Slack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

from sandbox.actors import UserActions
from sandbox.control import control_routes
from sandbox.delivery import Dispatcher, Interaction
from sandbox.faults import Fault, FaultInjector, FaultRule
from sandbox.http_api import Files, WebApi, render_permalink
from sandbox.ratelimit import Clock, RateLimiter
from sandbox.sender import Delivery, RetryPolicy
from sandbox.socket_mode import SocketModeHub
from sandbox.state import JSON, CallRecord, Ephemeral, File, Message, ResponseUrlPost, SlackState, View
from sandbox.workspace import TRIAGE, Workspace, default_workspace

log = logging.getLogger(__name__)
T = TypeVar("T")


class SlackEmulator(UserActions):
    def __init__(
        self,
        workspace: Workspace | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
        ack_timeout: float = 3.0,
    ) -> None:
        self.host = host
        self.port = port
        self.state = SlackState(workspace or default_workspace())
        self.faults = FaultInjector()
        self.limiter = RateLimiter(clock)
        self.hub = SocketModeHub(self.state)
        self.dispatcher = Dispatcher(self.state, self.hub, self._schedule)
        self.dispatcher.retry = retry or RetryPolicy()
        self.dispatcher.ack_timeout = ack_timeout
        self.dispatcher.on_answer = self._on_answer
        self.state.emit = self._emit
        self.default_command_channel = TRIAGE
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        api = WebApi(self.state, self.faults, self.limiter)
        files = Files(self.state)
        app = web.Application(client_max_size=1024**3)
        app.add_routes(
            [
                web.route("*", "/api/{method}", api.handle),
                web.post("/upload/v1/{key}", files.upload),
                web.get("/files-pri/{team_file}/{download:download}/{name}", files.download),
                web.get("/files-pri/{team_file}/{name}", files.download),
                web.get("/signin", files.signin),
                web.get("/archives/{channel}/{p}", self._permalink),
                web.get("/socket-mode/link/", self.hub.handle),
                *control_routes(self),
            ]
        )
        return app

    async def _permalink(self, request: web.Request) -> web.Response:
        return render_permalink(self.state, request)

    async def start_async(self) -> None:
        """Start serving on the running loop (for tests and programs that already have one)."""
        self._loop = asyncio.get_running_loop()
        # A short shutdown timeout: a hanging fault must not hold stop() for its whole duration.
        self._runner = web.AppRunner(self._build_app(), shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.state.base_url = f"http://{self.host}:{self.port}/"

    async def stop_async(self) -> None:
        await self.hub.close_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # Wait for the cancellations so no delivery outlives the server it reports to.
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> SlackEmulator:
        """Start serving from a background thread with its own event loop; returns when it listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as error:  # handed to the starting thread, which raises it
                failure.append(error)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._thread = threading.Thread(target=run, name="slack-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> SlackEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> SlackEmulator:
        await self.start_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    def _emit(self, event: JSON, channel: str | None) -> None:
        self.dispatcher.emit(event, channel)

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _schedule(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("the emulator is not running")
        if self._on_loop():
            self._keep(loop.create_task(coroutine))
        else:
            loop.call_soon_threadsafe(lambda: self._keep(loop.create_task(coroutine)))

    def _keep(self, task: asyncio.Task[Any]) -> None:
        # Hold a reference until done: the loop keeps only weak references to tasks.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- addresses -----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.state.base_url

    @property
    def api_url(self) -> str:
        """Give this to WebClient(base_url=...): `http://127.0.0.1:PORT/api/`."""
        return f"{self.state.base_url}api/"

    @property
    def workspace(self) -> Workspace:
        return self.state.workspace

    # -- configuration -------------------------------------------------------------------------
    def deliver_events_to(
        self,
        url: str | None,
        signing_secret: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        commands_url: str | None = None,
        interactivity_url: str | None = None,
    ) -> None:
        """Send events, commands and interactivity to an app's HTTP endpoint (None stops it)."""
        self.dispatcher.deliver_to(url, signing_secret or self.workspace.signing_secret, retry)
        self.dispatcher.commands_url = commands_url
        self.dispatcher.interactivity_url = interactivity_url

    @property
    def subscriptions(self) -> set[str]:
        """Subscribed bot events (`message.channels` etc.); change the set to change what is sent."""
        return self.dispatcher.subscriptions

    @property
    def scopes(self) -> list[str]:
        return self.workspace.scopes

    @scopes.setter
    def scopes(self, scopes: list[str]) -> None:
        self.workspace.scopes = list(scopes)

    def rate_limits(self, enabled: bool = True, clock: Clock | None = None) -> RateLimiter:
        self.limiter.enabled = enabled
        if clock is not None:
            self.limiter.clock = clock
        self.limiter.reset()
        return self.limiter

    def add_fault(
        self, method: str, fault: Fault, *, channel: str | None = None, times: int | None = 1
    ) -> FaultRule:
        """Make the next `times` calls of `method` ("*" for any) fail; times=None until cleared."""
        return self.faults.add(method, fault, channel=channel, times=times)

    def clear_faults(self, method: str | None = None) -> None:
        self.faults.clear(method)

    # -- what happened -------------------------------------------------------------------------
    @property
    def calls(self) -> list[CallRecord]:
        with self.state.lock:
            return list(self.state.calls)

    def calls_to(self, method: str, **params: Any) -> list[CallRecord]:
        """Calls of one method whose parameters (or `channel`) match the given values."""
        found = []
        for call in self.calls:
            if call.method != method:
                continue
            if all(
                (call.channel if key == "channel" else call.params.get(key)) == v for key, v in params.items()
            ):
                found.append(call)
        return found

    def messages(
        self, channel: str, thread_ts: str | None = None, *, include_deleted: bool = True
    ) -> list[Message]:
        """Stored messages, oldest first: a channel's top level, or one thread (parent first)."""
        with self.state.lock:
            if thread_ts is None:
                found = [
                    m
                    for m in self.state.messages.get(channel, {}).values()
                    if not m.is_reply or m.reply_broadcast
                ]
                found = [m for m in found if m.visible]
            else:
                stored = self.state.messages.get(channel, {})
                parent = stored.get(thread_ts)
                found = [] if parent is None else [parent, *(stored[ts] for ts in parent.replies)]
            return [m for m in found if include_deleted or not m.deleted]

    def message(self, channel: str, ts: str) -> Message:
        """One stored message (deleted ones too); KeyError when there is none."""
        with self.state.lock:
            found = self.state.messages.get(channel, {}).get(ts)
        if found is None:
            raise KeyError(f"no message {ts} in {channel}")
        return found

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[Ephemeral]:
        with self.state.lock:
            return [
                e
                for e in self.state.ephemerals
                if (channel is None or e.channel == channel) and (user is None or e.user == user)
            ]

    @property
    def response_posts(self) -> list[ResponseUrlPost]:
        with self.state.lock:
            return list(self.state.response_posts)

    @property
    def files(self) -> dict[str, File]:
        return self.state.files

    def views(self) -> list[View]:
        with self.state.lock:
            return list(self.state.views.values())

    def home_view(self, user: str) -> View | None:
        with self.state.lock:
            return self.state.views.get(self.state.home_views.get(user, ""))

    @property
    def events(self) -> list[JSON]:
        """Every Events API envelope the app was due (delivered or not), oldest first."""
        return list(self.dispatcher.events)

    @property
    def deliveries(self) -> list[Delivery]:
        return list(self.dispatcher.deliveries)

    @property
    def interactions(self) -> list[Interaction]:
        return list(self.dispatcher.interactions)

    @property
    def pending(self) -> int:
        return self.dispatcher.pending

    def redeliver(self, event_id: str) -> None:
        """Send an event the app was already sent once more, as Slack sometimes does (same event_id)."""
        outer = next((e for e in self.dispatcher.events if e["event_id"] == event_id), None)
        if outer is None:
            raise ValueError(f"no event {event_id}")
        self.dispatcher.redeliver(outer)

    # -- Socket Mode ---------------------------------------------------------------------------
    @property
    def socket_connections(self) -> int:
        return self.hub.connected

    @property
    def socket_acks(self) -> list[Any]:
        return list(self.hub.acks)

    def socket_disconnect(self, reason: str = "refresh_requested", close_after: float = 1.0) -> None:
        self._schedule(self.hub.disconnect(reason, close_after))

    # -- waiting -------------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Block until predicate() is truthy (re-checked on every change); return its value."""
        if self._on_loop():
            raise RuntimeError("wait_for would block the emulator's own loop; use wait_for_async")
        deadline = time.monotonic() + timeout
        while True:
            with self.state.lock:
                value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s")
            self.state.wait_changed(min(remaining, 0.05))

    async def wait_for_async(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self.state.lock:
                value = predicate()
            if value:
                return value
            if loop.time() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.01)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every delivery started so far has been answered (or given up)."""
        self.wait_for(lambda: self.dispatcher.pending == 0, timeout)

    async def wait_idle_async(self, timeout: float = 5.0) -> None:
        await self.wait_for_async(lambda: self.dispatcher.pending == 0, timeout)

    def wait_for_socket(self, count: int = 1, timeout: float = 5.0) -> None:
        self.wait_for(lambda: self.hub.connected >= count, timeout)

    async def wait_for_socket_async(self, count: int = 1, timeout: float = 5.0) -> None:
        await self.wait_for_async(lambda: self.hub.connected >= count, timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the sandbox Slack emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--events-url", help="deliver events, commands and interactivity to this URL")
    parser.add_argument(
        "--signing-secret", help="sign deliveries with this secret (default: the sandbox one)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def serve() -> None:
        emulator = SlackEmulator(host=args.host, port=args.port)
        await emulator.start_async()
        if args.events_url:
            emulator.deliver_events_to(args.events_url, args.signing_secret)
        ws = emulator.workspace
        print(
            json.dumps(
                {
                    "url": emulator.base_url,
                    "api_url": emulator.api_url,
                    "bot_token": ws.bot_token,
                    "app_token": ws.app_token,
                    "signing_secret": ws.signing_secret,
                }
            ),
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await emulator.stop_async()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
