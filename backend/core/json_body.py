"""Request bodies as JSON: bounded in depth, with only text and numbers a database can store.

`json.loads` alone lets through what later turns into a 500: nesting deep enough to exhaust the
recursion limit, NaN and Infinity, numbers past any column, NUL (PostgreSQL refuses it in text)
and lone surrogates (not encodable as UTF-8). `load_json` refuses each with the path of the value.
"""

from __future__ import annotations

import json
import math
from typing import Any

from backend.core.errors import InvalidFields, MalformedInput, ManiError

MAX_DEPTH = 32
# A signed 64-bit column holds any whole number mani accepts.
MAX_INTEGER = 2**63 - 1


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text (NUL or a lone surrogate), or None."""
    if "\x00" in value:
        return "must not contain a NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain a lone surrogate (\\ud800-\\udfff)"
    return None


def _path(parts: tuple) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def check_values(payload: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Walk the parsed document (without recursion); MalformedInput past `max_depth`, InvalidFields
    naming the first value that is not storable text or a finite, bounded number."""
    stack: list[tuple[Any, tuple]] = [(payload, ())]
    while stack:
        value, where = stack.pop()
        if len(where) > max_depth:
            raise MalformedInput(f"The JSON is nested deeper than {max_depth} levels.")
        problem = None
        if isinstance(value, str):
            problem = text_problem(value)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_INTEGER:
                problem = f"must be a whole number within ±{MAX_INTEGER}"
        elif isinstance(value, float):
            if not math.isfinite(value):
                problem = "must be a finite number"
        elif isinstance(value, dict):
            for key, item in value.items():
                key_problem = text_problem(key)
                if key_problem:
                    problem = "has a key with a NUL character or a lone surrogate"
                    break
                stack.append((item, (*where, key)))
        elif isinstance(value, list):
            stack.extend((item, (*where, index)) for index, item in enumerate(value))
        if problem:
            field = _path(where)
            raise InvalidFields(f"{field} {problem}.", [{"field": field, "message": problem}])


def load_json(body: bytes, *, error: type[ManiError] = MalformedInput, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON document in `body`, checked by `check_values`; `error` when it is not JSON at all."""
    try:
        payload = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise error(f"The JSON is nested deeper than {max_depth} levels.") from None
    except (ValueError, UnicodeDecodeError) as problem:
        raise error(f"The body is not valid JSON ({str(problem)[:200]}).") from None
    check_values(payload, max_depth=max_depth)
    return payload


def json_object(body: bytes, *, error: type[ManiError] = MalformedInput, max_depth: int = MAX_DEPTH) -> dict:
    """The JSON object in `body`; `error` (MalformedInput by default) when it is not one."""
    payload = load_json(body, error=error, max_depth=max_depth)
    if not isinstance(payload, dict):
        raise error("The body must be a JSON object.")
    return payload
