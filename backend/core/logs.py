"""Log set-up for mani's processes: one format, quiet libraries, secrets masked in every record."""

from __future__ import annotations

import logging
import sys

from backend.core.secrets import install_log_masking


QUIET_LIBRARIES = ("alembic", "urllib3", "botocore", "boto3", "s3transfer", "httpx", "httpcore")


def configure_logging(level: str, *, with_pid: bool = False) -> None:
    """Log to stderr at `level`; mask registered secrets and URL passwords in every record.

    `with_pid` adds the process id, for `mani worker --processes N`, whose children share stderr.
    """
    process = " %(process)d" if with_pid else ""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s{process} %(levelname)s %(name)s: %(message)s")
    # Libraries speak only of problems (migrations announce every step at INFO), unless asked.
    debug = level.upper() == "DEBUG"
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    # The Mailgun client logs CRITICAL for every network failure and then raises it; mani reports
    # the raised error itself (one line per failed check in `companies test`), so this is a repeat.
    logging.getLogger("mailgun").setLevel(logging.DEBUG if debug else logging.CRITICAL + 1)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, KnownNoise) for f in handler.filters):
            handler.addFilter(KnownNoise())
    install_log_masking()


class KnownNoise(logging.Filter):
    """Drops warnings about what mani does on purpose. `actors.runner` runs one Dramatiq worker per
    lane (sends, callbacks) on one broker; each adds its own worker middleware, and Dramatiq
    warns about the second ("adding a middleware of the same type twice"): at every start of
    `mani worker` and of `mani submit --wait`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("dramatiq.broker") and "_WorkerMiddleware" in record.getMessage())
