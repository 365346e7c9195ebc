"""Log set-up for mani's processes: one format, quiet migrations, secrets masked in every record."""

from __future__ import annotations

import logging
import sys

from backend.core.secrets import install_log_masking


def configure_logging(level: str, *, with_pid: bool = False) -> None:
    """Log to stderr at `level`; mask registered secrets and URL passwords in every record.

    `with_pid` adds the process id, for `mani worker --processes N`, whose children share stderr.
    """
    process = " %(process)d" if with_pid else ""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s{process} %(levelname)s %(name)s: %(message)s")
    # Migrations announce every step at INFO; a person running `mani` wants only problems.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    install_log_masking()
