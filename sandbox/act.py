"""Make people act in a running emulator, and read what happened, from the command line.

    python -m sandbox.act --url http://127.0.0.1:PORT post --user U0EXTDAN --channel C0CONNECT "text"
    python -m sandbox.act --url http://127.0.0.1:PORT command --user U0ALICE "/desk" "close 1"
    python -m sandbox.act --url http://127.0.0.1:PORT messages --channel C0TRIAGE [--thread TS]

It talks to the emulator's /_sandbox/ control API and prints the JSON answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode


def request(base_url: str, path: str, body: dict[str, Any] | None = None, method: str | None = None) -> Any:
    url = base_url.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return json.loads(error.read() or b"{}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox.act", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the emulator's base URL, http://127.0.0.1:PORT")
    sub = parser.add_subparsers(dest="action", required=True)

    post = sub.add_parser("post", help="post a message as a user")
    post.add_argument("--user", required=True)
    post.add_argument("--channel", required=True)
    post.add_argument("--thread", dest="thread_ts")
    post.add_argument("text")

    edit = sub.add_parser("edit", help="edit a user's message")
    delete = sub.add_parser("delete", help="delete a user's message")
    react = sub.add_parser("react", help="add a reaction as a user")
    for p in (edit, delete, react):
        p.add_argument("--user", required=True)
        p.add_argument("--channel", required=True)
        p.add_argument("--ts", required=True)
    edit.add_argument("text")
    react.add_argument("name")

    command = sub.add_parser("command", help="run a slash command as a user")
    command.add_argument("--user", required=True)
    command.add_argument("--channel", help="where it is typed (default: the triage channel)")
    command.add_argument("command")
    command.add_argument("text", nargs="?", default="")

    shortcut = sub.add_parser("shortcut", help="use a message shortcut")
    shortcut.add_argument("--user", required=True)
    shortcut.add_argument("--channel", required=True)
    shortcut.add_argument("--ts", required=True)
    shortcut.add_argument("--callback-id", default="create_ticket")

    action = sub.add_parser("block-action", help="click a button in a message")
    action.add_argument("--user", required=True)
    action.add_argument("--channel", required=True)
    action.add_argument("--ts", required=True)
    action.add_argument("--value")
    action.add_argument("action_id")

    messages = sub.add_parser("messages", help="list a channel's messages or one thread")
    messages.add_argument("--channel", required=True)
    messages.add_argument("--thread", dest="thread_ts")

    calls = sub.add_parser("calls", help="list the Web API calls the emulator received")
    calls.add_argument("--method")

    sub.add_parser("responses", help="list response_url posts and ephemeral messages")
    idle = sub.add_parser("idle", help="wait until every delivery was answered")
    idle.add_argument("--timeout", type=float, default=10.0)

    fault = sub.add_parser("fault", help="inject a fault into a Web API method")
    fault.add_argument("--method", required=True)
    fault.add_argument("--channel")
    fault.add_argument("--times", type=int, default=1)
    fault.add_argument("--retry-after", type=int)
    fault.add_argument("--status", type=int)
    fault.add_argument("--seconds", type=float)
    fault.add_argument("--error")
    fault.add_argument(
        "kind", help="ratelimited, server_error, hang, reset_before_effect, reset_after_effect, slack_error"
    )
    sub.add_parser("clear-faults", help="remove every injected fault")
    return parser


def run(args: argparse.Namespace) -> Any:
    url = args.url
    if args.action == "post":
        return request(url, "/_sandbox/act/post", _pick(args, "user", "channel", "text", "thread_ts"))
    if args.action in ("edit", "delete", "react"):
        return request(
            url, f"/_sandbox/act/{args.action}", _pick(args, "user", "channel", "ts", "text", "name")
        )
    if args.action == "command":
        return request(url, "/_sandbox/act/command", _pick(args, "user", "channel", "command", "text"))
    if args.action == "shortcut":
        body = _pick(args, "user", "channel", "ts", "callback_id")
        return request(url, "/_sandbox/act/shortcut", body)
    if args.action == "block-action":
        body = {**_pick(args, "user", "channel", "action_id", "value"), "message_ts": args.ts}
        return request(url, "/_sandbox/act/block_action", body)
    if args.action == "messages":
        return request(url, "/_sandbox/messages?" + urlencode(_pick(args, "channel", "thread_ts")))
    if args.action == "calls":
        return request(url, "/_sandbox/calls?" + urlencode(_pick(args, "method")))
    if args.action == "responses":
        return request(url, "/_sandbox/responses")
    if args.action == "idle":
        return request(url, f"/_sandbox/idle?timeout={args.timeout}")
    if args.action == "fault":
        body = _pick(args, "method", "channel", "times", "retry_after", "status", "seconds", "error", "kind")
        return request(url, "/_sandbox/faults", body)
    if args.action == "clear-faults":
        return request(url, "/_sandbox/faults", method="DELETE")
    raise SystemExit(f"unknown action {args.action}")


def _pick(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def main(argv: list[str] | None = None) -> int:
    answer = run(build_parser().parse_args(argv))
    print(json.dumps(answer, indent=2))
    return 0 if isinstance(answer, dict) and answer.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
