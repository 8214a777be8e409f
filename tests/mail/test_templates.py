"""Email templates: built-in files, overrides file by file, placeholders and start-up validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mail.render import render_markdown
from mail.templates import (
    BUILTIN_DIR,
    TEMPLATE_NAMES,
    TemplateContext,
    TemplateError,
    load_templates,
    validate_templates,
)


def context(**changes: object) -> TemplateContext:
    values: dict[str, object] = {
        "number": 42,
        "subject": "Printer on fire",
        "sender_name": "ACME Support",
        "support_address": "support@acme.test",
        "reply_address": "support+k3y@acme.test",
        "customer_name": "Bob",
        "unsubscribe_url": "https://desk.acme.test/unsubscribe/k3y",
        "reply": render_markdown("Hello **Bob**,\n\n- restart it\n- <b>done</b>"),
        "merged_into": 43,
    }
    values.update(changes)
    return TemplateContext(**values)  # type: ignore[arg-type]


def test_every_template_has_its_three_files():
    for name in TEMPLATE_NAMES:
        for suffix in (".subject.txt", ".txt", ".html"):
            assert (BUILTIN_DIR / f"{name}{suffix}").is_file()
    assert set(TEMPLATE_NAMES) == {
        "acknowledgement",
        "new_participant",
        "staff_reply",
        "resolved",
        "closed",
        "reopened",
        "merged",
    }


def test_builtin_templates_validate():
    validate_templates(None)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_template_renders_subject_text_and_html(name: str):
    mail = load_templates(None).render(name, context())
    assert mail.subject == "Re: Printer on fire [#42]"
    assert "#42" in mail.text and "#42" in mail.html
    assert mail.html.startswith("<!DOCTYPE html>")
    assert "$" not in mail.text and "$" not in mail.html
    assert "https://desk.acme.test/unsubscribe/k3y" in mail.text
    assert 'href="https://desk.acme.test/unsubscribe/k3y"' in mail.html
    assert mail.text.endswith("\n") and not mail.text.endswith("\n\n")


def test_acknowledgement_names_ticket_and_customer():
    mail = load_templates(None).render("acknowledgement", context())
    assert mail.text.startswith("Hello Bob,\n\n")
    assert 'We have received your request "Printer on fire" and opened ticket #42' in mail.text
    assert "<strong>#42</strong>" in mail.html


def test_staff_reply_places_rendered_reply_in_both_parts():
    mail = load_templates(None).render("staff_reply", context())
    assert mail.text.startswith("Hello *Bob*,\n\n- restart it\n- <b>done</b>\n\n-- \nACME Support\n")
    assert "<p>Hello <strong>Bob</strong>,</p>" in mail.html
    # The reply's raw HTML was escaped by render_markdown and is not escaped twice.
    assert "<li>&lt;b&gt;done&lt;/b&gt;</li>" in mail.html


def test_merged_names_both_tickets():
    mail = load_templates(None).render("merged", context())
    assert "ticket #42" in mail.text.lower() and "ticket #43" in mail.text.lower()
    assert "<strong>#43</strong>" in mail.html


def test_values_are_html_escaped_in_the_html_part_only():
    mail = load_templates(None).render(
        "acknowledgement", context(subject="<script>x</script> & co", customer_name='Bob "<b>"')
    )
    assert "<script>" not in mail.html
    assert "&lt;script&gt;x&lt;/script&gt; &amp; co" in mail.html
    assert "Bob &quot;&lt;b&gt;&quot;" in mail.html
    assert '"<script>x</script> & co"' in mail.text
    assert mail.subject == "Re: <script>x</script> & co [#42]"


def test_empty_unsubscribe_url_leaves_the_line_out():
    mail = load_templates(None).render("resolved", context(unsubscribe_url=""))
    assert "unsubscribe" not in mail.text.lower() and "stop emails" not in mail.text.lower()
    assert "Stop emails" not in mail.html and 'href=""' not in mail.html


def test_empty_customer_name_leaves_the_greeting_out():
    mail = load_templates(None).render("closed", context(customer_name="  "))
    assert "Hello" not in mail.text and "Hello" not in mail.html
    assert mail.text.startswith("Ticket #42")


def test_blank_lines_are_collapsed_in_the_template_and_kept_in_the_reply(tmp_path: Path):
    # The left-out greeting leaves blank lines behind; the reply's code block has its own, meant ones.
    (tmp_path / "staff_reply.txt").write_text("Hello $customer_name\n\n$reply\n\n\n-- \n$sender_name\n")
    code = render_markdown("```\nimport os\n\n\ndef main():\n    pass\n```")
    mail = load_templates(tmp_path).render("staff_reply", context(customer_name="", reply=code))
    assert mail.text == "    import os\n\n\n    def main():\n        pass\n\n-- \nACME Support\n"


def test_subject_does_not_grow_reply_prefixes_or_ticket_tags():
    templates = load_templates(None)
    for subject in ("Re: Printer on fire", "RE: AW: Printer on fire [#42]", "Fwd: re:Printer on fire"):
        mail = templates.render("staff_reply", context(subject=subject))
        assert mail.subject == "Re: Printer on fire [#42]"
    # Another ticket's tag is part of the title and stays.
    assert templates.render("staff_reply", context(subject="About [#7]")).subject == "Re: About [#7] [#42]"


def test_subject_never_carries_line_breaks():
    mail = load_templates(None).render("staff_reply", context(subject="Evil\r\nBcc: x@y.test"))
    assert mail.subject == "Re: Evil Bcc: x@y.test [#42]"


def test_empty_subject():
    assert load_templates(None).render("acknowledgement", context(subject="")).subject == (
        "Re: (no subject) [#42]"
    )


def test_reply_and_merge_target_are_required_where_used():
    templates = load_templates(None)
    with pytest.raises(ValueError, match="reply"):
        templates.render("staff_reply", context(reply=None))
    with pytest.raises(ValueError, match="merged_into"):
        templates.render("merged", context(merged_into=None))
    # Elsewhere they are not needed.
    templates.render("closed", context(reply=None, merged_into=None))


def test_unknown_template_name():
    with pytest.raises(KeyError, match="acknowledgement"):
        load_templates(None).render("acknowledgment", context())


# --- overrides ----------------------------------------------------------------------------------------


def test_override_replaces_one_file_and_keeps_the_others(tmp_path: Path):
    (tmp_path / "acknowledgement.subject.txt").write_text("[$ticket] We got it: $subject\n")
    (tmp_path / "acknowledgement.txt").write_text("Thanks $customer_name,\nticket $ticket costs $$0.\n")
    templates = load_templates(tmp_path)
    mail = templates.render("acknowledgement", context())
    assert mail.subject == "[#42] We got it: Printer on fire"
    assert mail.text == "Thanks Bob,\nticket #42 costs $0.\n"
    assert "Thank you for writing to us" in mail.html  # the built-in HTML part
    assert templates.path("acknowledgement", "text") == tmp_path / "acknowledgement.txt"
    assert templates.path("acknowledgement", "html") == BUILTIN_DIR / "acknowledgement.html"
    validate_templates(tmp_path)


def test_override_of_the_reply_template(tmp_path: Path):
    (tmp_path / "staff_reply.html").write_text("<html><body>$reply<p>${sender_name}</p></body></html>\n")
    mail = load_templates(tmp_path).render("staff_reply", context())
    assert mail.html.startswith("<html><body><p>Hello <strong>Bob</strong>,</p>")
    assert mail.html.endswith("<p>ACME Support</p></body></html>\n")


def test_unknown_placeholder_is_an_error_naming_the_file(tmp_path: Path):
    path = tmp_path / "resolved.txt"
    path.write_text("Resolved $ticket for $customer\n")
    with pytest.raises(TemplateError) as caught:
        validate_templates(tmp_path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)
    assert "$customer" in str(caught.value)


def test_placeholder_of_another_template_is_an_error(tmp_path: Path):
    (tmp_path / "closed.txt").write_text("$reply\n")
    with pytest.raises(TemplateError, match=r"closed\.txt.*unknown placeholder \$reply"):
        load_templates(tmp_path)


def test_lone_dollar_is_an_error(tmp_path: Path):
    (tmp_path / "closed.html").write_text("<p>Costs $5</p>\n")
    with pytest.raises(TemplateError, match=r"closed\.html.*\$\$"):
        load_templates(tmp_path)


def test_unreadable_file_is_an_error_naming_it(tmp_path: Path):
    path = tmp_path / "reopened.txt"
    path.write_bytes(b"Reopened \xff\xfe $ticket\n")
    with pytest.raises(TemplateError, match="not UTF-8") as caught:
        load_templates(tmp_path)
    assert caught.value.path == path


def test_a_folder_in_place_of_a_file_is_an_error(tmp_path: Path):
    (tmp_path / "reopened.html").mkdir()
    with pytest.raises(TemplateError, match=r"reopened\.html.*cannot be read"):
        load_templates(tmp_path)


def test_misspelt_template_file_is_an_error(tmp_path: Path):
    (tmp_path / "acknowledgment.txt").write_text("Thanks\n")
    with pytest.raises(TemplateError, match=r"acknowledgment\.txt.*not a template file name"):
        load_templates(tmp_path)


def test_other_files_in_the_folder_are_ignored(tmp_path: Path):
    (tmp_path / "NOTES.md").write_text("$nonsense\n")
    (tmp_path / ".closed.txt.swp").write_text("$nonsense\n")
    validate_templates(tmp_path)


def test_multi_line_subject_is_an_error(tmp_path: Path):
    (tmp_path / "closed.subject.txt").write_text("Closed $ticket\nsecond line\n")
    with pytest.raises(TemplateError, match="single line"):
        load_templates(tmp_path)


def test_missing_folder_is_an_error_naming_the_setting(tmp_path: Path):
    with pytest.raises(TemplateError, match="SERVICEDESK_TEMPLATES_DIR"):
        load_templates(tmp_path / "nowhere")


def test_byte_order_mark_is_tolerated(tmp_path: Path):
    (tmp_path / "closed.subject.txt").write_bytes("\ufeffClosed: $subject".encode())
    assert load_templates(tmp_path).render("closed", context()).subject == "Closed: Printer on fire"


@pytest.mark.parametrize("content", ["", "\n", "  \n\n"])
def test_an_empty_subject_template_is_an_error_naming_the_file(tmp_path: Path, content: str):
    """An empty `closed.subject.txt` (a file created and not yet written) was accepted: every
    closed notice went out as "(no subject)", with nothing saying which ticket it was about."""
    (tmp_path / "closed.subject.txt").write_text(content)
    with pytest.raises(TemplateError, match=r"closed\.subject\.txt: a subject template must not be empty"):
        load_templates(tmp_path)
