"""The /_sandbox/ control API and the `python -m sandbox.act` CLI, as another process uses them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.act import main as act_main
from sandbox.act import request
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import ALICE, CONNECT, DAN, TRIAGE


def test_post_edit_react_and_read_back(emulator: SlackEmulator, client: WebClient) -> None:
    url = emulator.base_url
    posted = request(url, "/_sandbox/act/post", {"user": DAN, "channel": CONNECT, "text": "printer down"})
    assert posted["ok"] and posted["ts"]
    reply = request(
        url,
        "/_sandbox/act/post",
        {"user": ALICE, "channel": CONNECT, "text": "on it", "thread_ts": posted["ts"]},
    )
    assert request(
        url, "/_sandbox/act/edit", {"user": ALICE, "channel": CONNECT, "ts": reply["ts"], "text": "x"}
    )["ok"]
    assert request(
        url, "/_sandbox/act/react", {"user": ALICE, "channel": CONNECT, "ts": posted["ts"], "name": "eyes"}
    )["ok"]
    thread = request(url, f"/_sandbox/messages?channel={CONNECT}&thread_ts={posted['ts']}")["messages"]
    assert [m["text"] for m in thread] == ["printer down", "x"]
    assert thread[0]["reactions"][0]["name"] == "eyes"

    client.chat_postMessage(channel=TRIAGE, text="hello")
    calls = request(url, "/_sandbox/calls?method=chat.postMessage")["calls"]
    assert [c["params"]["text"] for c in calls] == ["hello"]
    assert "token" not in calls[0]


def test_mistakes_are_400(emulator: SlackEmulator) -> None:
    answer = request(
        emulator.base_url, "/_sandbox/act/post", {"user": "U0NOBODY", "channel": TRIAGE, "text": "x"}
    )
    assert answer["ok"] is False and "U0NOBODY" in answer["error"]


def test_faults_and_rate_limits_over_http(emulator: SlackEmulator, client: WebClient) -> None:
    url = emulator.base_url
    assert request(
        url,
        "/_sandbox/faults",
        {"method": "chat.postMessage", "kind": "slack_error", "error": "token_revoked"},
    )["ok"]
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=TRIAGE, text="x")
    assert raised.value.response["error"] == "token_revoked"
    assert request(url, "/_sandbox/faults", method="DELETE")["ok"]
    assert request(url, "/_sandbox/rate_limits", {"enabled": True})["ok"]
    assert emulator.limiter.enabled


def test_act_cli(emulator: SlackEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        act_main(["--url", emulator.base_url, "post", "--user", DAN, "--channel", CONNECT, "from the CLI"])
        == 0
    )
    ts = json.loads(capsys.readouterr().out)["ts"]
    assert emulator.message(CONNECT, ts).text == "from the CLI"
    assert act_main(["--url", emulator.base_url, "command", "--user", ALICE, "/desk", "close 1"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["kind"] == "command" and answer["trigger_id"]
    assert emulator.interactions[-1].payload["text"] == "close 1"
    assert emulator.interactions[-1].payload["channel_id"] == TRIAGE


def test_act_cli_as_a_subprocess(emulator: SlackEmulator) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.act", "--url", emulator.base_url, "messages", "--channel", TRIAGE],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(done.stdout) == {"ok": True, "messages": []}
