"""What every HTTP handler shares: configuration, the client's address, bounded bodies,
JSON error answers, and audit entries for rejected calls."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse

from backend.core import audit
from backend.core.errors import Conflict, MalformedInput, ManiError, NotAuthorized, NotFound, Refused, UnusableInput
from backend.core.settings import Settings, get_settings
from backend.moodle.webhooks import DEFAULT_MAILGUN_MAX_AGE, DEFAULT_SNS_CERT_PATTERN
from models.db import session_scope

log = logging.getLogger("mani.api")
MIB = 1024 * 1024


def _from_settings(settings: Settings, name: str, default):
    """A `Settings` field if it exists, else `MANI_<NAME>` from the environment, else the default."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(f"MANI_{name.upper()}")
    if value in (None, ""):
        return default
    if isinstance(default, int) and not isinstance(value, int):
        return int(value)
    if isinstance(default, tuple) and isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value) if isinstance(default, tuple) else value


@dataclass(slots=True)
class ApiConfig:
    # Job JSON of 50,000 recipients is about 8 MiB; the limit leaves room for fat extra fields.
    max_job_body: int = 64 * MIB
    # Worker callbacks (up to 1000 updates each) are small; a smaller limit costs nothing.
    max_event_body: int = 8 * MIB
    # Provider webhooks carry one event (SNS caps a message at 256 KiB). They are read before
    # their signature can be checked, so this limit is what an anonymous caller can make mani hold.
    max_webhook_body: int = 512 * 1024
    # Reverse proxies whose X-Forwarded-For is believed (addresses or CIDR networks).
    trusted_proxies: tuple[str, ...] = ()
    sns_cert_url_pattern: str = DEFAULT_SNS_CERT_PATTERN
    # When set, SNS messages from other topics are refused.
    sns_topic_arns: tuple[str, ...] = ()
    mailgun_signing_key: str | None = None
    mailgun_max_age: int = DEFAULT_MAILGUN_MAX_AGE
    callback_window: int = 300
    _networks: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._networks = [ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies]

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "ApiConfig":
        settings = settings or get_settings()
        return cls(
            max_job_body=_from_settings(settings, "api_max_body_bytes", 64 * MIB),
            max_event_body=_from_settings(settings, "api_max_event_body_bytes", 8 * MIB),
            max_webhook_body=_from_settings(settings, "api_max_webhook_body_bytes", 512 * 1024),
            trusted_proxies=_from_settings(settings, "api_trusted_proxies", ()),
            sns_cert_url_pattern=_from_settings(settings, "sns_cert_url_pattern", DEFAULT_SNS_CERT_PATTERN),
            sns_topic_arns=_from_settings(settings, "sns_topic_arns", ()),
            mailgun_signing_key=_from_settings(settings, "mailgun_webhook_signing_key", None),
            mailgun_max_age=_from_settings(settings, "mailgun_webhook_max_age", DEFAULT_MAILGUN_MAX_AGE),
        )

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)


def client_address(request: Request, config: ApiConfig) -> str | None:
    """The caller's address: the peer, or, behind a trusted proxy, the nearest untrusted X-Forwarded-For hop."""
    peer = request.client.host if request.client else None
    if peer is None or not config.is_trusted(peer):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    # Walk from the right: every hop our proxies appended is trusted; the first that is not is the client.
    for hop in reversed(hops):
        if not config.is_trusted(hop):
            return hop[:64]
    return (hops[0] if hops else peer)[:64]


class ApiError(Exception):
    """An answer other than success: status, a short code, a sentence, and per-field errors."""

    def __init__(self, status: int, code: str, message: str, errors: Iterable[dict] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.errors = list(errors or [])

    def response(self) -> JSONResponse:
        body: dict = {"error": self.code, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return JSONResponse(body, status_code=self.status)


# The one place domain errors become HTTP statuses; the first class that matches wins.
HTTP_STATUS: tuple[tuple[type[ManiError], int], ...] = (
    (NotFound, 404),
    (MalformedInput, 400),
    (UnusableInput, 422),
    (NotAuthorized, 401),
    (Refused, 403),
    (Conflict, 409),
)


def http_error(error: ManiError) -> ApiError:
    """The answer to a domain error: its status, its code, its sentence, and its per-field errors."""
    status = next((status for kind, status in HTTP_STATUS if isinstance(error, kind)), 500)
    return ApiError(status, error.code, str(error), getattr(error, "errors", None))


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "too_large", f"The body is larger than the limit of {limit} bytes.")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, counted as it streams in: past `limit` bytes it stops reading (413).

    Call it only once the caller is authenticated (or, for signed bodies, once the signature
    header has the right shape): until then a request costs the server nothing but its headers.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise BodyTooLarge(limit)
        body += chunk
    return bytes(body)


_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


def signature_shape(value: str | None) -> ApiError | None:
    """The refusal for an `X-Signature` header that cannot be an HMAC-SHA256 in hex, or None."""
    if value is None:
        return ApiError(401, "bad_signature", "The X-Signature header is missing.")
    if not _HEX_SIGNATURE.fullmatch(value.strip()):
        return ApiError(401, "bad_signature", "The X-Signature header is not a hex HMAC-SHA256 (64 characters).")
    return None


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def audit_rejection(*, action: str, address: str | None, error: ApiError, actor: str = "api:anonymous",
                    target: str | None = None, details: dict | None = None) -> None:
    """Write a rejected call to the audit log in its own transaction (the request's was rolled back)."""
    try:
        with session_scope() as session:
            audit.record(session=session, actor=actor, source="api", action=action, target=target,
                         address=address, details={"status": error.status, "error": error.code,
                                                   "message": error.message[:500], **(details or {})})
    except Exception:  # noqa: BLE001 - an audit failure must not turn a 4xx into a 500
        log.exception("could not write the audit entry for a rejected %s", action)
