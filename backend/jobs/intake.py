"""Recipient intake: a streaming CSV reader and the row validation shared with Job JSON.

`open_csv` checks the whole file up front (size, NUL bytes, UTF-8) so that an unusable file
fails before a single row is handed out; the rows themselves are then streamed, keeping only
the duplicate index (normalized address -> first line) in memory.
"""

from __future__ import annotations

import codecs
import csv
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError

from backend.core.errors import UnusableInput
from backend.mail.addresses import checked_address

KNOWN_FIELDS = ("email", "userid", "firstname", "lastname", "username", "password")
_OPTIONAL_FIELDS = KNOWN_FIELDS[1:]
_DELIMITERS = (",", ";", "\t")
_SCAN_CHUNK = 1024 * 1024
# Rejection rows keep the address for the report; the store's column holds at most 1024.
_MAX_REPORTED_EMAIL = 320

# Fields a CSV may hold: larger than any sane row, small enough to bound memory per field.
csv.field_size_limit(16 * 1024 * 1024)


@dataclass(slots=True)
class RecipientRow:
    line: int
    email: str
    email_norm: str
    userid: str | None = None
    firstname: str | None = None
    lastname: str | None = None
    username: str | None = None
    password: str | None = None
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RejectedRow:
    line: int
    email: str | None
    reason: str


def validate_record(
    record: Mapping[str, Any], *, line: int, max_field_length: int, seen: dict[str, int]
) -> RecipientRow | RejectedRow:
    """Check one recipient given as a mapping (Job JSON); header names are matched case-insensitively.

    `seen` maps normalized addresses to the line that first used them; an accepted row adds itself.
    """
    values: dict[str, str | None] = {}
    for key, value in record.items():
        name = str(key).strip().lower()
        if value is None or isinstance(value, str):
            values[name] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values[name] = str(value)
        else:
            email = next((v for k, v in record.items() if str(k).strip().lower() == "email"), None)
            email = email if isinstance(email, str) else None
            kind = type(value).__name__
            return RejectedRow(line, _reported(email), f"field '{name}' must be text or a number, not {kind}")
    return _validate(values, line=line, max_field_length=max_field_length, seen=seen)


def _reported(email: str | None) -> str | None:
    if email is None:
        return None
    email = email.strip()
    return email[:_MAX_REPORTED_EMAIL] if email else None


def _validate(
    values: Mapping[str, str | None], *, line: int, max_field_length: int, seen: dict[str, int]
) -> RecipientRow | RejectedRow:
    """Validate a record whose keys are already normalized header names."""
    email = (values.get("email") or "").strip()
    if not email:
        return RejectedRow(line, None, "missing email")
    for name, value in values.items():
        if value is not None and len(value) > max_field_length:
            label = f"field '{name}'" if name else "an unnamed field"
            return RejectedRow(line, _reported(email), f"{label} is longer than {max_field_length} characters")
    try:
        email_norm = checked_address(email)
    except EmailNotValidError as error:
        return RejectedRow(line, _reported(email), f"invalid email address: {error}")
    first_line = seen.get(email_norm)
    if first_line is not None:
        return RejectedRow(line, email, f"duplicate of line {first_line}")
    seen[email_norm] = line

    row = RecipientRow(line=line, email=email, email_norm=email_norm)
    variables: dict[str, str] = {}
    for name, value in values.items():
        if name == "email" or not name:
            continue
        text = value.strip() if value is not None else ""
        if name in _OPTIONAL_FIELDS:
            setattr(row, name, text or None)
        else:
            variables[name] = text
    row.variables = variables
    return row


class CsvSource:
    """The rows of one checked CSV file; iterate once, then read `accepted` and `rejected`."""

    def __init__(
        self, *, path: Path, delimiter: str, header_line: int, columns: list[str], max_field_length: int
    ) -> None:
        self.path = path
        self.delimiter = delimiter
        self.header_line = header_line
        self.columns = columns
        self.variable_names = [name for name in columns if name and name not in KNOWN_FIELDS]
        self.max_field_length = max_field_length
        self.accepted = 0
        self.rejected = 0
        self._consumed = False

    def __iter__(self) -> Iterator[RecipientRow | RejectedRow]:
        if self._consumed:
            raise RuntimeError(f"the rows of {self.path} were already read; call open_csv again")
        self._consumed = True
        return self._rows()

    def _rows(self) -> Iterator[RecipientRow | RejectedRow]:
        with _open_text(self.path) as handle:
            try:
                for _ in range(self.header_line):
                    handle.readline()
                yield from self._records(_reader(handle, self.delimiter))
            except UnicodeDecodeError:
                # open_csv checked the bytes, so the file was changed since.
                raise UnusableInput(
                    f"CSV file {self.path} changed while it was being read and is no longer valid UTF-8."
                ) from None

    def _records(self, reader) -> Iterator[RecipientRow | RejectedRow]:
        columns = self.columns
        width = len(columns)
        limit = self.max_field_length
        first_line = self.header_line + 1
        seen: dict[str, int] = {}
        # csv counts the lines it has read; a record starts on the line after the previous one.
        last_end = 0
        while True:
            line = first_line + last_end
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                last_end = reader.line_num
                if "end of data" in str(error):
                    raise UnusableInput(
                        f"CSV file {self.path} has a quoted field opened on line {line} that is never closed."
                    ) from None
                self.rejected += 1
                yield RejectedRow(line, None, f"malformed CSV row: {error}")
                continue
            last_end = reader.line_num
            if not any(value.strip() for value in fields):
                continue  # blank lines and rows of bare delimiters are spreadsheet padding
            if len(fields) > width:
                if any(value.strip() for value in fields[width:]):
                    self.rejected += 1
                    email = _reported(_email_of(columns, fields))
                    yield RejectedRow(line, email, _too_many(len(fields), width, self.delimiter))
                    continue
                fields = fields[:width]
            elif len(fields) < width:
                fields = fields + [""] * (width - len(fields))
            result = _validate(dict(zip(columns, fields)), line=line, max_field_length=limit, seen=seen)
            if type(result) is RecipientRow:
                self.accepted += 1
            else:
                self.rejected += 1
            yield result


