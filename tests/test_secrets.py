"""Secrets: Fernet at rest, one key for all hosts, masked in every output (CLI, audit, logs)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from backend.core.errors import ManiError, SecretKeyMissing
from backend.core.secrets import (
    SecretUndecryptable,
    decrypt,
    encrypt,
    generate_key_file,
    get_fernet,
    install_log_masking,
    mask,
    mask_text,
    mask_url,
    register_secret,
)
from backend.core.settings import Settings, get_settings, reset_settings_cache



def use_key(monkeypatch, value: str) -> None:
    monkeypatch.setenv("MANI_SECRET_KEY", value)
    reset_settings_cache()


def test_round_trip_and_key_rotation(monkeypatch):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    use_key(monkeypatch, old)
    token = encrypt("s3cret-value")
    assert token != "s3cret-value" and decrypt(token) == "s3cret-value"
    use_key(monkeypatch, f"{new},{old}")  # rotation: the first key encrypts, every key decrypts
    assert decrypt(token) == "s3cret-value"
    assert Fernet(new.encode()).decrypt(encrypt("fresh").encode()) == b"fresh"
    use_key(monkeypatch, new)
    with pytest.raises(SecretUndecryptable, match="was MANI_SECRET_KEY or the key file changed"):
        decrypt(token)


def test_a_non_embedded_install_refuses_to_store_without_a_key(tmp_path):
    settings = Settings(database_url="postgresql+psycopg://db.example/mani", data_dir=tmp_path)
    with pytest.raises(SecretKeyMissing) as caught:
        encrypt("s3cret", settings=settings)
    assert "mani keys generate" in str(caught.value) and "MANI_SECRET_KEY" in str(caught.value)
    assert "every host" in str(caught.value)
    assert not (tmp_path / "secret.key").exists()


def test_the_embedded_default_makes_its_own_key_file_once():
    settings = get_settings()
    assert settings.is_embedded_database
    with pytest.raises(SecretKeyMissing):
        get_fernet(settings=settings)  # reading never creates a key
    token = encrypt("first")
    path = settings.effective_secret_key_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text()
    assert decrypt(encrypt("second")) == "second" and decrypt(token) == "first"
    assert path.read_text() == key


def test_generate_key_file(tmp_path):
    path = generate_key_file(tmp_path / "keys" / "mani.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Fernet(path.read_text().strip().encode())
    with pytest.raises(ManiError, match="already holds a key"):
        generate_key_file(path)
    before = path.read_text()
    generate_key_file(path, overwrite=True)
    assert path.read_text() != before


def test_key_file_setting_and_a_bad_key(monkeypatch, tmp_path):
    path = generate_key_file(tmp_path / "shared.key")
    monkeypatch.setenv("MANI_SECRET_KEY_FILE", str(path))
    monkeypatch.setenv("MANI_DATABASE_URL", "postgresql+psycopg://db.example/mani")
    reset_settings_cache()
    assert decrypt(encrypt("via file")) == "via file"
    use_key(monkeypatch, "not-a-fernet-key")
    with pytest.raises(ManiError, match="not a Fernet key"):
        encrypt("x")


@pytest.mark.parametrize(
    "value, shown",
    [
        (None, None),
        ("", ""),
        ("abc", "••••••"),
        ("hunter22", "••••••22"),
        ("key-0123456789abcdef", "••••••cdef"),
    ],
)
def test_mask(value, shown):
    assert mask(value) == shown


def test_mask_url_and_text():
    assert mask_url("smtp://mailer:pa55word@smtp.example.com:587?starttls=true") == (
        "smtp://mailer:••••••@smtp.example.com:587?starttls=true"
    )
    assert mask_url("smtp://smtp.example.com:25") == "smtp://smtp.example.com:25"
    register_secret("token-abcdef-123456")
    text = mask_text("connect smtps://u:topsecretpw@h:465 with token-abcdef-123456 now")
    assert "topsecretpw" not in text and "token-abcdef-123456" not in text
    assert "smtps://u:••••••@h:465" in text and "••••••3456" in text


def test_log_records_are_masked(caplog):
    install_log_masking()
    register_secret("sk-live-9f8e7d6c5b4a")
    log = logging.getLogger("mani.test.secrets")
    with caplog.at_level(logging.DEBUG):
        log.info("using key %s for %s", "sk-live-9f8e7d6c5b4a", "acme")
        log.warning("relay smtp://user:relaypass@relay.example:587 refused")
        try:
            raise RuntimeError("bad credentials sk-live-9f8e7d6c5b4a")
        except RuntimeError:
            log.exception("send failed")
    assert "sk-live-9f8e7d6c5b4a" not in caplog.text and "relaypass" not in caplog.text
    assert "using key ••••••5b4a for acme" in caplog.text
    formatted = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert "sk-live-9f8e7d6c5b4a" not in formatted and "Traceback" in formatted


def test_no_secret_in_the_database_file_or_the_logs(sqlite_db, caplog, moto_server, mailgun_server, sendgrid_server):
    """Secrets set through the settings API and then used to send: the SQLite file (and its WAL)
    and every captured log line hold them only masked."""
    from sqlmodel import select

    from backend.companies.resolution import resolve
    from backend.companies.service import add_company, show_company
    from backend.companies.store import set_company_settings, set_global_settings
    from backend.mail.providers import get_provider
    from models import AuditEntry
    from models.db import session_scope
    from tests.test_providers_cloud import messages

    install_log_masking()
    moto_server.verify("mani.test")
    secrets_used = {
        "aws_secret_access_key": "aws-SECRET-0123456789abcdefXYZ",
        "mailgun_api_key": mailgun_server.api_key,
        "sendgrid_api_key": sendgrid_server.api_key,
        "smtp_url": "smtp://mailer:SMTP-pass-word-42@127.0.0.1:2525",
        "callback_secret": "callback-SECRET-abcdef0123",
    }
    global_secret = "global-callback-SECRET-987654"
    with caplog.at_level(logging.DEBUG):
        with session_scope() as session:
            add_company(session=session, company_id="acme", name="Acme", actor="t", source="test")
            set_company_settings(session=session, company_id="acme", actor="t", source="test", values={
                **secrets_used, "aws_region": "us-east-1", "aws_access_key_id": "AKIAX", "ses_endpoint_url": moto_server.url,
                "mailgun_domain": "mg.example.com", "mailgun_api_url": mailgun_server.url,
                "sendgrid_api_url": sendgrid_server.url, "sender": "noreply@mani.test",
            })
            set_global_settings(session=session, values={"cloud_callback_secret": global_secret}, actor="t", source="test")
        with session_scope() as session:
            resolved = dict(resolve(session=session, company_id="acme"))
            shown = str(show_company(session=session, company_id="acme"))
            audit = str([e.details for e in session.exec(select(AuditEntry)).all()])
        logging.getLogger("mani.test").info("resolved settings: %s", resolved)
        for name in ("ses", "mailgun", "sendgrid"):
            with get_provider(name, settings=get_settings(), company_settings=resolved) as provider:
                provider.send(messages(2))
    everything = list(secrets_used.values()) + [global_secret, "SMTP-pass-word-42"]
    db = Path(sqlite_db.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())
    assert len(stored) > 10_000
    for secret in everything:
        assert secret.encode() not in stored, f"{secret} is in the database file"
        assert secret not in shown and secret not in audit
        assert secret not in caplog.text, f"{secret} is in the logs"
    assert "••••••" in shown and "••••••" in audit
    assert "botocore" in caplog.text and "resolved settings" in caplog.text  # the logs were really captured
    assert os.environ.get("MANI_SECRET_KEY") is None  # the embedded default made its own key file
