"""Errors of the certificate package, in the house's exit-code scheme."""

from __future__ import annotations

from backend.core.errors import ManiError, UnusableInput


class CertificateError(ManiError):
    """One certificate could not be made (a name no font can draw, say); the others go on."""


class TemplateError(UnusableInput):
    """A template file or its data cannot be used as given. Exit 2."""
