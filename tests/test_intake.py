"""CSV intake: formats, rejection reasons with their line numbers, and unusable files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.core.errors import UnusableInput
from backend.jobs.intake import RecipientRow, RejectedRow, open_csv, validate_record
from backend.mail.addresses import normalize_email

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(tmp_path: Path, content: str | bytes, name: str = "input.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def read(path: Path, **options) -> tuple[list[RecipientRow], list[RejectedRow]]:
    rows = list(open_csv(path, **options))
    return [r for r in rows if isinstance(r, RecipientRow)], [r for r in rows if isinstance(r, RejectedRow)]


def test_plain_file_gives_rows_with_known_fields_and_variables(tmp_path):
    path = write(tmp_path, "email,userid,firstname,lastname,username,password,department\n"
                           "ana@example.com,17,Ana,García,agarcia,Tmp-1!,Sales\n")
    source = open_csv(path)
    assert source.columns == ["email", "userid", "firstname", "lastname", "username", "password", "department"]
    assert source.variable_names == ["department"]
    (row,) = list(source)
    assert row == RecipientRow(line=2, email="ana@example.com", email_norm="ana@example.com", userid="17",
                               firstname="Ana", lastname="García", username="agarcia", password="Tmp-1!",
                               variables={"department": "Sales"})
    assert (source.accepted, source.rejected) == (1, 0)


def test_headers_are_case_insensitive_and_trimmed(tmp_path):
    path = write(tmp_path, " EMail ,FirstName, Course_Name \nAna@Example.COM,Ana,Safety 101\n")
    source = open_csv(path)
    assert source.columns == ["email", "firstname", "course_name"]
    (row,) = list(source)
    assert row.email == "Ana@Example.COM"
    assert row.email_norm == "ana@example.com"
    assert row.firstname == "Ana"
    assert row.variables == {"course_name": "Safety 101"}


def test_bom_semicolons_and_crlf(tmp_path):
    path = write(tmp_path, "\ufeffemail;firstname;lastname\r\nana@example.com;Ana;García\r\nbo@example.org;Bo;Li\r\n")
    source = open_csv(path)
    assert source.delimiter == ";"
    assert source.columns == ["email", "firstname", "lastname"]
    rows, rejected = read(path)
    assert [(r.line, r.email, r.lastname) for r in rows] == [
        (2, "ana@example.com", "García"), (3, "bo@example.org", "Li")]
    assert rejected == []


def test_quoted_fields_with_delimiters_newlines_and_quotes_keep_physical_line_numbers(tmp_path):
    path = write(tmp_path, (
        'email,firstname,note\r\n'
        'a@example.com,Ann,"first line\r\nsecond line\r\nthird"\r\n'
        '"b@example.com","Bo, Jr.","He said ""hi"""\r\n'
        'c@example.com,Cy,"x\ny"\n'
        'not-an-address,Di,plain\n'
    ))
    rows, rejected = read(path)
    assert [(r.line, r.email) for r in rows] == [(2, "a@example.com"), (5, "b@example.com"), (6, "c@example.com")]
    assert rows[0].variables["note"] == "first line\r\nsecond line\r\nthird"
    assert rows[1].firstname == "Bo, Jr."
    assert rows[1].variables["note"] == 'He said "hi"'
    assert [r.line for r in rejected] == [8]


def test_a_header_spanning_two_lines_moves_the_first_row_down(tmp_path):
    source = open_csv(write(tmp_path, 'email,"Start\nDate"\na@example.com,1 May\n'))
    assert source.columns == ["email", "start\ndate"]
    assert [row.line for row in source] == [3]


def test_spaces_after_delimiters_are_ignored_even_before_quotes(tmp_path):
    path = write(tmp_path, 'email, firstname, note\n"a@example.com", "Ann", "x, y"\n')
    (row,) = open_csv(path)
    assert (row.email, row.firstname, row.variables) == ("a@example.com", "Ann", {"note": "x, y"})


