"""Quoted history and signatures in HTML mail, found by the markers mail clients leave.

Markers are reliable where text patterns guess, so HTML is trimmed before it becomes Markdown:

- Outlook starts the quoted message with a header block and puts nothing of the reply below
  it: `div#divRplyFwdMsg`, `#appendonsend`, `span#OLK_SRC_BODY_SECTION` (Outlook for Mac),
  `hr#stopSpelling` (Hotmail), a `div` with a top border holding "From:" (desktop Outlook).
  Everything from the marker on goes.
- Other clients wrap the quote: `.gmail_quote`, `.yahoo_quoted`, `.moz-cite-prefix` (Thunderbird's
  attribution), `blockquote[type=cite]` (Apple Mail, Thunderbird), `.protonmail_quote`, and
  signatures (`.gmail_signature`, `#Signature`, `.moz-signature`). Such an element, and whatever
  follows, goes only when the customer wrote nothing after it; otherwise it is an interleaved
  or bottom-posted reply and stays, to be read as `>` quotes by the text trimmer.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString, Tag

_CUT_IDS = re.compile(r"^(divRplyFwdMsg|appendonsend|OLK_SRC_BODY_SECTION|stopSpelling)$", re.IGNORECASE)
_WRAPPER_CLASSES = {
    "gmail_quote",
    "gmail_quote_container",
    "yahoo_quoted",
    "moz-cite-prefix",
    "protonmail_quote",
    "gmail_signature",
    "moz-signature",
    "ms-outlook-mobile-signature",
}
_WRAPPER_IDS = re.compile(r"^(yahoo_quoted.*|Signature|ms-outlook-mobile-signature|AppleMailSignature)$")
_BORDER_TOP = re.compile(r"border-top\s*:\s*solid", re.IGNORECASE)
_HEADER_START = re.compile(r"^\s*(From|Von|De|Da|Van|Från|Fra|Od|От|发件人)\s*:", re.IGNORECASE)
_MEANINGFUL = re.compile(r"[^\W_]")


def _is_cut_marker(tag: Tag) -> bool:
    if _CUT_IDS.match(str(tag.get("id") or "")):
        return True
    style = str(tag.get("style") or "")
    return tag.name == "div" and bool(_BORDER_TOP.search(style)) and bool(_HEADER_START.match(tag.get_text()))


def _classes(tag: Tag) -> list[str]:
    value = tag.get("class")
    return value.split() if isinstance(value, str) else [str(c) for c in value or ()]


def _is_wrapper(tag: Tag) -> bool:
    if _WRAPPER_CLASSES.intersection(_classes(tag)) or _WRAPPER_IDS.match(str(tag.get("id") or "")):
        return True
    return tag.name == "blockquote" and str(tag.get("type") or "").lower() == "cite"


def _cited_quote(tag: Tag) -> Tag | None:
    if "moz-cite-prefix" not in _classes(tag):
        return None
    following = tag.find_next_sibling(True)
    return following if following is not None and following.name == "blockquote" else None


def _within(node: Tag | NavigableString, marker_ids: set[int]) -> bool:
    # Identity, not ==: bs4 compares tags by content, and two quotes can read the same.
    return any(id(parent) in marker_ids for parent in node.parents)


def _text_after(tag: Tag, marker_ids: set[int]) -> bool:
    """Whether the customer wrote anything after `tag`, outside quoted or signature markers."""
    own = {id(tag)}
    for string in tag.find_all_next(string=True):
        if not _MEANINGFUL.search(string) or _within(string, own):
            continue
        if not _within(string, marker_ids):
            return True
    return False


def _remove_from(tag: Tag) -> None:
    """Remove `tag` and everything after it in document order."""
    node: Tag | None = tag
    while node is not None and node.name != "[document]":
        for sibling in list(node.next_siblings):
            sibling.extract()
        node = node.parent
    tag.extract()


_MAX_MARKERS = 50


def remove_quoted_history(soup: BeautifulSoup) -> bool:
    """Trim quoted history and trailing signatures in place; True when something was removed."""
    markers = [tag for tag in soup.find_all(True) if _is_cut_marker(tag) or _is_wrapper(tag)]
    marker_ids = {id(tag) for tag in markers}
    # Thunderbird's attribution div is followed by the quote it introduces.
    marker_ids.update(id(quote) for tag in markers if (quote := _cited_quote(tag)) is not None)
    wrapper_ids = {id(tag) for tag in markers if _is_wrapper(tag)}
    for marker in markers[:_MAX_MARKERS]:
        if _within(marker, wrapper_ids):
            continue  # history nested inside other history is handled with its container
        if _is_cut_marker(marker) or not _text_after(marker, marker_ids):
            _remove_from(marker)
            return True
    return False
