"""A request body that must be a JSON object (the Job JSON, a signed worker callback)."""

from __future__ import annotations

import json

from backend.core.errors import MalformedInput, ManiError


def json_object(body: bytes, *, error: type[ManiError] = MalformedInput) -> dict:
    """The JSON object in `body`; `error` (MalformedInput by default) when it is not one."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as problem:
        raise error(f"The body is not valid JSON ({problem}).") from None
    if not isinstance(payload, dict):
        raise error("The body must be a JSON object.")
    return payload
