"""Sizes the store and the edges agree on, kept apart from the models so settings need no ORM."""

from __future__ import annotations

# The longest email address anyone can deliver to (RFC 5321 section 4.5.3.1.3: a path holds 256
# characters with its angle brackets), and the longest local part (section 4.5.3.1.1).
MAX_ADDRESS_CHARS = 254
MAX_LOCAL_PART_CHARS = 64