def test_blank_lines_and_padding_rows_are_skipped_but_counted_in_line_numbers(tmp_path):
    path = write(tmp_path, "\n\nemail,firstname\n\na@example.com,Ann\n,\n , ,,,\nb@example.com,Bo\n,Cy\n\n")
    rows, rejected = read(path)
    assert [(r.line, r.email) for r in rows] == [(5, "a@example.com"), (8, "b@example.com")]
    assert [(r.line, r.reason) for r in rejected] == [(9, "missing email")]


def test_every_rejection_reason_names_line_and_cause(tmp_path):
    long_name = "x" * 1001
    path = write(tmp_path, (
        "email,firstname,lastname\n"
        "ana@example.com,Ana,García\n"            # 2 ok
        "bad-address,Bad,Row\n"                   # 3 invalid
        "ANA@example.com,Again,Dup\n"             # 4 duplicate of 2 (case-insensitive)
        ",No,Email\n"                             # 5 missing
        "   ,Blank,Email\n"                       # 6 missing (whitespace only)
        f"long@example.com,{long_name},L\n"       # 7 oversized field
        "two@@example.com,At,Signs\n"             # 8 invalid
        "extra@example.com,Ex,Tra,surplus\n"      # 9 more fields than header
        "short@example.com\n"                     # 10 fewer fields is fine
    ))
    source = open_csv(path)
    results = list(source)
    rejected = {r.line: r for r in results if isinstance(r, RejectedRow)}
    assert [r.line for r in results if isinstance(r, RecipientRow)] == [2, 10]
    assert (source.accepted, source.rejected) == (2, 7)

    assert rejected[3].email == "bad-address"
    assert rejected[3].reason == (
        "invalid email address: An email address must have an @-sign."
    )
    assert rejected[4].reason == "duplicate of line 2"
    assert rejected[4].email == "ANA@example.com"
    assert rejected[5].reason == "missing email" and rejected[5].email is None
    assert rejected[6].reason == "missing email"
    assert rejected[7].reason == "field 'firstname' is longer than 1000 characters"
    assert rejected[7].email == "long@example.com"
    assert rejected[8].reason.startswith("invalid email address: ")
    assert rejected[9].reason.startswith("row has 4 fields but the header has 3")
    assert rejected[9].email == "extra@example.com"


def test_malformed_quoting_rejects_the_row_and_the_rest_goes_ahead(tmp_path):
    path = write(tmp_path, 'email,firstname\na@example.com,"Ann"x\nb@example.com,Bo "BB" Li\n')
    rows, rejected = read(path)
    assert [(r.line, r.reason) for r in rejected] == [(2, "malformed CSV row: ',' expected after '\"'")]
    assert [(r.line, r.firstname) for r in rows] == [(3, 'Bo "BB" Li')]


def test_a_quote_never_closed_is_unusable_instead_of_swallowing_rows(tmp_path):
    path = write(tmp_path, 'email,firstname\na@example.com,Ann\nb@example.com,"Bo\nc@example.com,Cy\n')
    source = open_csv(path)
    with pytest.raises(UnusableInput) as caught:
        list(source)
    assert str(caught.value) == f"CSV file {path} has a quoted field opened on line 3 that is never closed."


def test_a_file_broken_after_opening_is_unusable(tmp_path):
    path = write(tmp_path, "email\na@example.com\n")
    source = open_csv(path)
    path.write_bytes(b"email\na@example.com\nb@example.com\xff\n")
    with pytest.raises(UnusableInput, match="changed while it was being read"):
        list(source)


def test_fewer_fields_leave_variables_empty_and_trailing_empty_fields_are_tolerated(tmp_path):
    path = write(tmp_path, "email,firstname,course_name\nshort@example.com\ntrail@example.com,Tia,Safety,,\n")
    rows, rejected = read(path)
    assert rejected == []
    assert rows[0].firstname is None and rows[0].variables == {"course_name": ""}
    assert rows[1].variables == {"course_name": "Safety"}


