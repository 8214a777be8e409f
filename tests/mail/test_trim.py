"""trim_reply rules, one common client or risk per test. The customer's words are never lost."""

from __future__ import annotations

import pytest

from mail.trim import trim_reply


@pytest.mark.parametrize(
    ("body", "reply"),
    [
        # Gmail, English and wrapped over two lines.
        ("Thanks!\n\nOn Mon, Mar 3, 2025 at 9:00 AM Support <s@desk.example> wrote:\n> Hi", "Thanks!"),
        (
            "Thanks!\n\nOn Mon, Mar 3, 2025 at 9:00 AM Support Team <\ns@desk.example> wrote:\n\n> Hi",
            "Thanks!",
        ),
        # Gmail in other languages.
        ("Merci\n\nLe lun. 3 mars 2025 à 09:00, Support <s@desk.example> a écrit :\n> Bonjour", "Merci"),
        ("Danke\n\nAm Mo., 3. März 2025 um 09:00 Uhr schrieb Support <s@desk.example>:\n> Hallo", "Danke"),
        ("Gracias\n\nEl lun, 3 mar 2025 a las 9:00, Support (<s@desk.example>) escribió:\n> Hola", "Gracias"),
        ("Dzięki\n\nW dniu 3.03.2025 o 09:00 Support <s@desk.example> napisał(a):\n> Cześć", "Dzięki"),
        ("Bedankt\n\nOp ma 3 mrt 2025 om 09:00 schreef Support <s@desk.example>:\n> Hoi", "Bedankt"),
        ("Díky\n\nDne po 3. 3. 2025 9:00 Support <s@desk.example> napsal(a):\n> Ahoj", "Díky"),
        ("Спасибо\n\nпн, 3 мар. 2025 г. в 09:00, Support <s@desk.example>:\n> Привет", "Спасибо"),
        ("谢谢\n\n2025年3月3日 09:00，Support <s@desk.example> 写道：\n> 你好", "谢谢"),
        ("ありがとう\n\n2025年3月3日(月) 9:00 Support <s@desk.example>:\n> こんにちは", "ありがとう"),
        ("Дякую\n\nпн, 3 бер. 2025 р. о 09:00 Support <s@desk.example> пише:\n> Привіт", "Дякую"),
        ("Kiitos\n\nma 3. maalisk. 2025 klo 9.00 Support (s@desk.example) kirjoitti:\n> Hei", "Kiitos"),
        (
            "Köszönöm\n\nSupport <s@desk.example> ezt írta (időpont: 2025. márc. 3., H, 9:00):\n> Szia",
            "Köszönöm",
        ),
        ("Tack\n\nDen mån 3 mars 2025 kl 09:00 skrev Support <s@desk.example>:\n> Hej", "Tack"),
        (
            "Grazie\n\nIl giorno lun 3 mar 2025 alle ore 09:00 Support <s@desk.example> ha scritto:\n> Ciao",
            "Grazie",
        ),
        (
            "감사합니다\n\n2025년 3월 3일 (월) 오전 9:00, Support <s@desk.example>님이 작성:\n> 안녕",
            "감사합니다",
        ),
        # Gmail's ISO-dated attribution.
        ("Ok\n\n2025-03-03 9:00 GMT+01:00 Support <s@desk.example>:\n> Hi", "Ok"),
        # Outlook.
        (
            "Done.\n\n-----Original Message-----\nFrom: Support\nSent: Monday\nTo: me\nSubject: x\n\nold",
            "Done.",
        ),
        (
            "Done.\n\n________________________________\nFrom: Support <s@desk.example>\nSent: Monday\n\nold",
            "Done.",
        ),
        ("Done.\n\n**From:** Support\n**Sent:** Monday\n**To:** me\n**Subject:** x\n\nold", "Done."),
        ("Klar.\n\nVon: Support <s@desk.example>\nGesendet: Montag\nAn: mich\nBetreff: x\n\nalt", "Klar."),
        # Apple Mail, iPhone, mobile signatures.
        (
            "Yes\n\nSent from my iPhone\n\nOn 3 Mar 2025, at 09:00, Support <s@desk.example> wrote:\n\n> Hi",
            "Yes",
        ),
        ("Oui\n\nEnvoyé de mon iPhone", "Oui"),
        ("Ja\n\nVon meinem iPhone gesendet", "Ja"),
        ("Sure\n\nGet Outlook for Android", "Sure"),
        # Signature delimiter (RFC 3676 "-- ").
        ("See attached.\n\n-- \nPat Doe\nACME Corp\n+1 555 0100", "See attached."),
        # A quote block at the end.
        ("Agreed.\n\n> earlier text\n> more earlier text", "Agreed."),
    ],
)
def test_history_and_signatures_are_trimmed(body: str, reply: str) -> None:
    assert trim_reply(body) == reply


def test_bottom_posting_keeps_the_reply_below_the_quote() -> None:
    body = "On Mon, 3 Mar 2025 at 09:00, Support <s@desk.example> wrote:\n> Did it work?\n\nYes, it did."
    assert trim_reply(body) == "Yes, it did."


def test_interleaved_answers_keep_their_questions() -> None:
    body = (
        "Answers inline.\n\nOn Mon, 3 Mar 2025 at 09:00, Support <s@desk.example> wrote:\n"
        "> Which model?\nThe X200.\n> Which floor?\nThird.\n"
    )
    assert trim_reply(body) == "Answers inline.\n\n> Which model?\nThe X200.\n> Which floor?\nThird."


def test_a_leading_quote_without_attribution_is_context_and_stays() -> None:
    body = "> The invoice is wrong\n\nWhich line is wrong?"
    assert trim_reply(body) == body


@pytest.mark.parametrize(
    "body",
    [
        "On Monday I tried to log in and it failed.\n\nThanks",
        "I tried again and the\nsystem wrote:\nError 42 at step 3",
        "My colleague wrote: please call back.",
        "Sent with the wrong invoice number, see line 3.\nPlease fix it and resend the whole batch today.",
        "From the office on floor 3 we cannot print.\nTo all of us this is urgent.",
        "- first item\n- second item\n\n    indented code",
        "This is not a ---------- delimiter.",
        "```\n> not a quote, code\n```",
    ],
)
def test_ordinary_text_is_kept_whole(body: str) -> None:
    assert trim_reply(body) == body


@pytest.mark.parametrize(
    "body",
    [
        "> everything\n> is quoted",
        "Sent from my iPhone",
        "On Mon, 3 Mar 2025 at 09:00, Support <s@desk.example> wrote:\n> only history",
        "--\nJust a signature",
    ],
)
def test_when_trimming_leaves_nothing_the_whole_body_is_returned(body: str) -> None:
    assert trim_reply(body) == body


def test_a_body_without_words_is_returned_as_it_is() -> None:
    assert trim_reply("\n______\n\n") == "______"


def test_line_endings_and_blank_edges_are_normalised() -> None:
    assert trim_reply("\r\n\r\nHello\r\nthere\r\n\r\n") == "Hello\nthere"
    assert trim_reply("") == ""


def test_huge_input_is_kept_past_the_examined_budget() -> None:
    body = "word " * 100 + "\n"
    text = body * 5_000 + "\nOn Mon, 3 Mar 2025 at 09:00, Support <s@desk.example> wrote:\n> old"
    trimmed = trim_reply(text)
    assert trimmed.startswith("word") and trimmed.endswith("> old")  # unexamined lines are kept
