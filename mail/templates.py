"""E-mail templates: a subject, a text part and an HTML part per kind of mail.

Built-in files live in ``mail/templates/<name>.subject.txt``, ``<name>.txt`` and ``<name>.html``; a folder
named by ``SERVICEDESK_TEMPLATES_DIR`` overrides any of them, file by file. Templates use the standard
library's ``string.Template`` (``$ticket``, ``${subject}``, ``$$`` for a dollar sign): no logic in
templates, so an operator's override can do nothing but place values. Values are HTML-escaped in the HTML
part, except ``$reply``, which is the fragment produced by :func:`mail.render.render_markdown` (raw HTML
already escaped there).

Two placeholders are optional: a line that mentions ``$customer_name`` or ``$unsubscribe_url`` is left out
when that value is empty, so an empty greeting or a dead unsubscribe link never shows.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from html import escape
from html import unescape as html_unescape
from pathlib import Path
from string import Template

from mail.compose import clean_header_value
from mail.render import RenderedBody

BUILTIN_DIR = Path(__file__).with_name("templates")
SETTING = "SERVICEDESK_TEMPLATES_DIR"

PART_SUFFIXES = {"subject": ".subject.txt", "text": ".txt", "html": ".html"}

COMMON_PLACEHOLDERS = frozenset(
    {
        "ticket",  # "#42"
        "number",  # "42"
        "subject",
        "customer_name",
        "sender_name",
        "support_address",
        "reply_address",
        "unsubscribe_url",
    }
)
TEMPLATE_PLACEHOLDERS: Mapping[str, frozenset[str]] = {
    "acknowledgement": COMMON_PLACEHOLDERS,
    "new_participant": COMMON_PLACEHOLDERS,
    "staff_reply": COMMON_PLACEHOLDERS | {"reply"},
    "resolved": COMMON_PLACEHOLDERS,
    "closed": COMMON_PLACEHOLDERS,
    "reopened": COMMON_PLACEHOLDERS,
    "merged": COMMON_PLACEHOLDERS | {"merged_into"},
}
TEMPLATE_NAMES = tuple(TEMPLATE_PLACEHOLDERS)
OPTIONAL_PLACEHOLDERS = frozenset({"customer_name", "unsubscribe_url"})

NO_SUBJECT = "(no subject)"
# Prefixes mail clients add on reply or forward (English, German, Nordic, French, Spanish, Dutch):
# removed before our own "Re:" so subjects do not grow "Re: Re: Re:".
REPLY_PREFIX_RE = re.compile(r"^\s*((re|fwd?|aw|sv|vs|wg|tr|rv|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
BLANK_LINES_RE = re.compile(r"\n{3,}")
# Tags, comments and the head (whose title is not shown in the body), for telling a blank HTML part.
_HTML_TAG_RE = re.compile(r"<head\b.*?</head\s*>|<!--.*?-->|<[^>]*>", re.IGNORECASE | re.DOTALL)


class TemplateError(Exception):
    """A template file that cannot be used; the message names the file."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"email template {path}: {problem}")
        self.path = path


@dataclass(frozen=True)
class TemplateContext:
    """The values a template can place. ``reply`` is only used by ``staff_reply``, ``merged_into`` only by
    ``merged``."""

    number: int
    subject: str
    sender_name: str
    support_address: str
    reply_address: str
    customer_name: str = ""
    unsubscribe_url: str = ""
    reply: RenderedBody | None = None
    merged_into: int | None = None


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class _Source:
    path: Path
    template: Template


class Templates:
    """All templates, read and checked once at start-up; rendering touches no file."""

    def __init__(self, sources: Mapping[tuple[str, str], _Source]) -> None:
        self._sources = dict(sources)

    def render(self, name: str, context: TemplateContext) -> RenderedMail:
        if name not in TEMPLATE_PLACEHOLDERS:
            raise KeyError(f"unknown email template {name!r}; expected one of {', '.join(TEMPLATE_NAMES)}")
        if name == "staff_reply" and context.reply is None:
            raise ValueError("the staff_reply template needs context.reply (from render_markdown)")
        if name == "merged" and context.merged_into is None:
            raise ValueError("the merged template needs context.merged_into")
        text_values = _values(name, context, html=False)
        html_values = _values(name, context, html=True)
        subject = _fill(self._sources[(name, "subject")], text_values)
        text = _fill_text_part(self._sources[(name, "text")], text_values)
        html = _fill(self._sources[(name, "html")], html_values)
        return RenderedMail(subject=clean_header_value(subject) or NO_SUBJECT, text=text, html=html)

    def path(self, name: str, part: str) -> Path:
        """Which file a part comes from (built-in or override): for start-up logs."""
        return self._sources[(name, part)].path


