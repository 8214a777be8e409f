"""A local Slack (Web API, files, Socket Mode, people acting), a signed-request sender and a mail sink.

Used by the tests, `servicedesk demo` and local trials without a workspace. Imports nothing of ours.
The names below load on first use, so `python -m sandbox.slack_emulator` does not import its own
module twice (runpy warns when a package pre-imports the module it is asked to run).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.delivery import Interaction
    from sandbox.faults import Fault, FaultKind
    from sandbox.mail_sink import MailSink, ReceivedMail
    from sandbox.ratelimit import ManualClock
    from sandbox.sender import Attempt, Delivery, RequestSender, RetryPolicy, signature_for
    from sandbox.slack_emulator import SlackEmulator
    from sandbox.workspace import Workspace, default_workspace

_EXPORTS = {
    "Attempt": "sandbox.sender",
    "Delivery": "sandbox.sender",
    "Fault": "sandbox.faults",
    "FaultKind": "sandbox.faults",
    "Interaction": "sandbox.delivery",
    "MailSink": "sandbox.mail_sink",
    "ManualClock": "sandbox.ratelimit",
    "ReceivedMail": "sandbox.mail_sink",
    "RequestSender": "sandbox.sender",
    "RetryPolicy": "sandbox.sender",
    "SlackEmulator": "sandbox.slack_emulator",
    "Workspace": "sandbox.workspace",
    "default_workspace": "sandbox.workspace",
    "signature_for": "sandbox.sender",
}

__all__ = [
    "Attempt",
    "Delivery",
    "Fault",
    "FaultKind",
    "Interaction",
    "MailSink",
    "ManualClock",
    "ReceivedMail",
    "RequestSender",
    "RetryPolicy",
    "SlackEmulator",
    "Workspace",
    "default_workspace",
    "signature_for",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
