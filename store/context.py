"""The collaborators every adapter receives (store, files, settings, policy), built once at start.

It lives in `store` so both adapters (`bot` and `mail`) can take it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.actions import DeskPolicy
from store.db import Database
from store.files import FileStore
from store.settings import Settings


def policy_from_settings(settings: Settings) -> DeskPolicy:
    from datetime import timedelta

    return DeskPolicy(
        mail_domain=settings.support_domain,
        acknowledge=settings.acknowledge,
        reply_delay=timedelta(seconds=settings.reply_delay_seconds),
        max_participants=settings.max_participants,
        triage_channel=settings.triage_channel,
        support_addresses=frozenset({settings.support_address.lower()}),
    )


@dataclass(frozen=True)
class Desk:
    settings: Settings
    db: Database
    files: FileStore
    policy: DeskPolicy

    @classmethod
    def build(cls, settings: Settings, db: Database | None = None) -> Desk:
        return cls(
            settings=settings,
            db=db or Database(settings.database_url),
            files=FileStore(settings.files_dir),
            policy=policy_from_settings(settings),
        )
