"""Secrets at rest (Fernet) and secrets in output (masking).

The key comes from `MANI_SECRET_KEY` or the key file (`MANI_SECRET_KEY_FILE`, default
`<data dir>/secret.key`, made by `mani keys generate`). Every host of one installation must
share the key, so only the embedded default (SQLite, one machine) makes its own key file on
first need; anywhere else a missing key is an error that says how to make one.

`MANI_SECRET_KEY` may hold several keys separated by commas: the first encrypts, all decrypt
(key rotation).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from backend.core.errors import ManiError, SecretKeyMissing
from backend.core.settings import get_settings

MASK = "••••••"
# Secrets shorter than this are never registered for log masking: replacing "ab" everywhere
# would mangle log lines and protect nothing.
_MIN_REGISTERED = 6
_MAX_REGISTERED = 5000

_lock = threading.Lock()
_fernets: dict[tuple[str, ...], MultiFernet] = {}


class SecretUndecryptable(ManiError):
    """A stored secret does not decrypt under the configured key(s)."""


def _how_to_make_a_key(path: Path) -> str:
    return (
        f"run `mani keys generate` (writes {path}) or set MANI_SECRET_KEY to a key from "
        "`mani keys generate --print`; every host of this installation needs the same key"
    )


def _settings(settings: Any | None) -> Any:
    return get_settings() if settings is None else settings


def _parse_keys(text: str, *, origin: str) -> tuple[str, ...]:
    keys = tuple(part.strip() for part in text.replace("\n", ",").split(",") if part.strip())
    for key in keys:
        try:
            Fernet(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ManiError(
                f"The secret key in {origin} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with `mani keys generate --print`."
            ) from None
    return keys


def generate_key() -> str:
    """A new random key, as text."""
    return Fernet.generate_key().decode("ascii")


def generate_key_file(path: Path | str, *, overwrite: bool = False) -> Path:
    """Write a new key to `path` (mode 0600). Refuses to replace a key: that would orphan every secret."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole beside the target, then linked into place: a process racing us to make the
    # embedded default's key never reads a half-written file, and exactly one key wins.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_key() + "\n")
        os.chmod(temporary, 0o600)  # O_CREAT's mode is filtered by the umask
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise ManiError(
                    f"{path} already holds a key; replacing it would make every stored secret unreadable "
                    "(pass --force only if you mean that)."
                ) from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


def secret_keys(*, settings: Any | None = None, create: bool = False) -> tuple[str, ...]:
    """The configured Fernet key(s), first one current; SecretKeyMissing when none is configured.

    With `create=True` the embedded default (no MANI_DATABASE_URL) writes its own key file on
    first need; any other installation must be configured, because all hosts share one key.
    """
    settings = _settings(settings)
    if settings.secret_key:
        keys = _parse_keys(settings.secret_key, origin="MANI_SECRET_KEY")
    else:
        path = Path(settings.effective_secret_key_file)
        if not path.is_file():
            if not (create and settings.is_embedded_database):
                raise SecretKeyMissing(f"No secret key is configured: {_how_to_make_a_key(path)}.")
            try:
                generate_key_file(path)
            except ManiError:
                pass  # another process made it first; read theirs
        keys = _parse_keys(path.read_text(encoding="ascii"), origin=str(path))
        if not keys:
            raise SecretKeyMissing(f"The key file {path} is empty: {_how_to_make_a_key(path)}.")
    for key in keys:
        register_secret(key)
    return keys


def get_fernet(*, settings: Any | None = None, create: bool = False) -> MultiFernet:
    """The configured key(s) as a MultiFernet (see `secret_keys`)."""
    keys = secret_keys(settings=settings, create=create)
    with _lock:
        fernet = _fernets.get(keys)
        if fernet is None:
            fernet = _fernets[keys] = MultiFernet([Fernet(key.encode("ascii")) for key in keys])
        return fernet


def encrypt(value: str, *, settings: Any | None = None) -> str:
    """A Fernet token for `value`; SecretKeyMissing (saying how to make a key) without a key."""
    return get_fernet(settings=settings, create=True).encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(token: str, *, settings: Any | None = None, register: bool = True) -> str:
    """The plain text of `token`. With `register`, log lines will show it masked from now on."""
    try:
        value = get_fernet(settings=settings).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise SecretUndecryptable(
            "A stored secret cannot be decrypted with the configured key; was MANI_SECRET_KEY or the key "
            "file changed? Restore the old key, or set the secret again."
        ) from None
    if register:
        register_secret(value)
    return value


# Masking ------------------------------------------------------------------------------------


def mask(value: Any) -> str | None:
    """"••••••1a2b": at most the last 4 characters, fewer (or none) for short values."""
    if value is None:
        return None
    text = str(value)
    if not text:
        return ""
    shown = 4 if len(text) >= 16 else 2 if len(text) >= 8 else 0
    return MASK + (text[-shown:] if shown else "")


def mask_url(url: str | None) -> str | None:
    """The URL with its password (and any query string) masked: smtp://user:••••••@host:587."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{hostport}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    except ValueError:
        return mask(url)


_registered: OrderedDict[str, None] = OrderedDict()
_pattern: re.Pattern[str] | None = None
# user:password@ in any URL-looking text.
_URL_PASSWORD = re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)(?P<post>@)")


def register_secret(value: str | None) -> None:
    """Mask `value` wherever it appears in log records from now on (see install_log_masking)."""
    global _pattern
    if not value or len(value) < _MIN_REGISTERED:
        return
    with _lock:
        if value in _registered:
            _registered.move_to_end(value)
            return
        _registered[value] = None
        while len(_registered) > _MAX_REGISTERED:
            _registered.popitem(last=False)
        _pattern = None


def _secret_pattern() -> re.Pattern[str] | None:
    global _pattern
    with _lock:
        if _pattern is None and _registered:
            # Longest first, so that a secret containing another is masked whole.
            alternatives = sorted(_registered, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(value) for value in alternatives))
        return _pattern


def mask_text(text: str) -> str:
    """`text` with every registered secret and every URL password masked."""
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK + m.group("post"), text)
    pattern = _secret_pattern()
    if pattern is not None:
        text = pattern.sub(lambda m: mask(m.group(0)) or MASK, text)
    return text


def _masked_arg(value: Any) -> Any:
    """An argument as it may be logged: a text with a secret in it masked, anything else as it is.

    Values keep their type when they hold no secret, so formatters that read `record.args`
    themselves (uvicorn's access formatter unpacks five of them, one an int) keep working.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    masked = mask_text(text)
    return value if masked == text else masked


def _mask_record(record: logging.LogRecord) -> logging.LogRecord:
    if getattr(record, "_mani_masked", False):
        return record
    if isinstance(record.msg, str):
        record.msg = mask_text(record.msg)
    elif record.msg is not None:
        record.msg = _masked_arg(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_masked_arg(arg) for arg in record.args)
    elif isinstance(record.args, dict):
        record.args = {key: _masked_arg(arg) for key, arg in record.args.items()}
    if record.exc_info and not record.exc_text:
        record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = mask_text(record.exc_text)
    record._mani_masked = True
    return record


class SecretMaskingFilter(logging.Filter):
    """Masks registered secrets and URL passwords in a record (for handlers set up later)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _mask_record(record)
        return True


_installed = False


def install_log_masking() -> None:
    """Mask secrets in every log record of this process, whichever logger or handler it meets.

    Records are masked as they are made (a record factory), so handlers added later, and
    libraries' loggers (botocore logs request headers at DEBUG), are covered too.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _mask_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    for handler in logging.getLogger().handlers:
        handler.addFilter(SecretMaskingFilter())
