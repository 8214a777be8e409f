"""Images embedded in HTML as `data:` URLs (`<img src="data:image/png;base64,…">`), made files.

Some clients and web forms paste a screenshot into the HTML itself rather than as a `cid:` part.
The sanitiser keeps no `data:` URL (a link to one could carry anything), so without this the image
was lost and only its alt text shown. Each one becomes an inline file, as a `cid:` image would be,
and its `src` is pointed at that file, so the body shows `[image: image-1.png]` where it was.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from collections.abc import Callable

# Raster types only: an SVG is a document that can carry script.
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
_DATA_IMAGE_SRC = re.compile(
    r"""(?P<attribute>\bsrc\s*=\s*)(?P<quote>["']?)data:(?P<type>image/[a-z0-9.+-]+)"""
    r"""(?:;[a-z0-9=._-]+)*;base64,(?P<data>[A-Za-z0-9+/=\s]+)(?P=quote)""",
    re.IGNORECASE,
)
# Per mail: thousands of one-pixel images would otherwise make thousands of uploads.
MAX_DATA_IMAGES = 20
CONTENT_ID_DOMAIN = "data-image.invalid"

# Called with (file name, content type, bytes, Content-ID) for each image taken out.
AddImage = Callable[[str, str, bytes, str], None]


def take_data_images(
    html: str, add: AddImage, *, first_number: int = 1, room: int = MAX_DATA_IMAGES
) -> tuple[str, int]:
    """`html` with each embedded raster image replaced by a `cid:` reference to a file given to
    `add` (numbered from `first_number`), and how many files were added. The same image twice is
    one file. Past `room` files, or when the data is not base64, an image is left as it was (the
    sanitiser then drops it)."""
    taken: dict[bytes, str] = {}

    def replace(match: re.Match[str]) -> str:
        content_type = match.group("type").lower()
        if content_type not in _IMAGE_TYPES:
            return match.group(0)
        try:
            data = base64.b64decode(re.sub(r"\s+", "", match.group("data")), validate=True)
        except (binascii.Error, ValueError):
            return match.group(0)
        content_id = taken.get(data)
        if content_id is None:
            if len(taken) >= room or not data:
                return match.group(0)
            number = first_number + len(taken)
            content_id = f"image-{number}@{CONTENT_ID_DOMAIN}"
            extension = mimetypes.guess_extension(content_type) or ".img"
            add(f"image-{number}{extension}", content_type, data, content_id)
            taken[data] = content_id
        quote = match.group("quote") or '"'
        return f"{match.group('attribute')}{quote}cid:{content_id}{quote}"

    if "data:" not in html:
        return html, 0
    return _DATA_IMAGE_SRC.sub(replace, html), len(taken)