def test_max_field_length_is_configurable_and_a_later_duplicate_of_a_rejected_row_is_accepted(tmp_path):
    path = write(tmp_path, "email,note\na@example.com,abcdefghijklmnopq\na@example.com,abc\n")
    rows, rejected = read(path, max_field_length=15)
    assert [(r.line, r.reason) for r in rejected] == [(2, "field 'note' is longer than 15 characters")]
    assert [r.line for r in rows] == [3]


def test_duplicates_are_compared_on_the_normalized_address(tmp_path):
    path = write(tmp_path, "email\n  Ana@EXAMPLE.com \nana@example.com\nANA@Example.Com\n")
    rows, rejected = read(path)
    assert [(r.line, r.email, r.email_norm) for r in rows] == [(2, "Ana@EXAMPLE.com", "ana@example.com")]
    assert [(r.line, r.reason) for r in rejected] == [(3, "duplicate of line 2"), (4, "duplicate of line 2")]
    assert normalize_email(" Ana@EXAMPLE.com") == "ana@example.com"


def test_example_files_are_clean(tmp_path):
    for name, variables in [("users.csv", ["department"]),
                            ("licenses.csv", ["license_name", "course_name", "expiry_date"]),
                            ("reminders.csv", ["course_name", "due_date", "completion_percent", "course_url"])]:
        source = open_csv(EXAMPLES / name)
        assert source.variable_names == variables
        list(source)
        assert source.rejected == 0, name
        assert source.accepted >= 5, name


def test_a_source_is_iterated_once(tmp_path):
    source = open_csv(write(tmp_path, "email\na@example.com\n"))
    list(source)
    with pytest.raises(RuntimeError):
        list(source)


# Unusable files -------------------------------------------------------------------------------

