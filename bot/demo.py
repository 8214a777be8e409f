"""`servicedesk demo`: the real service against a local Slack and a mail sink, playing a short story.

No credentials and no network: everything listens on 127.0.0.1 and the database is a temporary
SQLite file. It prints the story as it happens, then every Slack thread and email it produced and
a one-screen summary. Exit 0 when every step happened; 1, with the step named, when one did not —
that is a product bug, shown as such. `--keep` leaves the desk running to play with by hand.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from typing import TextIO

from bot.demo_feed import Feed, play_by_hand
from bot.demo_scene import StepRecord, StoryRecord
from bot.demo_stage import SUPPORT_ADDRESS, Stage, StepFailed
from bot.demo_story import Story
from bot.demo_transcript import email_lines, rule, thread_lines
from sandbox.workspace import TRIAGE

Writer = Callable[[str], None]
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def run_demo(keep: bool = False, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    # The service's own warnings still reach stderr; its routine INFO lines would drown the story.
    logging.basicConfig(level=logging.WARNING, format="servicedesk: %(levelname)s %(name)s: %(message)s")
    _without_proxies()
    stage = Stage()
    if threading.current_thread() is threading.main_thread():
        _stop_on_signals(stage)
    try:
        stage.start()
    except StepFailed as failure:
        stage.stop()
        print(f"demo: {failure}", file=out)
        return 1
    except KeyboardInterrupt:
        # Stopped before the story played: interrupted, as a Ctrl-C during the story is (`main`).
        stage.stop()
        raise
    try:
        record = play(stage, out)
        if keep:
            play_by_hand(stage, Feed(stage), out)
    finally:
        stage.stop()
    return 0 if record.failure is None else 1


def _without_proxies() -> None:
    """Everything the demo talks to is on 127.0.0.1, but slack_sdk sends every call through
    HTTP(S)_PROXY when one is set (it does not read NO_PROXY): on a machine behind a proxy the demo
    then failed at its first step. This process is the demo's alone."""
    for name in PROXY_VARIABLES:
        os.environ.pop(name, None)


def _stop_on_signals(stage: Stage) -> None:
    """SIGTERM ends the demo as Ctrl-C does: the service stops and its temporary folder is removed.

    Each also sets `stage.interrupted`, which the waits of the story and of `--keep` look at: the
    KeyboardInterrupt a signal raises is lost when it lands in a finalizer or a weakref callback
    (Python prints "Exception ignored in" and carries on), and the demo then ran on."""

    def interrupt(signum: int, frame: object) -> None:
        stage.interrupted.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # an ignored Ctrl-C stays so
        signal.signal(signal.SIGINT, interrupt)


def play(stage: Stage, out: TextIO) -> StoryRecord:
    """Play the story on a started stage and print its transcript; the record says what happened."""
    write = _writer(out)
    delay = stage.settings.reply_delay_seconds if stage.settings else 0
    write("servicedesk demo: the real service (Slack endpoint, SMTP intake, worker) against a local")
    write("Slack emulator, a mail sink and a temporary SQLite database; nothing leaves this machine.")
    write(f"Database and files: {stage.folder}. Staff replies wait {delay:g} s before they go out.")
    write("")
    write(rule("The story"))
    story = Story(stage)
    story.on_step = lambda step: _print_results(write, step)
    story.on_start = lambda title: write(f"{len(story.record.steps) + 1:>2}. {title}")
    record = story.play()
    if record.failure is not None:
        write(f"    ✗ did not happen: {record.reason}")
    write("")
    print_threads(stage, record, write)
    print_emails(stage, write)
    print_summary(stage, record, write)
    if record.failure is not None:
        write("")
        write(f"demo: FAILED at step {len(record.steps)} — {record.failure}")
        write("This is a product bug: the transcript above shows what did happen.")
    return record


def _writer(out: TextIO) -> Writer:
    def write(line: str) -> None:
        print(line, file=out, flush=True)

    return write


