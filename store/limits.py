"""Sizes the store and the edges agree on, kept apart from the models so settings need no ORM."""

from __future__ import annotations

import re

# The longest email address anyone can deliver to (RFC 5321 section 4.5.3.1.3: a path holds 256
# characters with its angle brackets), and the longest local part (section 4.5.3.1.1).
MAX_ADDRESS_CHARS = 254
MAX_LOCAL_PART_CHARS = 64

# An RFC 5321 address literal domain (`[10.0.0.1]`, `[IPv6:2001:db8::1]`): the one place an address
# may hold brackets. The store takes it as a participant's domain and compose writes it, so both use
# this one pattern (with fullmatch) and a participant can always be mailed.
ADDRESS_LITERAL = re.compile(r"\[[A-Za-z0-9:.-]+\]")
