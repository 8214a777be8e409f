"""Slack emoji names -> characters."""

import pytest

from bot.text import emoji_character, emojize_names
from bot.text.emoji import emoji_from_codepoints


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("wave", "👋"),
        ("+1", "👍"),
        ("thumbsup", "👍"),
        ("white_check_mark", "✅"),
        ("ticket", "🎫"),
        ("simple_smile", "🙂"),
        ("man-shrugging", "🤷\u200d♂️"),
        ("female-technologist", "👩\u200d💻"),
        ("man-woman-girl", "👨\u200d👩\u200d👧"),
        ("flag-de", "🇩🇪"),
        ("large_green_circle", "🟢"),
        ("wave::skin-tone-2", "👋🏻"),
        ("wave::skin-tone-6", "👋🏿"),
        ("wave::skin-tone-1", "👋"),
        ("point_up::skin-tone-3", "☝🏼"),
        ("skin-tone-3", "🏼"),
        ("partyparrot", None),
    ],
)
def test_emoji_character(name, expected):
    assert emoji_character(name) == expected


def test_codepoints():
    assert emoji_from_codepoints("1f44b-1f3fc") == "👋🏼"
    assert emoji_from_codepoints("zz") is None


def test_emojize_names_leaves_unknown_and_times():
    assert emojize_names(":wave::skin-tone-2: :custom: 12:30:45") == "👋🏻 :custom: 12:30:45"
