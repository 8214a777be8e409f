"""Block Kit checks the emulator applies before it stores a message, as Slack does (`invalid_blocks`).

Only the limits the product can plausibly hit are checked; the error strings follow Slack's form
("... [json-pointer:/blocks/0/text/text]").
"""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BLOCK_ID = 255
MAX_MARKDOWN_TEXT = 12000
MAX_BUTTON_TEXT = 75
MAX_OPTIONS = 100  # static_select / multi_static_select options, and option_groups
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_PLACEHOLDER = 150
SELECTS_WITH_OPTIONS = frozenset(
    {"static_select", "multi_static_select", "overflow", "radio_buttons", "checkboxes"}
)

BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "video",
    }
)
TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})


def _check_text(errors: list[str], obj: Any, pointer: str, limit: int, plain_only: bool = False) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in TEXT_TYPES:
        errors.append(f"must be a text object [json-pointer:{pointer}]")
        return
    if plain_only and obj["type"] != "plain_text":
        errors.append(f'must be "plain_text" [json-pointer:{pointer}/type]')
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        errors.append(f"must be more than 0 characters [json-pointer:{pointer}/text]")
    elif len(text) > limit:
        errors.append(f"must be less than {limit + 1} characters [json-pointer:{pointer}/text]")


def _check_elements(errors: list[str], block: dict[str, Any], pointer: str, limit: int) -> None:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        errors.append(f"must provide at least 1 items [json-pointer:{pointer}/elements]")
        return
    if len(elements) > limit:
        errors.append(f"must provide no more than {limit} items [json-pointer:{pointer}/elements]")
    for index, element in enumerate(elements):
        if not isinstance(element, dict) or "type" not in element:
            errors.append(f"must be an object with a type [json-pointer:{pointer}/elements/{index}]")
        elif element["type"] == "button" and "text" in element:
            _check_text(errors, element["text"], f"{pointer}/elements/{index}/text", MAX_BUTTON_TEXT, True)
        elif element["type"] in SELECTS_WITH_OPTIONS:
            _check_select(errors, element, f"{pointer}/elements/{index}")


def _check_options(errors: list[str], options: Any, pointer: str) -> list[Any]:
    if not isinstance(options, list) or not options:
        errors.append(f"must provide at least 1 items [json-pointer:{pointer}]")
        return []
    if len(options) > MAX_OPTIONS:
        errors.append(f"must provide no more than {MAX_OPTIONS} items [json-pointer:{pointer}]")
    values = []
    for index, option in enumerate(options):
        if not isinstance(option, dict):
            errors.append(f"must be an object [json-pointer:{pointer}/{index}]")
            continue
        _check_text(errors, option.get("text"), f"{pointer}/{index}/text", MAX_OPTION_TEXT)
        value = option.get("value")
        if not isinstance(value, str) or len(value) > MAX_OPTION_VALUE:
            errors.append(
                f"must be less than {MAX_OPTION_VALUE + 1} characters [json-pointer:{pointer}/{index}/value]"
            )
        values.append(value)
    return values


def _check_select(errors: list[str], element: dict[str, Any], pointer: str) -> None:
    """Slack's select menus: at most 100 options (or 100 option groups of at most 100 each), option
    text at most 75 characters and values at most 150; initial options must be among the options."""
    if "placeholder" in element:
        _check_text(errors, element["placeholder"], f"{pointer}/placeholder", MAX_PLACEHOLDER, True)
    values: list[Any] = []
    if "option_groups" in element:
        groups = element["option_groups"]
        if not isinstance(groups, list) or not groups or len(groups) > MAX_OPTIONS:
            errors.append(
                f"must provide between 1 and {MAX_OPTIONS} items [json-pointer:{pointer}/option_groups]"
            )
            groups = groups if isinstance(groups, list) else []
        for index, group in enumerate(groups):
            group = group if isinstance(group, dict) else {}
            _check_text(
                errors, group.get("label"), f"{pointer}/option_groups/{index}/label", MAX_OPTION_TEXT, True
            )
            values += _check_options(errors, group.get("options"), f"{pointer}/option_groups/{index}/options")
    else:
        values = _check_options(errors, element.get("options"), f"{pointer}/options")
    initial = element.get("initial_options", [])
    if "initial_option" in element:
        initial = [element["initial_option"]]
    for index, option in enumerate(initial if isinstance(initial, list) else []):
        if not isinstance(option, dict) or option.get("value") not in values:
            errors.append(f"must match one of the options [json-pointer:{pointer}/initial_options/{index}]")


def _check_block(errors: list[str], block: Any, pointer: str) -> None:
    if not isinstance(block, dict):
        errors.append(f"must be an object [json-pointer:{pointer}]")
        return
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        errors.append(f"unsupported type: {kind} [json-pointer:{pointer}/type]")
        return
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > MAX_BLOCK_ID):
        errors.append(f"must be less than {MAX_BLOCK_ID + 1} characters [json-pointer:{pointer}/block_id]")
    if kind == "section":
        if "text" not in block and "fields" not in block:
            errors.append(f"must provide either text or fields [json-pointer:{pointer}]")
        if "text" in block:
            _check_text(errors, block["text"], f"{pointer}/text", MAX_SECTION_TEXT)
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > MAX_SECTION_FIELDS:
                errors.append(
                    f"must provide no more than {MAX_SECTION_FIELDS} items [json-pointer:{pointer}/fields]"
                )
            else:
                for index, field in enumerate(fields):
                    _check_text(errors, field, f"{pointer}/fields/{index}", MAX_FIELD_TEXT)
    elif kind == "header":
        _check_text(errors, block.get("text"), f"{pointer}/text", MAX_HEADER_TEXT, plain_only=True)
    elif kind == "context":
        _check_elements(errors, block, pointer, MAX_CONTEXT_ELEMENTS)
    elif kind == "actions":
        _check_elements(errors, block, pointer, MAX_ACTIONS_ELEMENTS)
    elif kind == "markdown":
        text = block.get("text")
        if not isinstance(text, str) or len(text) > MAX_MARKDOWN_TEXT:
            errors.append(
                f"must be less than {MAX_MARKDOWN_TEXT + 1} characters [json-pointer:{pointer}/text]"
            )
    elif kind == "rich_text" and not isinstance(block.get("elements"), list):
        errors.append(f"must be an array [json-pointer:{pointer}/elements]")


def validate_blocks(blocks: Any, limit: int = MAX_MESSAGE_BLOCKS) -> list[str]:
    """Return Slack-style error strings; an empty list means the blocks are accepted."""
    if not isinstance(blocks, list):
        return ["must be an array [json-pointer:/blocks]"]
    errors: list[str] = []
    if len(blocks) > limit:
        errors.append(f"must provide no more than {limit} items [json-pointer:/blocks]")
    seen: set[str] = set()
    for index, block in enumerate(blocks):
        _check_block(errors, block, f"/blocks/{index}")
        block_id = block.get("block_id") if isinstance(block, dict) else None
        if isinstance(block_id, str):
            if block_id in seen:
                errors.append(f"duplicate block_id [json-pointer:/blocks/{index}/block_id]")
            seen.add(block_id)
    return errors
