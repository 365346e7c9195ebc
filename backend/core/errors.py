"""Errors the CLI, console and API turn into messages and exit codes (0 ok, 1 failed, 2 unusable input).

Each carries one sentence for a person and a short `code` for machines. The front ends map them:
the CLI to exit codes (`exit_code`), the HTTP API to status codes (`api.common.http_error`).
"""

from __future__ import annotations

from collections.abc import Iterable


class ManiError(Exception):
    """An expected failure with a message meant for a person. Exit code 1."""

    exit_code = 1
    code = "failed"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UnusableInput(ManiError):
    """The input cannot be used as given: a bad CSV, an unknown type, a missing field. Exit 2."""

    exit_code = 2
    code = "invalid"


class NotFound(UnusableInput):
    """The job, company or certificate named does not exist."""

    code = "not_found"


class MalformedInput(UnusableInput):
    """The input cannot even be read: a body that is not JSON, or not a JSON object."""

    code = "malformed_json"


class InvalidFields(UnusableInput):
    """Named fields are not valid, nothing was done; `errors` lists each as {"field", "message"}."""

    def __init__(self, message: str, errors: Iterable[dict] = (), *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.errors = list(errors)


class NotAuthorized(ManiError):
    """The caller could not be verified: a missing or wrong signature, token or secret."""

    code = "unauthorized"


class Refused(ManiError):
    """The caller is known, but this request is not one mani accepts from it (HTTP 403)."""

    code = "refused"


class Conflict(ManiError):
    """The request collides with what is stored: a body already accepted, an id already taken."""

    code = "conflict"


class InvalidTransition(ManiError):
    """The action does not apply in the current status (cancel a finished job, say)."""


class ReadOnly(ManiError):
    """A change was attempted in read-only mode."""


class SecretKeyMissing(ManiError):
    """A secret was to be stored or read, but no encryption key is configured."""
