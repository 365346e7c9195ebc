"""Errors the CLI, console and API turn into messages and exit codes (0 ok, 1 failed, 2 unusable input)."""

from __future__ import annotations


class ManiError(Exception):
    """An expected failure with a message meant for a person. Exit code 1."""

    exit_code = 1


class UnusableInput(ManiError):
    """The input cannot be used as given: a bad CSV, an unknown type, a missing field. Exit 2."""

    exit_code = 2


class NotFound(UnusableInput):
    """The job, company or certificate named does not exist."""


class InvalidTransition(ManiError):
    """The action does not apply in the current status (cancel a finished job, say)."""


class ReadOnly(ManiError):
    """A change was attempted in read-only mode."""


class SecretKeyMissing(ManiError):
    """A secret was to be stored or read, but no encryption key is configured."""
