"""Malformed settings through the installed command line.

DESIGN.md, Settings: "A missing or malformed setting stops the program at start with one line naming
the variable and what is expected — never a traceback."
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.workspace import BOT_TOKEN, SIGNING_SECRET, TRIAGE
from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 30


def serve_env(tmp_path: Path, **env: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SERVICEDESK_TRIAGE_CHANNEL": TRIAGE,
        "SERVICEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/desk.db",
        "SERVICEDESK_HTTP_PORT": str(free_port()),
        "SERVICEDESK_SMTP_PORT": str(free_port()),
        # Nothing listens here: serve never needs Slack to start in HTTP mode.
        "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/",
        "SERVICEDESK_SMTP_RELAY_URL": f"smtp://127.0.0.1:{free_port()}",
        **env,
    }


def run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """The command's exit code and output; a `serve` that does not stop by itself (it started) is
    stopped and reported as such."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=START_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"`servicedesk {' '.join(args)}` started instead of refusing the setting:\n{err[-1500:]}")
    return process.returncode, out, err


def assert_one_line_naming(variable: str, code: int, err: str) -> None:
    """Exit 2 and one error line naming the variable (log lines from before it, such as serve's
    "starting:", are not errors), never a traceback."""
    assert "Traceback" not in err, err[-2500:]
    errors = [line for line in err.strip().splitlines() if line.startswith("servicedesk:")]
    assert code == 2 and len(errors) == 1 and variable in errors[0], (code, err[-2500:])


@pytest.mark.parametrize("url", ["http://[::1", "http://", "https:///api/", "http://slack.test:99999/api/"])
def test_serve_refuses_a_slack_api_url_without_a_usable_host_in_one_line(tmp_path: Path, url: str) -> None:
    code, _, err = run(["serve"], serve_env(tmp_path, SLACK_API_URL=url), tmp_path)
    assert_one_line_naming("SLACK_API_URL", code, err)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        # Host names the resolver's IDNA step refuses (an empty label, one past 63 characters): before,
        # check died with "UnicodeError: encoding with 'idna' codec failed".
        "http://slack..test/api/",
        f"http://{'a' * 64}.test/api/",
        # slack_sdk adds the method after the URL: "…/api/?x=1/auth.test" reaches no method.
        "http://127.0.0.1:9/api/?x=1",
        "http://127.0.0.1:9/api/#part",
    ],
)
def test_check_says_a_broken_slack_api_url_in_one_line(tmp_path: Path, url: str) -> None:
    code, _, err = run(["check"], serve_env(tmp_path, SLACK_API_URL=url), tmp_path)
    assert "Traceback" not in err, err[-2500:]
    assert_one_line_naming("SLACK_API_URL", code, err)


def test_serve_refuses_a_files_folder_it_cannot_make(tmp_path: Path) -> None:
    """A folder under a regular file can never be made (root ignores permission bits, so this is the
    'unwritable' case that holds for every user). Before: serve started, answered every mail 250,
    /healthz said 200, and no email ever became a ticket (each failed in the worker with
    NotADirectoryError)."""
    (tmp_path / "a-file").write_text("not a folder")
    env = serve_env(tmp_path, SERVICEDESK_FILES_DIR=str(tmp_path / "a-file" / "files"))
    code, _, err = run(["serve"], env, tmp_path)
    assert_one_line_naming("SERVICEDESK_FILES_DIR", code, err)


def test_check_names_a_files_folder_it_cannot_make(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    env = serve_env(tmp_path, SERVICEDESK_FILES_DIR=str(tmp_path / "a-file" / "files"))
    code, out, err = run(["check", "--role", "smtp", "--role", "worker"], env, tmp_path)
    problems = [line for line in (out + err).splitlines() if "SERVICEDESK_FILES_DIR" in line]
    assert code != 0 and problems, out + err


@pytest.mark.parametrize("command", ["serve", "check"])
def test_a_files_folder_name_too_long_for_the_system_is_one_line(tmp_path: Path, command: str) -> None:
    """Before: `Path.exists()` raised ENAMETOOLONG while the settings were read: a traceback."""
    env = serve_env(tmp_path, SERVICEDESK_FILES_DIR=str(tmp_path / ("a" * 300)))
    code, _, err = run([command], env, tmp_path)
    assert_one_line_naming("SERVICEDESK_FILES_DIR", code, err)


@pytest.mark.parametrize("url", ["https://desk.example.com/x?", "https://desk.example.com#"])
def test_manifest_refuses_a_url_with_an_empty_query_or_fragment(tmp_path: Path, url: str) -> None:
    """Before: the manifest said `request_url: https://desk.example.com/x?/slack/events`, where Slack
    would post to /x with a query, never reaching /slack/events."""
    code, out, err = run(["manifest", "--url", url], serve_env(tmp_path), tmp_path)
    assert_one_line_naming("--url", code, err)
    assert out == ""


@pytest.mark.parametrize("url", ["https://desk.example.com/desk?", "https://desk.example.com#"])
def test_a_public_url_with_an_empty_query_or_fragment_is_refused(tmp_path: Path, url: str) -> None:
    """Links in emails are made by adding a path to SERVICEDESK_PUBLIC_URL: after a '?' or '#' every
    link (large attachments, the original message, unsubscribe) would point at the base page."""
    code, _, err = run(["serve"], serve_env(tmp_path, SERVICEDESK_PUBLIC_URL=url), tmp_path)
    assert_one_line_naming("SERVICEDESK_PUBLIC_URL", code, err)


def test_a_relay_option_given_twice_is_refused_not_the_last_one_taken(tmp_path: Path) -> None:
    """`?starttls=1&starttls=0` was taken as starttls=0: mail to the relay went in the clear while the
    operator had asked for TLS, and `check` said the relay URL was usable."""
    relay = f"smtp://127.0.0.1:{free_port()}?starttls=1&starttls=0"
    code, _, err = run(["serve"], serve_env(tmp_path, SERVICEDESK_SMTP_RELAY_URL=relay), tmp_path)
    assert_one_line_naming("SERVICEDESK_SMTP_RELAY_URL", code, err)


def test_a_slack_api_url_with_a_password_is_refused_without_showing_it(tmp_path: Path) -> None:
    """slack_sdk sends no user:password@ from the URL (the host is taken to be "desk:s3cret@…"), and
    before, `check` printed the URL whole: "could not reach Slack at http://desk:s3cret@…"."""
    env = serve_env(tmp_path, SLACK_API_URL="https://desk:s3cret@proxy.acme.test/api/")
    code, out, err = run(["check", "--role", "worker"], env, tmp_path)
    assert_one_line_naming("SLACK_API_URL", code, err)
    assert "s3cret" not in out + err


@pytest.mark.parametrize("variable", ["SERVICEDESK_SMTP_HOST", "SERVICEDESK_HTTP_HOST"])
def test_a_listen_host_the_resolver_cannot_take_is_one_line(tmp_path: Path, variable: str) -> None:
    """An empty label: the event loop's getaddrinfo raises UnicodeError, no OSError, and serve died
    with a traceback instead of the one line a port taken gets."""
    code, _, err = run(["serve"], serve_env(tmp_path, **{variable: "desk..acme.test"}), tmp_path)
    assert_one_line_naming(variable, code, err)
