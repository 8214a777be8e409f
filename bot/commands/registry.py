"""The verb table: the design's Triage table, one module per group of verbs."""

from __future__ import annotations

from bot.commands import finding, help, labels, lifecycle, links, people, stats, tickets
from bot.commands.base import Verb

VERBS: tuple[Verb, ...] = (
    *tickets.VERBS,
    *lifecycle.VERBS,
    *people.VERBS,
    *labels.VERBS,
    *links.VERBS,
    *finding.VERBS,
    *stats.VERBS,
    *help.VERBS,
)
_BY_NAME = {name: verb for verb in VERBS for name in (verb.name, *verb.aliases)}


def find_verb(word: str) -> Verb | None:
    return _BY_NAME.get(word.lower())
