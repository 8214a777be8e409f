"""Slack emoji names (``wave``, ``+1::skin-tone-3``, ``flag-de``) to Unicode characters.

The ``emoji`` package's alias table covers the GitHub/Slack short names; Slack's own additions
and its hyphenated spellings (``man-shrugging``, ``female-technologist``) are mapped here.
Custom workspace emoji have no character and are left to the caller (kept as ``:name:``).
"""

from __future__ import annotations

import re
from functools import lru_cache

import emoji as emoji_lib

# Slack-only names and names whose Slack spelling the package does not know.
SLACK_EMOJI: dict[str, str] = {
    "simple_smile": "\U0001f642",
    "face_palm": "\U0001f926",
    "spock-hand": "\U0001f596",
    "the_horns": "\U0001f918",
    "squirrel": "\U0001f43f\ufe0f",
    "shipit": "\U0001f43f\ufe0f",
    "woman-heart-man": "\U0001f469\u200d\u2764\ufe0f\u200d\U0001f468",
    "man-heart-man": "\U0001f468\u200d\u2764\ufe0f\u200d\U0001f468",
    "woman-heart-woman": "\U0001f469\u200d\u2764\ufe0f\u200d\U0001f469",
    "thumbsup_all": "\U0001f44d",
}

# ``::skin-tone-2`` .. ``::skin-tone-6`` are the Fitzpatrick modifiers U+1F3FB .. U+1F3FF.
SKIN_TONES: dict[int, str] = {tone: chr(0x1F3FB + tone - 2) for tone in range(2, 7)}
# Written alone (``:skin-tone-3:``) Slack shows the tone swatch: the modifier character itself.
SLACK_EMOJI.update({f"skin-tone-{tone}": modifier for tone, modifier in SKIN_TONES.items()})

_SKIN_TONE_SUFFIX = re.compile(r"::skin-tone-([1-6])$")
_FLAG = re.compile(r"^flag-([a-z]{2})$")
_FAMILY = re.compile(r"^(?:man|woman|boy|girl)(?:-(?:man|woman|boy|girl)){2,3}$")
_LARGE_SHAPE = re.compile(r"^large_(\w+?)_(circle|square)$")


def _from_package(name: str) -> str | None:
    found = emoji_lib.emojize(f":{name}:", language="alias")
    return None if found == f":{name}:" else found


def _candidates(name: str) -> list[str]:
    """Spellings of a Slack name that the package may know."""
    underscored = name.replace("-", "_")
    found = [name, underscored]
    for slack_prefix, unicode_prefix in (("female_", "woman_"), ("male_", "man_")):
        if underscored.startswith(slack_prefix):
            found.append(unicode_prefix + underscored[len(slack_prefix) :])
    if _FAMILY.match(name):
        found.append("family_" + underscored)
    if match := _LARGE_SHAPE.match(name):
        found.append(f"{match.group(1)}_{match.group(2)}")
    return found


def _with_skin_tone(character: str, tone: int) -> str:
    if tone < 2:
        return character
    # The modifier follows the first code point; a presentation selector it replaces is dropped.
    first, rest = character[0], character[1:].removeprefix("\ufe0f")
    return first + SKIN_TONES[tone] + rest


@lru_cache(maxsize=4096)
def emoji_character(name: str) -> str | None:
    """The character for a Slack emoji name, or ``None`` for a custom or unknown emoji.

    ``name`` may carry Slack's skin-tone suffix (``wave::skin-tone-3``), with or without colons.
    """
    name = name.strip(":") if name.count(":") == 2 and name.startswith(":") else name
    tone = 1
    if match := _SKIN_TONE_SUFFIX.search(name):
        tone = int(match.group(1))
        name = name[: match.start()]
    if name in SLACK_EMOJI:
        character: str | None = SLACK_EMOJI[name]
    elif match := _FLAG.match(name):
        character = "".join(chr(0x1F1E6 + ord(letter) - ord("a")) for letter in match.group(1))
    else:
        character = next((c for c in map(_from_package, _candidates(name)) if c), None)
    if character is None:
        return None
    return _with_skin_tone(character, tone)


def emoji_from_codepoints(unicode_hex: str) -> str | None:
    """Slack's rich-text ``unicode`` field (lowercase hex code points joined by ``-``,
    e.g. ``1f44b-1f3fc``) as the character; ``None`` when it is not valid hex."""
    try:
        return "".join(chr(int(part, 16)) for part in unicode_hex.split("-") if part)
    except ValueError:
        return None


# Not after a word character, so times and ratios ("1:100:2") are left alone.
_EMOJI_NAME = re.compile(r"(?<!\w):([a-z0-9_+'-]+(?:::skin-tone-[1-6])?):")


def emojize_names(text: str) -> str:
    """Replace ``:name:`` (and ``:name::skin-tone-N:``) with characters; unknown names stay."""

    def replace(match: re.Match[str]) -> str:
        return emoji_character(match.group(1)) or match.group(0)

    return _EMOJI_NAME.sub(replace, text)