def load_templates(override_dir: Path | None) -> Templates:
    """Read the built-in templates and the overrides in ``override_dir``; raise TemplateError for any file
    that cannot be read or uses a placeholder its template does not have."""
    paths = {
        (name, part): BUILTIN_DIR / f"{name}{suffix}"
        for name in TEMPLATE_NAMES
        for part, suffix in PART_SUFFIXES.items()
    }
    if override_dir is not None:
        paths.update(_override_paths(override_dir))
    return Templates({key: _read(path, key[0], key[1]) for key, path in paths.items()})


SAMPLE_REPLY_HTML = "<p>Sample staff reply</p>"


def validate_templates(override_dir: Path | None) -> None:
    """Start-up check: load every template and render each once with sample values."""
    templates = load_templates(override_dir)
    sample = TemplateContext(
        number=1,
        subject="Sample subject",
        sender_name="Support",
        support_address="support@example.com",
        reply_address="support+sample@example.com",
        customer_name="Sample Customer",
        unsubscribe_url="https://example.com/unsubscribe",
        reply=RenderedBody(html=SAMPLE_REPLY_HTML, text="Sample staff reply\n", fragment=SAMPLE_REPLY_HTML),
        merged_into=2,
    )
    # Also without the optional values (a recipient without a name, no SERVICEDESK_PUBLIC_URL): the
    # lines naming them are left out then, and must not take the reply or the whole part with them.
    bare = replace(sample, customer_name="", unsubscribe_url="")
    for name in TEMPLATE_NAMES:
        templates.render(name, sample)
        _check_rendered(templates, name, templates.render(name, bare), sample_reply=bare.reply)


def _check_rendered(
    templates: Templates, name: str, mail: RenderedMail, *, sample_reply: RenderedBody | None
) -> None:
    """A part that comes out blank would be mailed as a blank message; a staff_reply part without
    the reply would tell the customer nothing of what staff wrote, and tick the reply as delivered."""
    for part, rendered in (("text", mail.text), ("html", mail.html)):
        path = templates.path(name, part)
        if name == "staff_reply" and sample_reply is not None:
            reply = sample_reply.text.strip() if part == "text" else sample_reply.fragment
            if reply not in rendered:
                raise TemplateError(
                    path,
                    "leaves out $reply (put it on a line of its own, without $customer_name or "
                    "$unsubscribe_url, which leave their line out when empty)",
                )
        if not _visible_text(rendered if part == "text" else _HTML_TAG_RE.sub(" ", rendered)):
            raise TemplateError(
                path, "renders blank (with the optional $customer_name and $unsubscribe_url empty)"
            )


def _visible_text(text: str) -> bool:
    return bool(html_unescape(text).strip())


def _override_paths(folder: Path) -> dict[tuple[str, str], Path]:
    try:
        if not folder.is_dir():
            raise TemplateError(folder, f"{SETTING} names a folder that does not exist or is not a folder")
        entries = sorted(folder.iterdir())
    except OSError as error:  # not allowed to look, a name too long, an I/O error: one line, no traceback
        raise TemplateError(folder, f"cannot be read ({error.strerror or error})") from error
    found: dict[tuple[str, str], Path] = {}
    for path in entries:
        if path.name.startswith(".") or not path.name.endswith((".txt", ".html")):
            continue  # editor backups, notes and other files are not templates
        key = _template_key(path.name)
        if key is None:
            raise TemplateError(
                path,
                f"not a template file name; expected <name>.subject.txt, <name>.txt or <name>.html "
                f"with <name> one of {', '.join(TEMPLATE_NAMES)}",
            )
        found[key] = path
    return found


