"""`servicedesk demo --keep`: the desk stays up, says how to play with it, and shows what happens.

Someone playing by hand cannot see the emulator's channels or the mail sink, so every new or
changed Slack message, every answer only one person sees (what `/desk` says back) and every email
the relay receives is printed here as it arrives.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import TextIO

from bot.demo_stage import SUPPORT_ADDRESS, Stage
from bot.demo_transcript import block_lines, email_lines, message_lines, plain_text, rule
from sandbox.workspace import ALICE, CONNECT, DAN, TRIAGE

Writer = Callable[[str], None]
CARD_LINES = 5  # a changed card is shown by its first lines: number, requester, status


class Feed:
    """Prints Slack messages and emails that are new (or changed) since it last looked."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.seen: dict[tuple[str, str], tuple[object, ...]] = {}
        self.mails = 0
        self.ephemerals = 0
        self.poll(lambda _line: None)  # what the story produced was printed already

    def _state(self, channel: str, ts: str) -> tuple[object, ...]:
        message = self.stage.emulator.message(channel, ts)
        reactions = tuple(sorted((name, len(users)) for name, users in message.reactions.items()))
        return (message.text, len(message.previous_texts), message.deleted, reactions, len(message.files))

    def poll(self, write: Writer) -> None:
        emulator = self.stage.emulator
        workspace = emulator.workspace
        for channel in workspace.channels.values():
            for parent in emulator.messages(channel.id):
                for message in emulator.messages(channel.id, parent.ts):
                    key = (channel.id, message.ts)
                    state = self._state(*key)
                    before = self.seen.get(key)
                    if before == state:
                        continue
                    self.seen[key] = state
                    where = f"#{channel.name}" + (" (thread)" if message.is_reply else "")
                    lines = message_lines(message, workspace, emulator.files)
                    if before is not None and not message.is_reply:
                        lines = lines[:CARD_LINES]
                    write(f"[{where}{' changed' if before is not None else ''}] {lines[0]}  ts={message.ts}")
                    for line in lines[1:]:
                        write(line)
        # `/desk` answers are ephemeral: in no channel's history, so without this a command run by
        # hand would show nothing at all.
        ephemerals = emulator.ephemerals()
        for ephemeral in ephemerals[self.ephemerals :]:
            person = workspace.users.get(ephemeral.user)
            name = person.name if person else ephemeral.user
            # Slack shows the blocks when there are any; the text is then only the notification.
            raw = "\n".join(block_lines(ephemeral.blocks)) if ephemeral.blocks else ephemeral.text
            lines = plain_text(raw, workspace).splitlines() or ["(empty)"]
            write(f"[only {name} sees] {lines[0]}")
            for line in lines[1:]:
                write("    " + line)
        self.ephemerals = len(ephemerals)
        mails = self.stage.mails()
        for mail in mails[self.mails :]:
            write(f"[email to {', '.join(mail.rcpt_tos)}]")
            for line in email_lines(mail):
                write("    " + line)
        self.mails = len(mails)


def instructions(stage: Stage) -> list[str]:
    python = shlex.quote(sys.executable)
    act = f"{python} -m sandbox.act --url {stage.emulator.base_url.rstrip('/')}"
    port = stage.smtp_port
    tickets = stage.store.tickets()
    first = tickets[0] if tickets else None
    thread = first.triage_ts if first and first.triage_ts else "<card ts>"
    number = first.number if first else 1
    send = (
        "import smtplib; from email.message import EmailMessage as M; m = M(); "
        f'm["From"] = "you@example.com"; m["To"] = "{SUPPORT_ADDRESS}"; m["Subject"] = "Printer jam"; '
        f'm.set_content("Page 3 is stuck."); smtplib.SMTP("127.0.0.1", {port}).send_message(m)'
    )
    return [
        rule("Still running: play by hand (Ctrl-C stops it)"),
        f"Slack emulator  {stage.emulator.base_url}  (#triage {TRIAGE}, #globex-support {CONNECT};",
        f"                staff alice {ALICE}, Slack Connect customer dan {DAN})",
        f"SMTP intake     127.0.0.1:{port}, for mail to {SUPPORT_ADDRESS}",
        f"Database        {stage.folder / 'servicedesk.db'} (sqlite3 can read it)",
        "Every new Slack message, /desk answer and email the desk sends is printed below.",
        "",
        "Email the desk (any SMTP client; swaks, or Python):",
        f"  swaks --server 127.0.0.1:{port} --to {SUPPORT_ADDRESS} --from you@example.com \\",
        "        --header 'Subject: Printer jam' --body 'Page 3 is stuck.'",
        f"  {python} -c {shlex.quote(send)}",
        "Post as the Slack Connect customer (opens a ticket):",
        f"  {act} post --user {DAN} --channel {CONNECT} 'The export is empty'",
        f"Reply as staff in ticket #{number}'s thread (a line starting with note: stays internal):",
        f"  {act} post --user {ALICE} --channel {TRIAGE} --thread {thread} 'Looking into it'",
        f"  {act} post --user {ALICE} --channel {TRIAGE} --thread {thread} '!priority high'",
        "Run /desk as staff:",
        f"  {act} command --user {ALICE} /desk 'list'",
        f"  {act} command --user {ALICE} /desk 'reopen {number}'",
        "Read a thread:",
        f"  {act} messages --channel {TRIAGE} --thread {thread}",
        "",
    ]


def play_by_hand(stage: Stage, feed: Feed, out: TextIO) -> None:
    def write(line: str) -> None:
        print(line, file=out, flush=True)

    try:
        # Ctrl-C (or SIGTERM) may come as soon as the first of these lines is read.
        for line in instructions(stage):
            write(line)
        while stage.service_alive and not stage.interrupted.is_set():
            feed.poll(write)
            # Wakes on any Slack change; mail is looked at on the next turn at the latest.
            stage.emulator.state.wait_changed(0.5)
        write("demo: stopping" if stage.interrupted.is_set() else "demo: the service stopped")
    except KeyboardInterrupt:
        write("demo: stopping")
    except Exception:
        if not stage.interrupted.is_set():
            raise
        # The interrupt's KeyboardInterrupt can land inside library code and come out as another
        # error: raised while `threading.Condition.wait` had let go of its lock, it left `with`
        # releasing a lock it did not hold ("cannot release un-acquired lock", seen in CI).
        # Once interrupted, whatever the loop raises is the interrupt.
        write("demo: stopping")