def unusable(path: Path, **options) -> str:
    with pytest.raises(UnusableInput) as caught:
        open_csv(path, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.csv"
    assert unusable(path) == f"CSV file {path} does not exist."


def test_directory_is_unusable(tmp_path):
    assert "is a directory" in unusable(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, "email\na@example.com\n")
    path.chmod(0)
    assert unusable(path) == f"CSV file {path} cannot be read: permission denied."


def test_path_through_a_file_cannot_be_read(tmp_path):
    path = write(tmp_path, "email\n") / "inner.csv"
    assert unusable(path) == f"CSV file {path} cannot be read: Not a directory."


def test_empty_files(tmp_path):
    assert unusable(write(tmp_path, b"", "a.csv")).endswith("a.csv is empty.")
    assert unusable(write(tmp_path, b"\xef\xbb\xbf", "b.csv")).endswith("b.csv is empty.")
    assert unusable(write(tmp_path, "\r\n  \n", "c.csv")).endswith("c.csv is empty.")


def test_binary_file_with_nul_byte_reports_offset_and_line(tmp_path):
    message = unusable(write(tmp_path, b"email\na@example.com\nb@ex\x00ample.com\n"))
    assert "is not a text file: it has a NUL byte at byte offset 24 (line 3)" in message


def test_png_is_not_text(tmp_path):
    message = unusable(write(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(range(256))))
    assert "is not a text file: it has a NUL byte at byte offset 8" in message


def test_latin1_file_reports_offset_line_and_asks_for_utf8(tmp_path):
    content = "email,firstname\na@example.com,Ann\nb@example.com,Chlo\xe9\n".encode("latin-1")
    message = unusable(write(tmp_path, content))
    assert message.endswith("is not valid UTF-8 at byte offset 52 (line 3); save it as UTF-8 (in Excel: 'CSV UTF-8').")


def test_invalid_utf8_after_a_chunk_boundary_is_located_exactly(tmp_path):
    from backend.jobs import intake

    chunk = intake._SCAN_CHUNK
    # "é" cut in two by the scan's chunk edge is valid; the 0xff two bytes later is not.
    straddling = b"email\n" + b"a" * (chunk - 7) + "é".encode() + b"\n\xff\n"
    assert "é".encode()[0] == straddling[chunk - 1]
    message = unusable(write(tmp_path, straddling, "a.csv"))
    assert f"byte offset {chunk + 2} (line 3)" in message
    # A new chunk that starts with a valid character and then breaks.
    aligned = b"email\n" + b"a" * (chunk - 7) + b"\n" + "é".encode() + b"\xff\n"
    message = unusable(write(tmp_path, aligned, "b.csv"))
    assert f"byte offset {chunk + 2} (line 3)" in message


def test_truncated_utf8_at_end_of_file(tmp_path):
    assert "ends inside a character" in unusable(write(tmp_path, "email\nzo\u00eb".encode()[:-1]))


def test_utf16_file_is_named_as_such(tmp_path):
    message = unusable(write(tmp_path, "email\na@example.com\n".encode("utf-16")))
    assert "is UTF-16 encoded; save it as UTF-8" in message


def test_no_email_column_lists_the_columns_found(tmp_path):
    message = unusable(write(tmp_path, "E-mail,First Name\na@example.com,Ann\n"))
    assert "has no 'email' column (columns found: 'e-mail', 'first name';" in message


def test_header_that_cannot_be_parsed(tmp_path):
    message = unusable(write(tmp_path, 'email,"first"name\na@example.com,Ann\n'))
    assert "has a header line that cannot be parsed: ',' expected after '\"'." in message
    message = unusable(write(tmp_path, 'email,"firstname\na@example.com,Ann\n', "b.csv"))
    assert "has a header line that cannot be parsed: unexpected end of data." in message


def test_duplicate_column_is_unusable(tmp_path):
    message = unusable(write(tmp_path, "email,Firstname,FIRSTNAME\na@example.com,A,B\n"))
    assert "names the column 'firstname' twice (columns 2 and 3)" in message


def test_file_over_the_size_limit(tmp_path):
    message = unusable(write(tmp_path, "email\n" + "a@example.com\n" * 10), max_bytes=100)
    assert "is larger than the limit of 100 bytes" in message


def test_header_only_file_opens_with_no_accepted_rows(tmp_path):
    source = open_csv(write(tmp_path, "email,firstname\n"))
    assert list(source) == []
    assert source.accepted == 0


# Job JSON records ----------------------------------------------------------------------------

def test_validate_record_for_json_recipients():
    seen: dict[str, int] = {}
    row = validate_record({"userid": 1001, "Email": "user1@example.com", "firstname": "John", "score": 9.5},
                          line=0, max_field_length=1000, seen=seen)
    assert isinstance(row, RecipientRow)
    assert (row.userid, row.email_norm, row.variables) == ("1001", "user1@example.com", {"score": "9.5"})
    assert seen == {"user1@example.com": 0}

    again = validate_record({"email": "USER1@example.com"}, line=1, max_field_length=1000, seen=seen)
    assert again == RejectedRow(1, "USER1@example.com", "duplicate of line 0")
    nested = validate_record({"EMAIL": "x@example.com", "extra": {"a": 1}}, line=2, max_field_length=1000, seen=seen)
    assert nested == RejectedRow(2, "x@example.com", "field 'extra' must be text or a number, not dict")
    missing = validate_record({"userid": 5}, line=3, max_field_length=1000, seen=seen)
    assert missing == RejectedRow(3, None, "missing email")


ADDRESSES = [
    "plain@example.com", "First.Last@Example.COM", "a+tag@sub.example.org", "x@example", "x@localhost",
    "x@example.test", "x@-bad.example.com", "x@exa_mple.com", "a..b@example.com", ".a@example.com",
    "a.@example.com", '"quoted"@example.com', "üñî@example.com", "user@bücher.example", "user@[127.0.0.1]",
    "a" * 64 + "@example.com", "a" * 65 + "@example.com", "u@" + "d" * 63 + ".com", "u@" + ("a" * 60 + ".") * 4 + "com",
    "no-at-sign.example.com", "two@@example.com", "sp ace@example.com", "user@example.com.", "user@.example.com",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_fast_path_decides_exactly_as_email_validator(address):
    from email_validator import EmailNotValidError, validate_email

    from backend.mail.addresses import checked_address

    try:
        expected = validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        expected = None
    try:
        actual = checked_address(address)
    except EmailNotValidError:
        actual = None
    assert actual == expected