def _email_of(columns: list[str], fields: list[str]) -> str | None:
    index = columns.index("email")
    return fields[index] if index < len(fields) else None


def _too_many(count: int, width: int, delimiter: str) -> str:
    shown = "tab" if delimiter == "\t" else f"'{delimiter}'"
    return f"row has {count} fields but the header has {width} (a value containing {shown} must be quoted)"


def _reader(lines, delimiter: str):
    # strict: a malformed quote is reported instead of silently merging rows;
    # skipinitialspace: `a@example.com, "Ann"` as people type it.
    return csv.reader(lines, delimiter=delimiter, strict=True, skipinitialspace=True)


def _open_text(path: Path):
    # utf-8-sig drops a BOM; newline="" lets csv see quoted CR/LF as they are.
    return open(path, encoding="utf-8-sig", newline="")


def open_csv(path: str | Path, *, max_field_length: int = 1000, max_bytes: int = 200 * 1024 * 1024) -> CsvSource:
    """Check a CSV file and read its header; raises `UnusableInput` for a file that cannot be used."""
    path = Path(path)
    _check_bytes(path, max_bytes=max_bytes)
    with _open_text(path) as handle:
        header_line = 0
        first = ""
        for first in handle:
            header_line += 1
            if first.strip():
                break
        else:
            raise UnusableInput(f"CSV file {path} is empty.")
        delimiter = max(_DELIMITERS, key=first.count)
        if not first.count(delimiter):
            delimiter = ","
        reader = _reader(itertools.chain([first], handle), delimiter)
        try:
            header = next(reader)
        except csv.Error as error:
            raise UnusableInput(f"CSV file {path} has a header line that cannot be parsed: {error}.") from None
        # A header spanning several physical lines (a quoted newline) moves the data start down.
        header_line += reader.line_num - 1
    columns = [name.strip().lower() for name in header]
    _check_header(path, columns)
    return CsvSource(
        path=path, delimiter=delimiter, header_line=header_line, columns=columns,
        max_field_length=max_field_length,
    )


def _check_header(path: Path, columns: list[str]) -> None:
    named = [name for name in columns if name]
    if "email" not in named:
        found = ", ".join(f"'{name}'" for name in named) or "none"
        raise UnusableInput(
            f"CSV file {path} has no 'email' column (columns found: {found}; delimiters tried: comma, semicolon, tab)."
        )
    positions: dict[str, int] = {}
    for number, name in enumerate(columns, start=1):
        if not name:
            continue
        if name in positions:
            raise UnusableInput(
                f"CSV file {path} names the column '{name}' twice (columns {positions[name]} and {number})."
            )
        positions[name] = number


def _check_bytes(path: Path, *, max_bytes: int) -> None:
    """Read the raw bytes once: size, NUL bytes and UTF-8 validity, before any row is used."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise UnusableInput(f"CSV file {path} does not exist.") from None
    except IsADirectoryError:
        raise UnusableInput(f"CSV path {path} is a directory, not a file.") from None
    except PermissionError:
        raise UnusableInput(f"CSV file {path} cannot be read: permission denied.") from None
    except OSError as error:
        raise UnusableInput(f"CSV file {path} cannot be read: {error.strerror or error}.") from None
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    newlines = 0
    with handle:
        try:
            while chunk := handle.read(_SCAN_CHUNK):
                if offset == 0 and chunk[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                    raise UnusableInput(f"CSV file {path} is UTF-16 encoded; save it as UTF-8 (in Excel: 'CSV UTF-8').")
                if offset + len(chunk) > max_bytes:
                    raise UnusableInput(
                        f"CSV file {path} is larger than the limit of {max_bytes:,} bytes; split it into several jobs."
                    )
                nul = chunk.find(b"\x00")
                if nul >= 0:
                    line = newlines + chunk.count(b"\n", 0, nul) + 1
                    raise UnusableInput(
                        f"CSV file {path} is not a text file: it has a NUL byte at byte offset {offset + nul} "
                        f"(line {line})."
                    )
                pending = len(decoder.getstate()[0])
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as error:
                    position = offset - pending + error.start
                    within = max(error.start - pending, 0)
                    line = newlines + chunk.count(b"\n", 0, within) + 1
                    raise UnusableInput(
                        f"CSV file {path} is not valid UTF-8 at byte offset {position} (line {line}); "
                        "save it as UTF-8 (in Excel: 'CSV UTF-8')."
                    ) from None
                newlines += chunk.count(b"\n")
                offset += len(chunk)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise UnusableInput(
                    f"CSV file {path} is not valid UTF-8: it ends inside a character (byte offset {offset}, "
                    f"line {newlines + 1}); save it as UTF-8."
                ) from None
        except OSError as error:
            raise UnusableInput(f"CSV file {path} cannot be read: {error.strerror or error}.") from None
    if offset == 0:
        raise UnusableInput(f"CSV file {path} is empty.")
