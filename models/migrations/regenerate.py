"""Development helper: rebuild the initial migration from the current models.

mani has not shipped a schema yet, so one initial revision is kept and rebuilt whenever a
model changes: `python -m models.migrations.regenerate`. Once a release ships, new changes get
their own revisions with `alembic revision --autogenerate` instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from models.db import _alembic_config

VERSIONS = Path(__file__).parent / "versions"


def main() -> None:
    for old in VERSIONS.glob("*_initial_schema.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/empty.db")
        config = _alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.revision(config, message="initial schema", autogenerate=True, rev_id="0001")
    print("rebuilt", next(VERSIONS.glob("*_initial_schema.py")))


if __name__ == "__main__":
    main()