def _print_results(write: Writer, step: StepRecord) -> None:
    for result in step.results:
        write(f"    → {result}")
    write(f"      ({step.seconds:.1f} s)")


def print_threads(stage: Stage, record: StoryRecord, write: Writer) -> None:
    emulator, workspace = stage.emulator, stage.emulator.workspace
    for ticket in stage.store.tickets():
        if ticket.triage_ts is None:
            continue
        write(rule(f"#triage · ticket #{ticket.number}, as the support team sees it"))
        for line in thread_lines(emulator.messages(TRIAGE, ticket.triage_ts), workspace, emulator.files):
            write(line)
        write("")
    for ticket in stage.store.tickets():
        if ticket.origin_channel is None or ticket.origin_thread_ts is None:
            continue
        channel = workspace.channels.get(ticket.origin_channel)
        name = f"#{channel.name}" if channel else ticket.origin_channel
        write(rule(f"{name} · ticket #{ticket.number}, as the customer sees it"))
        thread = emulator.messages(ticket.origin_channel, ticket.origin_thread_ts)
        for line in thread_lines(thread, workspace, emulator.files):
            write(line)
        write("")


def print_emails(stage: Stage, write: Writer) -> None:
    mails = stage.mails()
    for index, mail in enumerate(mails, 1):
        write(rule(f"email {index} of {len(mails)}, as the relay received it"))
        for line in email_lines(mail):
            write(line)
        write("")


def print_summary(stage: Stage, record: StoryRecord, write: Writer) -> None:
    workspace = stage.emulator.workspace
    write(rule("Summary"))
    for ticket in stage.store.tickets():
        assignee = workspace.users.get(ticket.assignee_slack_id or "")
        facts = [
            ticket.status,
            f"via {ticket.origin}",
            ticket.requester,
            f"assigned to {assignee.display_name or assignee.real_name}" if assignee else "unassigned",
            f"labels {', '.join(ticket.labels)}" if ticket.labels else "no labels",
        ]
        write(f"ticket #{ticket.number}  {ticket.subject}")
        write(f"           {' · '.join(facts)}")
        shown = record.card_statuses.get(ticket.number)
        if shown:
            write(f"           card status over the story: {' → '.join(shown)}")
    messages = stage.store.messages()
    kinds = Counter(_message_kind(m.direction, m.visibility, m.source) for m in messages)
    write(f"messages   {len(messages)} stored: " + ", ".join(_counted(kinds)))
    mails = stage.mails()
    mail_kinds = Counter(_mail_kind(str(m.message["Auto-Submitted"] or "")) for m in mails)
    write(f"emails     {len(mails)} sent through the relay: " + ", ".join(_counted(mail_kinds)))
    calls = Counter(call.method for call in stage.emulator.calls)
    top = ", ".join(f"{method} {n}" for method, n in calls.most_common(6))
    write(f"Slack      {sum(calls.values())} Web API calls: {top}")
    write(
        f"time       {record.seconds:.1f} s for {len(record.steps)} steps; support address {SUPPORT_ADDRESS}"
    )


def _counted(kinds: Counter[tuple[str, str]]) -> list[str]:
    return [f"{n} {one if n == 1 else many}" for (one, many), n in kinds.items()]


def _message_kind(direction: str, visibility: str, source: str) -> tuple[str, str]:
    if visibility == "internal":
        return "internal note", "internal notes"
    if direction == "inbound":
        return "from a customer", "from customers"
    if source == "system":
        return "from the desk", "from the desk"
    return "staff reply", "staff replies"


def _mail_kind(auto_submitted: str) -> tuple[str, str]:
    if auto_submitted.startswith("auto-replied"):
        return "acknowledgement", "acknowledgements"
    if auto_submitted.startswith("auto-generated"):
        return "status notice", "status notices"
    return "staff reply", "staff replies"
