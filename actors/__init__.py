"""Thin Dramatiq actors over `backend/`. They take ids, never objects."""

import importlib.util

import actors.broker  # noqa: F401  (sets the placeholder broker before any actor is declared)


def _load_optional_actors() -> None:
    """Import the actor modules of optional parts (callbacks) when they are present."""
    for name in ("actors.callbacks",):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
