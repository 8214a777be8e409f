"""Customer HTML to Markdown: bounded, sanitised, quoted history removed, then converted.

The order matters for safety: the linear limiter (size, depth, attributes) runs on the raw
HTML, nh3 (Ammonia) sanitises what is left, dropping `<script>`, `<style>` and `<head>` with their
contents, and only then do BeautifulSoup and markdownify see it. HTML is never passed on or
rendered: only the Markdown made from it is kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import nh3
from bs4 import BeautifulSoup, Tag
from markdownify import MarkdownConverter

from mail.inbound_html_limit import limit_html
from mail.inbound_html_quotes import remove_quoted_history
from mail.markdown_escape import escape_line_start, escape_markdown, link_destination

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "div", "dl", "dt",
    "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre",
    "q", "s", "samp", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "tt", "u", "ul", "details", "summary",
}  # fmt: skip
_ATTRIBUTES = {
    "*": {"class", "id"},  # quote markers (gmail_quote, divRplyFwdMsg, ...)
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "blockquote": {"type"},  # Apple Mail and Thunderbird mark quotes with type="cite"
    "div": {"style"},  # desktop Outlook marks its reply header only with a top border
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "ol": {"start"},
}
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}
_HAS_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # nh3 keeps only the schemes above
_DROPPED_WITH_CONTENT = {"script", "style", "head", "title", "noscript", "template"}
_BLOCK_IN_CELL = ["p", "div", "table", "ul", "ol", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6"]
_MAX_TABLE_COLUMNS = 12
_FENCE = "```"
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,})")
_LINK_SYNTAX = re.compile(r"[\[\]]|<(?=\S)")  # a `<` before a space starts no link
# Punctuation that may end a styled run and be moved after it (never a link's `)` or a code `` ` ``).
_TRAILING_PUNCTUATION = re.compile(r"[.,:;!?\"']+$")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


@dataclass(frozen=True)
class HtmlConversion:
    markdown: str  # the whole HTML body as Markdown
    reply_markdown: str  # the same with quoted history and trailing signatures removed by markers
    truncated: bool  # the HTML was cut to the size or depth limit


def sanitize_html(html: str) -> tuple[str, bool]:
    """Bounded, sanitised HTML (still HTML: for conversion only, never for display)."""
    limited = limit_html(html)
    cleaned = nh3.clean(
        limited.html,
        tags=_TAGS,
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel=None,
    )
    return cleaned, limited.truncated


class _Converter(MarkdownConverter):
    """markdownify with mail-specific images and tables."""

    def __init__(self, cid_names: Mapping[str, str], **options: Any) -> None:
        super().__init__(**options)
        self.cid_names = cid_names
        self._layout_tables: dict[int, bool] = {}

    def escape(self, text: str, parent_tags: set[str]) -> str:
        # A backslash is Markdown's escape character, so `\\fs01\share` (a Windows share) would
        # lose one. Doubled first, it stays as typed; markdownify then escapes `*` and `_`.
        # Brackets and `<` are words too: a `]` in a link's words would break the link into raw
        # syntax, and `[words](address)` or `<address>` typed as text would become links.
        literal = _LINK_SYNTAX.sub(r"\\\g<0>", text.replace("\\", "\\\\"))
        # Backticks typed as words would make code; escaped, they show as typed.
        escaped = str(super().escape(literal.replace("`", "\\`"), parent_tags))  # type: ignore[misc]
        # A text node may begin a line (after a paragraph, a <br>, a block): its `# `, `- `, `1) `
        # or `> ` would turn the customer's words into a heading, list or quote. Escaped there
        # (the node cannot tell whether it is mid-line: an escape mid-line shows the same).
        rest = escaped.lstrip()
        return escaped[: len(escaped) - len(rest)] + escape_line_start(rest)

    def _styled(self, markup: str, el: Tag, text: str, parent_tags: set[str]) -> str:
        """markdownify's bold, italics or strike, with trailing punctuation moved out when a word
        follows at once: CommonMark cannot close `**Note:**the`, whose asterisks would show."""
        if "_noformat" in parent_tags:
            return text
        # As markdownify does, a space just inside the tag goes outside the delimiters; so does a
        # line break (`<b>Name:<br></b>Jane`), which markdownify dropped, gluing the words.
        words = text.strip()
        if not words:
            return ""
        start, end = len(text) - len(text.lstrip()), len(text.rstrip())
        prefix, suffix = _edge_space(text[:start]), _edge_space(text[end:])
        moved = ""
        run = _TRAILING_PUNCTUATION.search(words)
        if run and run.start() > 0 and not suffix and _next_char(el).isalnum():
            words, moved = words[: run.start()], run.group(0)
        return f"{prefix}{markup}{words}{markup}{moved}{suffix}"

    def convert_b(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return self._styled("**", el, text, parent_tags)

    def convert_em(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return self._styled("*", el, text, parent_tags)

    def convert_del(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return self._styled("~~", el, text, parent_tags)

    convert_strong = convert_b
    convert_i = convert_em
    convert_s = convert_del

    def convert_img(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        src = browser_url(str(el.get("src") or ""))
        alt = str(el.get("alt") or "").strip()
        if src.lower().startswith("cid:"):
            name = self.cid_names.get(unquote(src[4:]).strip("<>").lower())  # RFC 2392 URL-encodes
            return f"[image: {name or alt or 'inline image'}]"
        if any(str(el.get(side) or "").strip() in {"0", "1", "2"} for side in ("width", "height")):
            return ""  # a tracking pixel
        if not _HAS_SCHEME.match(src):
            return alt  # no image, or a relative address: a mail has no base to resolve it against
        return f"![{escape_markdown(alt) or 'image'}]({link_destination(src)})"

    def convert_a(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        href = browser_url(str(el.get("href") or ""))
        if not _HAS_SCHEME.match(href):
            return text  # a relative href (`#top`, `!channel`) leads nowhere from a mail: the words stay
        if href.lower().startswith("mailto:") and href[7:].strip() == text.strip():
            return text  # an address shown as itself needs no link syntax
        if re.search(r"\n[ \t]*\n", text.strip()):
            # A link around whole paragraphs (newsletters wrap blocks in one <a>): Markdown link text
            # cannot span a blank line, so `[...](url)` would show as raw syntax. The words stay
            # blocks, and the link follows them on its own.
            return f"\n\n{text.strip()}\n\n{self._link(el, href, href, parent_tags)}\n\n"
        return self._link(el, text, href, parent_tags)

    def _link(self, el: Tag, text: str, href: str, parent_tags: set[str]) -> str:
        """markdownify's link, to ``href`` written as a Markdown destination (`<…>` around an
        address with spaces or parentheses, which would otherwise end or break the link)."""
        original = el.get("href")
        el["href"] = link_destination(href) if text.strip() != href else href
        try:
            return str(super().convert_a(el, text, parent_tags))  # type: ignore[misc]
        finally:
            # The soup is converted again for the reply's text: leave the element as it was.
            if original is None:
                del el["href"]
            else:
                el["href"] = original

    def convert_pre(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        block = str(super().convert_pre(el, text, parent_tags))  # type: ignore[misc]
        # markdownify always fences with three backticks, so a line of three backticks inside
        # (quoted Markdown) ended the block early. CommonMark closes a fence only with one at
        # least as long: make it longer than any run inside.
        longest = max((len(run) for run in re.findall(r"^ {0,3}(`{3,})", text, flags=re.M)), default=0)
        if longest < len(_FENCE) or _FENCE not in block:
            return block
        fence = "`" * (longest + 1)
        head, body = block.split(_FENCE, 1)
        body, tail = body.rsplit(_FENCE, 1)
        return f"{head}{fence}{body}{fence}{tail}"

    def convert_td(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        # A `|` in a cell's words (code spans and link addresses included) would end the cell:
        # the row would gain a column and every cell after it would be dropped. Escaped, it is
        # the cell's text, as GFM tables define it.
        return str(super().convert_td(el, _escape_cell_pipes(text), parent_tags))  # type: ignore[misc]

    def convert_th(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return str(super().convert_th(el, _escape_cell_pipes(text), parent_tags))  # type: ignore[misc]

    def convert_details(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return f"\n\n{text.strip()}\n\n"

    convert_summary = convert_details


def _edge_space(space: str) -> str:
    """The whitespace at the edge of a styled run, as kept outside its delimiters."""
    if "\n" in space:
        return "  \n"  # a hard line break, as markdownify writes `<br>`
    return " " if space else ""  # one space, also for a no-break space or a tab


def _next_char(el: Tag) -> str:
    """The first character of the text right after ``el`` among its siblings, or ""."""
    node = el.next_sibling
    while node is not None:
        text = node.get_text() if isinstance(node, Tag) else str(node)
        if text:
            return text[0]
        node = node.next_sibling
    return ""


def browser_url(url: str) -> str:
    """``url`` as a browser reads an ``href``: spaces and control characters around it trimmed,
    tabs and line breaks inside it dropped (WHATWG URL parsing), spaces inside it as ``%20``."""
    return re.sub(r"[\t\n\r]", "", url.strip(_C0_AND_SPACE)).replace(" ", "%20")


def _escape_cell_pipes(text: str) -> str:
    return text.replace("|", "\\|")


def _is_layout_table(table: Tag) -> bool:
    """A table used for page layout (nested, one column, or holding blocks), not for data."""
    rows = [row for row in table.find_all("tr") if row.find_parent("table") is table]
    widest = max((len(row.find_all(["td", "th"], recursive=False)) for row in rows), default=0)
    cells = [cell for cell in table.find_all(["td", "th"]) if cell.find_parent("table") is table]
    return (
        widest < 2
        or widest > _MAX_TABLE_COLUMNS
        or any(cell.find(_BLOCK_IN_CELL) is not None for cell in cells)
    )


def _flatten_layout_tables(soup: BeautifulSoup) -> None:
    """Layout tables become plain blocks, so their text reads as paragraphs, not a grid.

    Data tables (a few columns of plain cells) stay tables and become Markdown tables.
    """
    layout = [table for table in soup.find_all("table") if _is_layout_table(table)]
    parts = ["thead", "tbody", "tfoot", "tr", "td", "th", "caption"]
    renamed = [
        element
        for table in layout
        for element in [table, *table.find_all(parts)]
        if element is table or element.find_parent("table") is table
    ]
    for element in renamed:  # renamed only now: find_parent("table") above needs the tables
        element.name = "div"


def tidy_markdown(markdown: str) -> str:
    """No trailing spaces, at most one blank line in a row, no blank edges; except inside a fenced
    code block (a customer's `<pre>`), whose blank lines and spaces are the customer's layout."""
    out: list[str] = []
    fence: str | None = None  # the opening fence while inside a code block
    blanks = 0
    for line in markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        opening = _FENCE_LINE.match(line)
        if fence is not None:
            out.append(line)
            if opening and opening.group(1).startswith(fence) and not line.strip().strip("`"):
                fence = None
            continue
        line = line.rstrip()
        if opening:
            fence = opening.group(1)
        blanks = blanks + 1 if not line else 0
        if blanks < 2:
            out.append(line)
    return "\n".join(out).strip("\n")


def _convert(soup: BeautifulSoup, cid_names: Mapping[str, str]) -> str:
    _flatten_layout_tables(soup)
    converter = _Converter(
        cid_names,
        heading_style="ATX",
        bullets="-",
        strong_em_symbol="*",
        code_language="",
        escape_misc=False,
    )
    return tidy_markdown(str(converter.convert_soup(soup)))


def html_to_markdown(html: str, *, cid_names: Mapping[str, str] | None = None) -> HtmlConversion:
    """Convert customer HTML; `cid_names` maps lowercased Content-IDs to attachment file names."""
    names = cid_names or {}
    cleaned, truncated = sanitize_html(html)
    soup = BeautifulSoup(cleaned, "html.parser")
    markdown = _convert(soup, names)
    # Converting only flattens layout tables in the soup, which quote markers never are.
    reply = _convert(soup, names) if remove_quoted_history(soup) else markdown
    return HtmlConversion(markdown=markdown, reply_markdown=reply, truncated=truncated)
