"""`mani`: the command line. Thin over `backend/`; every read command has `--json`.

This module is the root Typer app. Each sub-app lives in a `cli_<name>.py` module beside it and
is registered below with one line; `cli_common` holds what they share (errors, exit codes,
JSON, tables). Exit codes: 0 ok, 1 failed, 2 unusable input.
"""

from __future__ import annotations

from backend.core.logs import configure_logging
from backend.core.settings import get_settings
from cli_callbacks import callbacks_app
from cli_certificates import certificates_app
from cli_common import ManiTyper
from cli_companies import companies_app, settings_app
from cli_jobs import jobs_app
from cli_moodle import moodle_app
from cli_schedules import schedules_app
from cli_service import db_app, keys_app, service_app
from cli_submit import submit_app
from cli_suppressions import suppressions_app

app = ManiTyper(name="mani", help="Bulk email and certificates for Moodle/IOMAD, tracked per recipient.",
                add_completion=False)

# Top-level commands (submit; worker, serve, rates), then one sub-app per line.
app.add_typer(submit_app)
app.add_typer(service_app)
app.add_typer(jobs_app, name="jobs")
app.add_typer(companies_app, name="companies")
app.add_typer(settings_app, name="settings")
app.add_typer(callbacks_app, name="callbacks")
app.add_typer(certificates_app, name="certificates")
app.add_typer(schedules_app, name="schedules")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(suppressions_app, name="suppressions")
app.add_typer(moodle_app, name="moodle")


def main() -> None:
    configure_logging(get_settings().log_level)
    app(prog_name="mani")


if __name__ == "__main__":
    main()
