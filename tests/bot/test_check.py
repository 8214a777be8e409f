"""`servicedesk check` against the emulator: settings, token, scopes, channel membership."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest

from bot.check import run_check
from bot.cli import main
from bot.manifest import BOT_SCOPES
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import APP_TOKEN, BOT_TOKEN, CONNECT, EMPTY, HELP, TRIAGE
from store.settings import Settings


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    emu = SlackEmulator().start()
    emu.scopes = list(BOT_SCOPES)
    yield emu
    emu.stop()


def settings_for(emulator: SlackEmulator, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": "secret",
        "slack_api_url": emulator.api_url,
        "triage_channel": TRIAGE,
        "intake_channels": (CONNECT, HELP),
    }
    values.update(overrides)
    return Settings(**values)


def check(settings: Settings) -> tuple[int, str]:
    out = io.StringIO()
    code = run_check(settings, out=out)
    return code, out.getvalue()


def test_all_good_exits_0(emulator: SlackEmulator) -> None:
    code, text = check(settings_for(emulator))
    assert code == 0
    assert "PROBLEM" not in text
    assert "the bot is in the triage channel #triage (C0TRIAGE)" in text
    assert text.rstrip().endswith("All good: the desk is ready.")


def test_a_missing_scope_is_named(emulator: SlackEmulator) -> None:
    emulator.scopes = [scope for scope in BOT_SCOPES if scope != "reactions:write"]
    code, text = check(settings_for(emulator))
    assert code == 1
    assert "PROBLEM  the app lacks the scope reactions:write: add it under OAuth & Permissions" in text


def test_a_channel_the_bot_is_not_in_is_named(emulator: SlackEmulator) -> None:
    code, text = check(settings_for(emulator, intake_channels=(CONNECT, EMPTY)))
    assert code == 1
    assert (
        "PROBLEM  the bot is not a member of the intake channel #random (C0EMPTY): "
        "invite it there with `/invite @servicedesk`"
    ) in text


def test_an_unknown_channel_is_named(emulator: SlackEmulator) -> None:
    code, text = check(settings_for(emulator, triage_channel="C0NOSUCH"))
    assert code == 1
    assert "the triage channel C0NOSUCH was not found" in text


def test_a_refused_token_is_said_plainly(emulator: SlackEmulator) -> None:
    code, text = check(settings_for(emulator, slack_bot_token="xoxb-wrong"))
    assert code == 1
    assert "Slack refused the bot token (invalid_auth)" in text
    assert "triage channel" not in text.split("Slack refused")[1]


def test_slack_unreachable_is_said_plainly() -> None:
    settings = Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret="secret",
        slack_api_url="http://127.0.0.1:9/api/",
        triage_channel=TRIAGE,
    )
    code, text = check(settings)
    assert code == 1
    assert "could not reach Slack at http://127.0.0.1:9/api/" in text


def test_missing_settings_are_named_without_calling_slack() -> None:
    code, text = check(Settings())
    assert code == 1
    assert "SLACK_BOT_TOKEN is not set" in text
    assert "SERVICEDESK_TRIAGE_CHANNEL is not set" in text
    assert "neither SLACK_SIGNING_SECRET" in text


def test_triage_channel_as_intake_channel_is_refused(emulator: SlackEmulator) -> None:
    code, text = check(settings_for(emulator, intake_channels=(TRIAGE,)))
    assert code == 1
    assert "customers would read the team's internal notes" in text


def test_the_command_line_runs_the_check(
    emulator: SlackEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": "secret",
        "SLACK_API_URL": emulator.api_url,
        "SERVICEDESK_TRIAGE_CHANNEL": TRIAGE,
        "SERVICEDESK_INTAKE_CHANNELS": f"{CONNECT},{EMPTY}",
    }.items():
        monkeypatch.setenv(name, value)
    emulator.scopes = [scope for scope in BOT_SCOPES if scope != "files:read"]
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "the app lacks the scope files:read" in out
    assert "not a member of the intake channel #random (C0EMPTY)" in out
    assert out.rstrip().endswith("2 problems found.")


def test_the_socket_mode_token_is_checked(emulator: SlackEmulator) -> None:
    code, text = check(settings_for(emulator, slack_app_token=APP_TOKEN))
    assert code == 0 and "the app-level token works (Socket Mode)" in text
    code, text = check(settings_for(emulator, slack_app_token="xapp-wrong"))
    assert code == 1 and "Slack refused SLACK_APP_TOKEN (invalid_auth)" in text
