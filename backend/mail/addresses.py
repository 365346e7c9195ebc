"""Email addresses as mani compares them: checked with email-validator, normalized, lowercased.

`recipients.email_norm` holds this form; intake writes it, and inbound callbacks and provider
events find recipients by it.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

# A plain ASCII dot-atom local part: email-validator accepts exactly these unchanged, so only
# the domain needs its (costly) checks, and domains repeat: one check per domain per process.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_MAX_LOCAL, _MAX_ADDRESS = 64, 254


@lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str:
    """The normalized domain, or EmailNotValidError, exactly as email-validator decides it."""
    # The shortest local part: the probe is never longer than any real address at this domain.
    return validate_email(f"a@{domain}", check_deliverability=False).domain


def checked_address(address: str) -> str:
    """The normalized, lowercased address; EmailNotValidError when it is not a valid address."""
    local, at, domain = address.rpartition("@")
    if at and len(local) <= _MAX_LOCAL and _PLAIN_LOCAL.match(local) and domain.isascii():
        normalized = f"{local}@{_checked_domain(domain)}"
        if len(normalized) <= _MAX_ADDRESS:
            return normalized.lower()
    return validate_email(address, check_deliverability=False).normalized.lower()


def normalize_email(address: str) -> str:
    """The comparison form of an address, as stored in `recipients.email_norm`."""
    address = address.strip()
    try:
        return checked_address(address)
    except EmailNotValidError:
        return address.lower()
