"""The SSRF guard: mani posts only to public addresses, unless an admin allows a host.

Every URL mani sends to on someone's say-so (a job's `callback_url`, a company's `cloud_endpoint`,
provider API URLs) is resolved and checked right before the request: an address that is not
globally routable (loopback, private ranges, link-local 169.254/16 and fe80::/10, carrier-grade
NAT, the cloud metadata addresses, multicast, reserved) is refused. `MANI_ALLOWED_CALLBACK_HOSTS`
(names, addresses or networks, comma-separated) lets tests and intranet Moodle sites through.

The request itself then resolves the name again; a DNS answer that changes between the two
(rebinding) is the remaining gap, narrowed by checking at send time and by short timeouts.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from backend.core.errors import UnusableInput
from backend.core.secrets import mask_text
from backend.core.settings import get_settings

# Named even though `is_global` already refuses them: these are what an attacker aims at.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
EXCERPT_LIMIT = 300
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]+")


class UnsafeUrl(UnusableInput):
    """A URL that mani will not send to (not http(s), unresolvable, or not a public address)."""

    code = "unsafe_url"


def allowed_hosts() -> tuple[str, ...]:
    return tuple(h.strip().lower() for h in get_settings().allowed_callback_hosts if h.strip())


def _allowed(host: str, port: int, addresses: Iterable, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        if entry in (host, f"{host}:{port}"):
            return True
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if any(address in network for address in addresses):
            return True
    return False


def refused_address(address) -> str | None:
    """Why mani does not send to `address`, or None for a public one."""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if not address.is_global or address.is_multicast:
        return "not a public address"
    return None


def check_url(url: str, *, what: str = "URL", allowed: tuple[str, ...] | None = None,
              resolve: bool = True) -> None:
    """Raise UnsafeUrl unless `url` is http(s) and every address its host resolves to is public
    (or the host, or its network, is in MANI_ALLOWED_CALLBACK_HOSTS). With `resolve=False` a name
    that does not resolve passes (at submit time; the send checks again)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl(f"The {what} is not a valid URL.") from None
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme not in ("http", "https") or not host:
        raise UnsafeUrl(f"The {what} must be an http:// or https:// URL.")
    allowed = allowed_hosts() if allowed is None else allowed
    if host in allowed or f"{host}:{port}" in allowed:
        return
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError):
            if not resolve:
                return
            raise UnsafeUrl(f"The {what}'s host {host} does not resolve.") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if _allowed(host, port, addresses, allowed):
        return
    for address in addresses:
        reason = refused_address(address)
        if reason:
            raise UnsafeUrl(f"The {what}'s host {host} is {reason} ({address}); mani does not send there "
                            f"unless MANI_ALLOWED_CALLBACK_HOSTS names it.")


def reply_excerpt(text: str | bytes, limit: int = EXCERPT_LIMIT) -> str:
    """What is kept of a reply: at most `limit` characters, control characters squeezed, secrets masked."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "replace")
    return mask_text(_CONTROL.sub(" ", text[: limit * 2])).strip()[:limit]