def _template_key(filename: str) -> tuple[str, str] | None:
    for part, suffix in PART_SUFFIXES.items():  # ".subject.txt" is tried before ".txt"
        if filename.endswith(suffix):
            name = filename.removesuffix(suffix)
            return (name, part) if name in TEMPLATE_PLACEHOLDERS else None
    return None


def _read(path: Path, name: str, part: str) -> _Source:
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise TemplateError(path, f"is not UTF-8 text ({error.reason} at byte {error.start})") from error
    except OSError as error:
        raise TemplateError(path, f"cannot be read ({error.strerror or error})") from error
    template = Template(content)
    if not template.is_valid():
        raise TemplateError(path, "has a '$' that starts no placeholder; write $$ for a dollar sign")
    allowed = TEMPLATE_PLACEHOLDERS[name]
    unknown = sorted(set(template.get_identifiers()) - allowed)
    if unknown:
        raise TemplateError(
            path,
            f"unknown placeholder {', '.join('$' + u for u in unknown)}; "
            f"{name} templates know {', '.join('$' + a for a in sorted(allowed))}",
        )
    if part == "subject" and len([line for line in content.splitlines() if line.strip()]) > 1:
        raise TemplateError(path, "a subject template must be a single line")
    if part == "subject" and not content.strip():
        # Every mail of this kind would go out as "(no subject)": nothing to tell tickets apart by.
        raise TemplateError(
            path, "a subject template must not be empty (delete the file to use the built-in one)"
        )
    return _Source(path=path, template=template)


def _values(name: str, context: TemplateContext, *, html: bool) -> dict[str, str]:
    values = {
        "ticket": f"#{context.number}",
        "number": str(context.number),
        "subject": _clean_subject(context),
        "customer_name": context.customer_name.strip(),
        "sender_name": context.sender_name.strip(),
        "support_address": context.support_address,
        "reply_address": context.reply_address,
        "unsubscribe_url": context.unsubscribe_url.strip(),
    }
    if name == "merged":
        values["merged_into"] = f"#{context.merged_into}"
    if html:
        values = {key: escape(value) for key, value in values.items()}
    if name == "staff_reply":
        # The reply was rendered with raw HTML disabled, so its fragment is inserted as it is.
        reply = context.reply
        values["reply"] = "" if reply is None else (reply.fragment if html else reply.text.rstrip("\n"))
    return values


def _fill(source: _Source, values: Mapping[str, str]) -> str:
    lines = source.template.template.splitlines(keepends=True)
    kept = [line for line in lines if not _mentions_empty_optional(line, values)]
    return Template("".join(kept)).substitute(values)


def _fill_text_part(source: _Source, values: Mapping[str, str]) -> str:
    """The text part, with the runs of blank lines that left-out lines leave behind collapsed in the
    template's own text only: blank lines inside the reply (a code block's) are the author's and stay."""
    reply = values.get("reply")
    if not reply:
        return _collapse_blank_lines(_fill(source, values))
    # While the template's own text is collapsed, the reply stands in as a random marker (no value a
    # customer chose can hold it), put back afterwards.
    marker = f"\x00reply-{secrets.token_hex(8)}\x00"
    text = _collapse_blank_lines(_fill(source, {**values, "reply": marker}))
    return text.replace(marker, reply)


def _collapse_blank_lines(text: str) -> str:
    return BLANK_LINES_RE.sub("\n\n", text).strip("\n") + "\n"


def _mentions_empty_optional(line: str, values: Mapping[str, str]) -> bool:
    names = Template(line).get_identifiers()
    return any(not values.get(name) for name in names if name in OPTIONAL_PLACEHOLDERS)


def _clean_subject(context: TemplateContext) -> str:
    # The ticket's title: a subject that already says "Re:" or carries this ticket's tag would otherwise
    # grow them twice in "Re: $subject [$ticket]".
    subject = clean_header_value(context.subject)
    subject = subject.replace(f"[#{context.number}]", " ")
    subject = REPLY_PREFIX_RE.sub("", clean_header_value(subject))
    return subject.strip() or NO_SUBJECT
