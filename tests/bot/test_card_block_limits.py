"""The card at its extremes, as data checked against Slack's limits (slack_sdk's models and the
emulator's checks): its state line, labels and links always show, whole, however long the names
people chose and however many labels and links a ticket has."""

from __future__ import annotations

import re
from dataclasses import replace

from slack_sdk.models.blocks import Block

from bot.blocks import TicketLinkView, card_blocks
from sandbox.blocks import validate_blocks
from tests.bot.test_blocks_card import VIEW

_TOKEN = re.compile(r"<[^<>]*>|&(?:amp|lt|gt);")


def checked(blocks: list[dict]) -> str:
    assert validate_blocks(blocks) == []
    for block in blocks:
        Block.parse(block).validate_json()
    texts = [b["text"]["text"] for b in blocks if b.get("type") == "section"]
    for text in texts:
        # No `<url|…` or `&am` left open by a cut.
        rest = _TOKEN.sub("", text)
        assert "<" not in rest and ">" not in rest and "&" not in rest, text[-120:]
    return "\n".join(texts)


def test_the_state_line_survives_the_longest_names():
    view = replace(
        VIEW,
        origin="slack",
        requester_name="&" * 200,
        requester_contact=None,
        organization="&" * 200,
        origin_label="Slack Connect (" + "&" * 200 + ")",
    )
    shown = checked(card_blocks(view))
    assert "Status: Open · Priority: High · Assignee: <@U0ALICE>" in shown
    assert "Labels: bug, billing" in shown


def test_a_thousand_links_are_cut_whole_and_counted():
    links = tuple(
        TicketLinkView("relates", None, f"https://tracker.example/project/issues/{n}") for n in range(1000)
    )
    shown = checked(card_blocks(replace(VIEW, links=links)))
    listed = len(re.findall(r"tracker\.example #\d+>", shown))
    more = int(re.search(r"…and (\d+) more", shown).group(1))
    assert listed + more == 1000


def test_a_link_too_long_for_a_section_is_shown_by_its_words():
    url = "https://tracker.example/search?" + "&".join(f"q{n}=v" for n in range(500)) + "&id=77"
    shown = checked(card_blocks(replace(VIEW, links=(TicketLinkView("relates", None, url),))))
    assert "tracker.example #77" in shown
