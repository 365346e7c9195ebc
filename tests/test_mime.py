"""backend.mail.mime: the composed bytes parse back, with the standard library, to exactly what went in."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime, timedelta, timezone

import pytest

from backend.mail.mime import MessageError, compose, encode_qp, message_id_for
from backend.mail.providers.base import Attachment, OutgoingMessage

SENDER = "Moodle Admin <noreply@school.example>"
DATE = datetime(2024, 5, 17, 9, 30, 5, tzinfo=timezone.utc)


def make(**overrides) -> OutgoingMessage:
    fields = dict(
        recipient_id=7,
        to_address="jane@example.com",
        to_name="Jane Doe",
        subject="Welcome to Moodle",
        text="Hello Jane,\nYour account is ready.\n",
        html="<p>Hello Jane,</p>\n<p>Your account is ready.</p>\n",
        message_id="mani.0b0c7b43-5b0e-4b0f-9f8e-2d9c6b7a1e11.7@school.example",
    )
    fields.update(overrides)
    return OutgoingMessage(**fields)


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def canonical(text: str) -> str:
    """What a text part decodes to: the same characters, line breaks as CRLF."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def text_parts(parsed) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in parsed.walk() if part.get_content_maintype() == "text"}


def assert_wire_format(data: bytes) -> None:
    assert data.isascii()
    assert re.search(rb"(?<!\r)\n", data) is None, "bare LF"
    assert re.search(rb"\r(?!\n)", data) is None, "bare CR"
    head, _, body = data.partition(b"\r\n\r\n")
    for line in body.split(b"\r\n"):
        assert len(line) <= 76, line
        assert not line.startswith(b"From "), line
    for line in head.split(b"\r\n"):
        assert len(line) <= 998


TRICKY_TEXTS = [
    "plain ascii",
    "",
    "no newline at the end",
    "Grüße aus Köln, naïve café, 日本語のテキスト, Ελληνικά, עברית\n",
    "emoji 🎉🚀 and a family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵 and skin tones 👋🏽\n",
    "From the start\nFrom here too\n>From quoted\nFrom\n",
    ".\n..\n. a dot line\n.leading dot\n",
    "trailing spaces   \ntrailing tab\t\nboth \t \nend with space ",
    "windows\r\nline\r\nendings\r\n",
    "old mac\rline endings\r",
    "mixed\r\nendings\nhere\rand\n\n\nblank lines\n",
    "x" * 500 + "\n" + "y " * 300 + "\n",
    "é" * 300,
    "=" * 100 + " equals =3D =20 =\n",
    "a" * 75 + "\n" + "b" * 76 + "\n" + "c" * 77 + "\n" + "d" * 74 + " \n" + "e" * 75 + "é\n",
    "From " + "f" * 72 + "\n" + "From " + "é" * 40 + "\n",
    "--=_mani_ boundary look-alike\n--=_mani_0123456789abcdef01a--\n",
    "control \x00\x01\x07\x1b chars and \x7f\n",
    "\ufeffBOM and \u2028 line separator and \u00a0 nbsp\n",
]


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_both_parts_decode_to_the_exact_text(text):
    html = "<p>" + text + "</p>"
    data = compose(make(text=text, html=html), sender=SENDER, date=DATE)
    assert_wire_format(data)
    parsed = parse(data)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = text_parts(parsed)
    assert parts == {"text/plain": canonical(text), "text/html": canonical(html)}
    for part in parsed.walk():
        if not part.is_multipart():
            assert part.get_content_charset() == "utf-8"
            assert part["Content-Transfer-Encoding"] == "quoted-printable"


def test_headers_are_all_there():
    data = compose(make(headers={"X-Mani-Job": "42", "List-Unsubscribe": "<mailto:u@school.example>"}), sender=SENDER, date=DATE)
    parsed = parse(data)
    assert parsed["From"].addresses[0].display_name == "Moodle Admin"
    assert parsed["From"].addresses[0].addr_spec == "noreply@school.example"
    assert parsed["To"].addresses[0].display_name == "Jane Doe"
    assert parsed["To"].addresses[0].addr_spec == "jane@example.com"
    assert parsed["Subject"] == "Welcome to Moodle"
    assert parsed["Date"].datetime == DATE
    assert parsed["Message-ID"] == "<mani.0b0c7b43-5b0e-4b0f-9f8e-2d9c6b7a1e11.7@school.example>"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["X-Mani-Job"] == "42"
    assert parsed["List-Unsubscribe"] == "<mailto:u@school.example>"
    assert not parsed.defects


def test_text_only_message_is_a_single_part():
    parsed = parse(compose(make(html=None, text="only text\nhere"), sender=SENDER, date=DATE))
    assert not parsed.is_multipart()
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content() == "only text\r\nhere"


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "Short",
        "A long ASCII subject that certainly needs folding because it goes on and on past the limit of the line",
        "Spaces  kept   exactly    as     given and trailing  ",
        "   leading spaces",
        "Bienvenue à Moodle, José — votre compte est prêt",
        "🎉 " * 40,
        "日本語の件名はとても長いのでエンコードされた単語を複数に分けて折り返す必要があります日本語の件名はとても長い",
        "Looks encoded =?utf-8?q?nope?= but is not",
        "Tab\tinside",
        "x" * 950,
    ],
)
def test_subject_round_trips(subject):
    data = compose(make(subject=subject), sender=SENDER, date=DATE)
    assert_wire_format(data)
    head = data.partition(b"\r\n\r\n")[0]
    if " " in subject.strip() and len(subject) < 900:
        assert all(len(line) <= 78 for line in head.split(b"\r\n")), head
    assert parse(data)["Subject"] == subject


