"""Verification codes: unguessable, readable aloud, typed back without confusion.

`MANI-7K3F-Q9XZ-4M2P`: 12 symbols of Crockford's base32 (no I, L, O, U), 60 bits from
`secrets`. Typed codes are normalised the Crockford way (O->0, I/L->1, any case, any dashes).
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "MANI"
GROUPS = 3
GROUP_LEN = 4
BITS = GROUPS * GROUP_LEN * 5

_TYPOS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SHAPE = re.compile(rf"^{PREFIX}(?:-[{ALPHABET}]{{{GROUP_LEN}}}){{{GROUPS}}}$")


def new_code() -> str:
    """A fresh random code (callers keep the database's unique index as the final guard)."""
    return code_from_int(secrets.randbits(BITS))


def code_from_int(value: int) -> str:
    """The code spelled by the low 60 bits of `value` (random, or derived from a keyed hash)."""
    symbols = []
    for _ in range(GROUPS * GROUP_LEN):
        symbols.append(ALPHABET[value & 31])
        value >>= 5
    body = "".join(symbols)
    groups = [body[i : i + GROUP_LEN] for i in range(0, len(body), GROUP_LEN)]
    return "-".join([PREFIX, *groups])


def normalize_code(text: str) -> str | None:
    """The canonical form of a typed code, or None when it cannot be one of ours."""
    cleaned = re.sub(r"[\s\-_.]", "", text.upper())
    if cleaned.startswith(PREFIX):
        cleaned = cleaned[len(PREFIX) :]
    cleaned = cleaned.translate(_TYPOS)
    if len(cleaned) != GROUPS * GROUP_LEN or any(ch not in ALPHABET for ch in cleaned):
        return None
    groups = [cleaned[i : i + GROUP_LEN] for i in range(0, len(cleaned), GROUP_LEN)]
    return "-".join([PREFIX, *groups])


def is_code(text: str) -> bool:
    return bool(_SHAPE.match(text))
