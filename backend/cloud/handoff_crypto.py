"""Temporary passwords for the cloud worker: sealed by mani, opened only by the worker.

Scheme `w1`: AES-256-GCM under a key derived (HKDF-SHA256) from the company's
`cloud_callback_secret`. That secret is the stack's `CallbackSecret` parameter, which the stack
keeps in Secrets Manager and the worker reads at cold start, so no new secret has to travel or
be configured, and the same scheme works for `sqs` and `api_gateway` (mani needs no AWS key
for it). The HKDF `info` label keeps this key apart from the HMAC use of the same secret.

The associated data is `job_id` and mani's recipient id: a sealed password copied onto another
recipient, or into another job, does not open. A token is
`w1:` + urlsafe base64(12-byte nonce || ciphertext || 16-byte tag).
"""

from __future__ import annotations

import base64
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backend.core.errors import ManiError

PREFIX = "w1:"
_INFO = b"mani cloud worker handoff v1"
_NONCE = 12


class HandoffCryptoError(ManiError):
    """A sealed password could not be opened: wrong secret, wrong recipient, or altered."""


@lru_cache(maxsize=32)
def _cipher(secret: str) -> AESGCM:
    if not secret:
        raise HandoffCryptoError("no cloud_callback_secret is set, so a password cannot be sealed for the worker.")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode("utf-8"))
    return AESGCM(key)


def _associated(job_id: str, recipient_id: int | str) -> bytes:
    return f"{job_id}\x1f{recipient_id}".encode("utf-8")


def encrypt_for_worker(password: str, *, secret: str, job_id: str, recipient_id: int | str) -> str:
    """Seal one recipient's temporary password for the worker (a `password_encrypted` value)."""
    nonce = os.urandom(_NONCE)
    sealed = _cipher(secret).encrypt(nonce, password.encode("utf-8"), _associated(job_id, recipient_id))
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def decrypt_for_worker(token: str, *, secret: str, job_id: str, recipient_id: int | str) -> str:
    """Open a `password_encrypted` value; HandoffCryptoError when it is not ours to open."""
    if not isinstance(token, str) or not token.startswith(PREFIX):
        raise HandoffCryptoError("password_encrypted is not a w1 token.")
    try:
        raw = base64.urlsafe_b64decode(token[len(PREFIX):].encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise HandoffCryptoError("password_encrypted is not valid base64.") from None
    if len(raw) < _NONCE + 16:
        raise HandoffCryptoError("password_encrypted is too short.")
    try:
        plain = _cipher(secret).decrypt(raw[:_NONCE], raw[_NONCE:], _associated(job_id, recipient_id))
    except InvalidTag:
        raise HandoffCryptoError(
            "password_encrypted does not open with this CallbackSecret for this job and recipient."
        ) from None
    return plain.decode("utf-8")
