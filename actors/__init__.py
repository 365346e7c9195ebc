"""Thin Dramatiq actors over `backend/`. They take ids, never objects.

Importing the package declares every actor, so that any process that only enqueues (the CLI,
the console, the API) finds them by name on its broker (`actors.enqueue`).
"""

from actors import callbacks, jobs  # noqa: F401  (declares the actors)
