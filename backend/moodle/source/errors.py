"""What can go wrong reading Moodle, as errors the front ends turn into one sentence and an exit code.

The issue's contract: an unreachable database, wrong credentials, missing tables, a wrong prefix,
an unknown company or course are failures (exit 1); unusable options are unusable input (exit 2).
"""

from __future__ import annotations

from backend.core.errors import ManiError, UnusableInput


class MoodleSourceError(ManiError):
    """Reading the Moodle database failed. Exit code 1."""


class MoodleUnreachable(MoodleSourceError):
    """The database cannot be reached or refuses the login."""


class MoodleSchemaError(MoodleSourceError):
    """Tables or columns that mani reads are missing under the configured prefix."""


class MoodleNotFound(MoodleSourceError):
    """The company, course, activity or role named does not exist in Moodle."""


class MoodleOptionsInvalid(UnusableInput):
    """Selection options that cannot be used as given (a missing course, since after at). Exit 2."""
