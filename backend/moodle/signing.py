"""HMAC signing of callback bodies, exactly as Moodle checks them (seed 000, Task 4.4.2).

The check on the other side is:

    $signature = hash_hmac('sha256', $request_body, $callback_secret);
    hash_equals($signature, $_SERVER['HTTP_X_SIGNATURE'])   // else 401
    abs(time() - $payload['timestamp']) > 300               // else 401

so the signature is lowercase hex over the exact raw bytes, and `timestamp` lives in the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from backend.core.errors import NotAuthorized
from backend.core.json_body import json_object

SIGNATURE_HEADER = "X-Signature"
WINDOW_SECONDS = 300


class SignatureError(NotAuthorized):
    """A signed body did not pass the check; `code` says how, in a word."""


class BadSignature(SignatureError):
    code = "bad_signature"


class StaleTimestamp(SignatureError):
    code = "stale_timestamp"


class NotJson(SignatureError):
    code = "not_json"


def sign(body: bytes, secret: str) -> str:
    """Lowercase hex HMAC-SHA256 of the raw body, keyed with the secret."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def encode(payload: dict) -> bytes:
    """The bytes mani sends: compact JSON, UTF-8 (what is signed is what is sent)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signed_body(payload: dict, secret: str, *, now: float | None = None) -> tuple[bytes, str]:
    """Stamp `payload` with the current unix time, encode it and sign the bytes."""
    stamped = {**payload, "timestamp": int(time.time() if now is None else now)}
    body = encode(stamped)
    return body, sign(body, secret)


def verify(body: bytes, signature: str | None, secret: str, *, now: float | None = None,
           window: int = WINDOW_SECONDS) -> dict:
    """Check a signed body the way Moodle does; returns the parsed payload.

    Raises `BadSignature` (constant-time compare), `NotJson`, or `StaleTimestamp` when the
    body's `timestamp` is more than `window` seconds from `now`, in the past or the future.
    """
    expected = sign(body, secret)
    # compare_digest wants equal types; a missing or non-ASCII header is simply wrong.
    given = (signature or "").strip()
    if not given.isascii() or not hmac.compare_digest(expected, given):
        raise BadSignature("The signature does not match the body.")
    payload = json_object(body, error=NotJson)
    stamp = payload.get("timestamp")
    # PHP's `$payload['timestamp'] ?? 0` with arithmetic: a missing or junk value counts as 0.
    try:
        stamp_value = float(stamp) if not isinstance(stamp, bool) else 0.0
    except (TypeError, ValueError):
        stamp_value = 0.0
    current = time.time() if now is None else now
    if abs(current - stamp_value) > window:
        raise StaleTimestamp(f"The timestamp is more than {window} s from the server's clock.")
    return payload