def test_header_injection_is_neutralised():
    data = compose(make(subject="Hi\r\nBcc: victim@example.com", to_name="Eve\nBcc: x@y.z"), sender=SENDER, date=DATE)
    parsed = parse(data)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Hi Bcc: victim@example.com"
    assert parsed["To"].addresses[0].addr_spec == "jane@example.com"


@pytest.mark.parametrize(
    "name",
    [
        "Jane Doe",
        "O'Brien Jr",
        "Doe, Jane",
        'Jane "JD" Doe',
        "Back\\slash",
        "John Q. Public",
        "José Müller",
        "Zoë 🎓 Student",
        "王小明",
        "Ünïcödé " * 12,
        "=?utf-8?q?fake?=",
        "x" * 120,
    ],
)
def test_display_names_round_trip(name):
    data = compose(make(to_name=name), sender=SENDER, date=DATE)
    assert_wire_format(data)
    address = parse(data)["To"].addresses[0]
    assert address.display_name == name.strip()
    assert address.addr_spec == "jane@example.com"


def test_no_display_name_gives_the_bare_address():
    data = compose(make(to_name=None), sender="noreply@school.example", date=DATE)
    assert b"\r\nTo: jane@example.com\r\n" in data
    assert data.startswith(b"From: noreply@school.example\r\n")


def test_non_ascii_sender_name_and_idn_domain():
    data = compose(make(to_address="anna@bücher.example"), sender="École Numérique <noreply@école.example>", date=DATE)
    parsed = parse(data)
    assert parsed["From"].addresses[0].display_name == "École Numérique"
    assert parsed["From"].addresses[0].domain == "xn--cole-9oa.example"
    assert parsed["To"].addresses[0].addr_spec == "anna@xn--bcher-kva.example"


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a b@example.com", "x@", "@example.com", "a@b.c\r\nBcc: x@y.z", "<a@b.c>"])
def test_unusable_addresses_are_refused(bad):
    with pytest.raises(MessageError):
        compose(make(to_address=bad), sender=SENDER)


def test_attachments_wrap_the_alternative_in_mixed():
    pdf = bytes(range(256)) * 40
    attachments = [Attachment("certificate.pdf", pdf), Attachment("Zertifikat für Jürgen \"JJ\".pdf", b"%PDF-1.4 x", "application/pdf")]
    data = compose(make(attachments=attachments), sender=SENDER, date=DATE)
    assert_wire_format(data)
    parsed = parse(data)
    assert parsed.get_content_type() == "multipart/mixed"
    kinds = [part.get_content_type() for part in parsed.walk()]
    assert kinds == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf", "application/pdf"]
    found = [(part.get_filename(), part.get_content()) for part in parsed.iter_attachments()]
    assert found == [("certificate.pdf", pdf), ('Zertifikat für Jürgen "JJ".pdf', b"%PDF-1.4 x")]
    assert text_parts(parsed)["text/plain"] == canonical(make().text)


def test_text_only_with_attachment():
    data = compose(make(html=None, attachments=[Attachment("a.txt", b"data", "text/plain")]), sender=SENDER, date=DATE)
    parsed = parse(data)
    assert [part.get_content_type() for part in parsed.walk()] == ["multipart/mixed", "text/plain", "text/plain"]
    assert [a.get_content() for a in parsed.iter_attachments()] == ["data"]


def test_reserved_and_malformed_extra_headers_are_refused():
    with pytest.raises(MessageError):
        compose(make(headers={"Subject": "other"}), sender=SENDER)
    with pytest.raises(MessageError):
        compose(make(headers={"Bad Name": "x"}), sender=SENDER)


def test_non_ascii_extra_header_is_encoded():
    parsed = parse(compose(make(headers={"X-Course": "Mathématiques avancées"}), sender=SENDER, date=DATE))
    assert parsed["X-Course"] == "Mathématiques avancées"


def test_output_is_deterministic_for_the_same_input_and_date():
    assert compose(make(), sender=SENDER, date=DATE) == compose(make(), sender=SENDER, date=DATE)


def test_date_defaults_to_now_and_naive_dates_are_utc():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    parsed = parse(compose(make(), sender=SENDER))
    assert before - timedelta(seconds=1) <= parsed["Date"].datetime <= datetime.now(timezone.utc) + timedelta(seconds=1)
    naive = parse(compose(make(), sender=SENDER, date=datetime(2024, 1, 2, 3, 4, 5)))
    assert naive["Date"].datetime == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_message_id_for_is_deterministic_and_bare():
    value = message_id_for(job_uuid="0b0c7b43-5b0e-4b0f-9f8e-2d9c6b7a1e11", recipient_id=12, domain="school.example")
    assert value == "mani.0b0c7b43-5b0e-4b0f-9f8e-2d9c6b7a1e11.12@school.example"
    parsed = parse(compose(make(message_id=value), sender=SENDER, date=DATE))
    assert parsed["Message-ID"] == f"<{value}>"
    with pytest.raises(MessageError):
        compose(make(message_id="<has brackets>"), sender=SENDER)


def test_encode_qp_keeps_lines_within_76_and_crlf():
    encoded = encode_qp("From " + "é" * 100 + "\nline\n")
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert b"\r\nline\r\n" in encoded
    assert not encoded.startswith(b"From ")


def test_random_texts_round_trip():
    import random

    rng = random.Random(20240517)
    alphabet = list("abc xyz.=\t-_F") + ["From ", ".", " ", "\n", "\r\n", "\r", "é", "ß", "€", "日", "🎉", "👨‍👩‍👧", "\x00"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        data = compose(make(text=text, html=text[::-1]), sender=SENDER, date=DATE)
        assert_wire_format(data)
        assert text_parts(parse(data)) == {"text/plain": canonical(text), "text/html": canonical(text[::-1])}
