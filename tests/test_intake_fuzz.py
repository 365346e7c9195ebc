"""Any bytes as a CSV file: accepted rows and named rejections, or one clear refusal
(UnusableInput), never another exception (which the CLI would show as a traceback)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backend.core.errors import UnusableInput
from backend.jobs.intake import RecipientRow, RejectedRow, open_csv

HEADERS = [b"email,firstname,lastname\n", b"email;firstname\n", b"\xef\xbb\xbfemail,username\r\n", b"", b"email\n"]
cells = st.one_of(st.binary(max_size=40), st.sampled_from([b"a@example.com", b"\"", b"\x00", b"\xff\xfe", b"\r",
                                                           b"=cmd|' /C calc'!A0", b"\xed\xa0\x80", b",", b";"]))
rows = st.lists(st.lists(cells, max_size=6).map(lambda parts: b",".join(parts)), max_size=8).map(b"\n".join)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(header=st.sampled_from(HEADERS) | st.binary(max_size=60), body=rows | st.binary(max_size=400))
@example(header=b"email\n", body=b"\x00" * 10)
@example(header=b"email,\"name\n", body=b"a@example.com,\"unclosed")
@example(header=b"\xff\xfe\x00e\x00m\x00a\x00i\x00l\x00\n", body=b"")
def test_any_bytes_are_rows_rejections_or_one_clear_refusal(header: bytes, body: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.csv"
        path.write_bytes(header + body)
        try:
            source = open_csv(path, max_field_length=200)
            results = list(source)
        except UnusableInput as refusal:
            assert str(refusal) and "Traceback" not in str(refusal)
            return
        assert all(isinstance(item, (RecipientRow, RejectedRow)) for item in results)
        assert source.accepted + source.rejected == len(results)
        for item in results:
            if isinstance(item, RejectedRow):
                assert item.reason
