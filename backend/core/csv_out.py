"""The one way mani writes CSV: every cell safe to open in a spreadsheet.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is run as a formula by
Excel, LibreOffice and Sheets (`=HYPERLINK(...)`, `+1+cmd|' /C calc'!A0`); OWASP's advice is
to put a single quote before it, which the spreadsheet shows as text. Every CSV mani writes (job
log, certificate manifest, rejections, suppressions) goes through `csv_writer`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: a leading = + - @ tab or CR gets a quote before it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class SafeCsvWriter:
    """`csv.writer` whose every cell goes through `spreadsheet_safe`."""

    def __init__(self, handle: TextIO) -> None:
        self._writer = csv.writer(handle)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([spreadsheet_safe(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> int:
        count = 0
        for row in rows:
            self.writerow(row)
            count += 1
        return count


def csv_writer(handle: TextIO) -> SafeCsvWriter:
    """The writer for any CSV mani writes (open `handle` with newline="")."""
    return SafeCsvWriter(handle)
