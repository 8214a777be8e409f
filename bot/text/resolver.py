"""Turning Slack ids into the names the canonical Markdown stores.

The store keeps message bodies with people and channels already resolved, so the email side
never needs Slack. The listener implements :class:`MentionResolver` with ``users.info`` /
``conversations.info`` / ``usergroups.list`` behind a cache; tests use :class:`DictMentionResolver`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class MentionResolver(Protocol):
    def user_name(self, user_id: str) -> str:
        """The person's display name (real name when the display name is empty), without ``@``."""
        ...

    def channel_name(self, channel_id: str) -> str:
        """The channel's name, without ``#``."""
        ...

    def usergroup_handle(self, usergroup_id: str) -> str:
        """The user group's handle, without ``@``."""
        ...


@dataclass(frozen=True)
class DictMentionResolver:
    """A resolver backed by plain dicts; an unknown id resolves to the id itself, never an error,
    because a message must still be stored when a lookup cannot be made (e.g. a deleted user)."""

    users: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)
    usergroups: Mapping[str, str] = field(default_factory=dict)

    def user_name(self, user_id: str) -> str:
        return self.users.get(user_id, user_id)

    def channel_name(self, channel_id: str) -> str:
        return self.channels.get(channel_id, channel_id)

    def usergroup_handle(self, usergroup_id: str) -> str:
        return self.usergroups.get(usergroup_id, usergroup_id)
