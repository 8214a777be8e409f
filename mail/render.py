"""Markdown (the canonical body of every message) rendered to an HTML part and a text part.

The Markdown may contain customer text, so raw HTML is never passed through: markdown-it runs with
``html=False`` and any ``<tag>`` in the source comes out as escaped text. Images are rendered as links, so a
message never loads an external resource (tracking pixels in customer text stay inert).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode
from markdown_it.utils import EnvType, OptionsDict

# Inline styles, because many mail clients (Gmail above all) drop <style> elements and classes.
FONT_STYLE = "font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;line-height:1.5"
MONO_FONT = "font-family:SFMono-Regular,Menlo,Consolas,monospace"
CODE_STYLE = f"{MONO_FONT};font-size:90%;background-color:#f3f3f3;padding:1px 4px;border-radius:3px"
PRE_STYLE = (
    f"{MONO_FONT};font-size:13px;background-color:#f6f8fa;padding:8px 12px;border-radius:4px;"
    "white-space:pre-wrap;word-wrap:break-word"
)
BLOCKQUOTE_STYLE = "margin:0 0 1em 0;padding:0 0 0 12px;border-left:3px solid #d0d0d0;color:#555555"

INDENT_CODE = "    "
BULLET = "-"


@dataclass(frozen=True)
class RenderedBody:
    """One message body in both forms: ``html`` is a complete document, ``fragment`` its body content
    (what templates embed), ``text`` the plain-text part."""

    html: str
    text: str
    fragment: str


def _render_code(content: str) -> str:
    # Fenced and indented code share one look; the fence's info string (a language) is dropped because
    # no mail client highlights it.
    return f'<pre style="{PRE_STYLE}"><code>{escape(content, quote=False)}</code></pre>\n'


class _EmailRenderer(RendererHTML):
    def fence(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return _render_code(tokens[idx].content)

    def code_block(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return _render_code(tokens[idx].content)

    def image(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        token = tokens[idx]
        alt = self.renderInlineAsText(token.children or [], options, env) or str(token.attrGet("src"))
        src = escape(str(token.attrGet("src") or ""))
        return f'<a href="{src}">{escape(alt, quote=False)}</a>'


def _make_parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": True}, renderer_cls=_EmailRenderer)
    parser.enable(["strikethrough", "linkify"])
    # Only links with a scheme (http://, mailto:) and e-mail addresses: "fuzzy" links would turn file names
    # such as setup.py (a .py domain) into links.
    if parser.linkify is None:
        raise ImportError("linkify-it-py is required to render bare links (pip install linkify-it-py)")
    parser.linkify.set({"fuzzy_link": False})
    return parser


_PARSER = _make_parser()


def _add_inline_styles(tokens: Sequence[Token]) -> None:
    for token in tokens:
        if token.type == "blockquote_open":
            token.attrSet("style", BLOCKQUOTE_STYLE)
        elif token.type == "inline":
            for child in token.children or []:
                if child.type == "code_inline":
                    child.attrSet("style", CODE_STYLE)


def wrap_html_document(fragment: str) -> str:
    """A minimal, self-contained HTML e-mail document around ``fragment``."""
    return (
        "<!DOCTYPE html>\n"
        '<html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>\n'
        f'<body style="{FONT_STYLE};color:#1d1c1d">\n'
        f"{fragment}"
        "</body></html>\n"
    )


def render_markdown(markdown: str) -> RenderedBody:
    """Render a Markdown body to an HTML document (and its body fragment) and a readable text part."""
    tokens = _PARSER.parse(markdown)
    _add_inline_styles(tokens)
    fragment = _PARSER.renderer.render(tokens, _PARSER.options, {})
    text = render_text(SyntaxTreeNode(tokens))
    return RenderedBody(html=wrap_html_document(fragment), text=text, fragment=fragment)


# ---------------------------------------------------------------------------------------------------------
# Text part: a walk over the syntax tree, block by block, each block a list of lines.


def render_text(root: SyntaxTreeNode) -> str:
    lines = _blocks(root.children, tight=False)
    return "\n".join(lines).rstrip() + "\n" if lines else ""


def _blocks(nodes: Sequence[SyntaxTreeNode], *, tight: bool) -> list[str]:
    out: list[str] = []
    for node in nodes:
        lines = _block(node)
        if not lines:
            continue
        if out and not tight:
            out.append("")
        out.extend(lines)
    return out


def _block(node: SyntaxTreeNode) -> list[str]:
    kind = node.type
    if kind == "paragraph":
        return _inline_lines(node)
    if kind == "heading":
        return _heading(node)
    if kind in ("bullet_list", "ordered_list"):
        return _list(node)
    if kind == "blockquote":
        inner = _blocks(node.children, tight=False)
        return [f"> {line}" if line else ">" for line in inner]
    if kind in ("fence", "code_block"):
        return [f"{INDENT_CODE}{line}" if line else "" for line in node.content.rstrip("\n").split("\n")]
    if kind == "hr":
        return ["-" * 20]
    # Anything else (a construct enabled later) still shows its text rather than vanishing.
    return _blocks(node.children, tight=False) if node.children else _split(node.content)


def _split(content: str) -> list[str]:
    return content.rstrip("\n").split("\n") if content else []


def _inline_lines(node: SyntaxTreeNode) -> list[str]:
    text = "".join(_inline(child) for child in _inline_children(node))
    return text.split("\n")


def _inline_children(node: SyntaxTreeNode) -> list[SyntaxTreeNode]:
    # A paragraph or heading holds one "inline" node whose children are the spans.
    children: list[SyntaxTreeNode] = []
    for child in node.children:
        children.extend(child.children if child.type == "inline" else [child])
    return children


def _heading(node: SyntaxTreeNode) -> list[str]:
    text = " ".join(_inline_lines(node))
    level = int(node.tag[1])
    if level == 1:
        return [text, "=" * len(text)]
    if level == 2:
        return [text, "-" * len(text)]
    return [f"{'#' * level} {text}"]


def _list(node: SyntaxTreeNode) -> list[str]:
    items = node.children
    # markdown-it hides the paragraphs of a tight list (no blank lines between items); keep it tight.
    tight = all(child.hidden for item in items for child in item.children if child.type == "paragraph")
    if node.type == "ordered_list":
        start = int(str(node.attrs.get("start", 1)))
        markers = [f"{number}." for number in range(start, start + len(items))]
    else:
        markers = [BULLET] * len(items)
    width = max(len(marker) for marker in markers) + 1
    out: list[str] = []
    for marker, item in zip(markers, items, strict=True):
        body = _blocks(item.children, tight=tight) or [""]
        if out and not tight:
            out.append("")
        out.append(f"{marker.ljust(width)}{body[0]}".rstrip())
        # Continuation lines and nested lists line up with the item's text.
        out.extend(f"{' ' * width}{line}" if line else "" for line in body[1:])
    return out


def _inline(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "text":
        return node.content
    if kind in ("softbreak", "hardbreak"):
        return "\n"
    if kind == "code_inline":
        return f"`{node.content}`"
    inner = "".join(_inline(child) for child in node.children)
    if kind == "strong":
        return f"*{inner}*"
    if kind == "em":
        return f"_{inner}_"
    if kind == "s":
        return f"~~{inner}~~"
    if kind == "link":
        if node.markup in ("autolink", "linkify"):
            # The text is the address as written; the href may be percent-encoded or gained "mailto:".
            return inner
        return _link_text(inner, str(node.attrs.get("href", "")))
    if kind == "image":
        return _link_text(inner or node.content, str(node.attrs.get("src", "")))
    return inner or node.content


def _link_text(text: str, url: str) -> str:
    shown = url.removeprefix("mailto:")
    if not url or text in (url, shown):
        return text or shown
    return f"{text} ({shown})"
