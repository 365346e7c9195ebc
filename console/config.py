"""What one console session runs with: command-line options, the clock, the OS user."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from backend.core.oswho import os_user
from models import utcnow


@dataclass(slots=True)
class ConsoleConfig:
    read_only: bool = False
    # Seconds between dashboard refreshes; 0 turns the automatic refresh off (tests, screenshots).
    refresh: float = 2.0
    # A processing job with no progress for this long is flagged as stuck.
    stuck_after: float = 300.0
    # A job whose failed share of processed recipients is above this is flagged.
    failure_threshold: float = 0.10
    failure_min_sample: int = 20
    # Rows per recipients page in job detail (keyset paged, never the whole job).
    page_size: int = 100
    # Where "export the job's log" writes by default.
    export_dir: Path = field(default_factory=Path.cwd)
    # Directory the bulk tool's CSV path completion starts from.
    csv_dir: Path = field(default_factory=Path.cwd)
    actor: str = field(default_factory=os_user)
    clock: Callable[[], datetime] = utcnow
    # An explicit dramatiq broker (tests); None means the configured one.
    broker: object | None = None
