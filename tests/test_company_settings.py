"""Companies, the settings catalogue and its resolution, test connection, and the CLI draft."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from backend.companies import connection_test
from backend.companies.catalogue import COMPANY_CATALOGUE, GLOBAL_CATALOGUE, parse_assignments
from backend.companies.resolution import describe, resolve
from backend.companies.service import add_company, get_company, list_companies, rename_company, show_company
from backend.companies.store import set_company_settings, set_global_settings
from backend.core.errors import NotFound, UnusableInput
from backend.core.settings import reset_settings_cache
from models import AuditEntry, Company



def company(session, company_id: str = "acme", **values) -> str:
    add_company(session=session, company_id=company_id, name=company_id.title(), actor="tester", source="test")
    if values:
        set_company_settings(session=session, company_id=company_id, values=values, actor="tester", source="test")
    return company_id


def test_catalogue_covers_the_seed_settings():
    for key in ("cloud_offload_enabled", "cloud_mode", "email_provider", "job_batch_size", "cloud_callback_secret",
                "presigned_url_ttl", "certificate_generation_mode", "cloud_retry_policy", "cloud_fallback_behavior"):
        assert key in GLOBAL_CATALOGUE
    for key in ("enabled", "email_provider", "threshold", "sender", "sender_name", "aws_region", "aws_access_key_id",
                "aws_secret_access_key", "sqs_queue_url", "mailgun_domain", "mailgun_api_key", "sendgrid_api_key",
                "smtp_url", "storage", "bucket", "rate_limit", "callback_url", "callback_secret", "ses_endpoint_url",
                "s3_endpoint_url", "mailgun_api_url", "sendgrid_api_url", "cloud_mode", "cloud_endpoint",
                "cloud_auth_token", "cloud_callback_secret"):
        assert key in COMPANY_CATALOGUE
    assert "public_url" in GLOBAL_CATALOGUE and "cloud_stuck_after" in GLOBAL_CATALOGUE
    secret = {k for k, spec in {**GLOBAL_CATALOGUE, **COMPANY_CATALOGUE}.items() if spec.secret}
    assert secret == {"cloud_callback_secret", "aws_secret_access_key", "mailgun_api_key", "sendgrid_api_key",
                      "smtp_url", "callback_secret", "cloud_auth_token", "mailgun_webhook_signing_key",
                      "moodle_database_url"}


def test_resolution_company_then_global_then_settings_then_default(session, monkeypatch):
    company(session)
    resolved = resolve(session=session, company_id="acme")
    assert (resolved["threshold"], resolved.sources["threshold"]) == (1000, "default")
    assert resolved["email_provider"] == "outbox" and resolved["cloud_retry_policy"] == [5, 30, 120]

    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "smtp")
    monkeypatch.setenv("MANI_BATCH_SIZE", "300")
    reset_settings_cache()
    resolved = resolve(session=session, company_id="acme")
    assert (resolved["email_provider"], resolved.sources["email_provider"]) == ("smtp", "settings")
    assert resolved["job_batch_size"] == 300

    set_global_settings(session=session, values={"threshold": "500", "email_provider": "mailgun",
                                                  "cloud_retry_policy": "[1, 2, 3, 4]"}, actor="t", source="test")
    resolved = resolve(session=session, company_id="acme")
    assert (resolved["threshold"], resolved.sources["threshold"]) == (500, "global")
    assert resolved["email_provider"] == "mailgun" and resolved["cloud_retry_policy"] == [1, 2, 3, 4]

    set_company_settings(session=session, company_id="acme", values={"threshold": "50", "email_provider": "ses"},
                         actor="t", source="test")
    resolved = resolve(session=session, company_id="acme")
    assert (resolved.threshold, resolved.sources["threshold"], resolved.email_provider) == (50, "company", "ses")
    set_company_settings(session=session, company_id="acme", values={"email_provider": "system"}, actor="t", source="test")
    assert resolve(session=session, company_id="acme")["email_provider"] == "mailgun"  # system = inherit
    assert resolve(session=session, company_id=None)["threshold"] == 500
    with pytest.raises(NotFound, match="mani companies add nope"):
        resolve(session=session, company_id="nope")


def test_validation_names_each_key_and_changes_nothing(session):
    company(session, threshold="10")
    with pytest.raises(UnusableInput) as caught:
        set_company_settings(session=session, company_id="acme", actor="t", source="test", values={
            "threshold": "lots", "bogus": "1", "aws_region": "mars", "email_provider": "pigeon",
            "smtp_url": "http://x", "mailgun_api_key": "key-abcdef0123456789", "rate_limit": "-1",
        })
    message = str(caught.value)
    assert message.startswith("Nothing was changed: ")
    assert "threshold must be a whole number (got 'lots')" in message
    assert "unknown company setting 'bogus' (valid: aws_access_key_id, aws_region" in message
    assert "aws_region must be an AWS region" in message
    assert "email_provider must be one of ses, mailgun, sendgrid, smtp, system" in message
    assert "smtp_url The SMTP URL must start with smtp:// or smtps://" in message
    assert "rate_limit must be between 0 and 100000" in message
    assert get_company(session=session, company_id="acme").settings == {"threshold": 10}
    with pytest.raises(UnusableInput, match="unknown global setting 'enabled'"):
        set_global_settings(session=session, values={"enabled": "true"}, actor="t", source="test")
    with pytest.raises(UnusableInput, match="cloud_retry_policy must be a JSON list"):
        set_global_settings(session=session, values={"cloud_retry_policy": "[soon]"}, actor="t", source="test")


def test_parse_assignments():
    assert parse_assignments(["enabled=true", "sender_name=Acme = Co", "bucket="]) == {
        "enabled": "true", "sender_name": "Acme = Co", "bucket": ""}
    with pytest.raises(UnusableInput, match="not KEY=VALUE"):
        parse_assignments(["enabled"])


def test_secrets_are_encrypted_masked_and_audited(session):
    company(session)
    changes = set_company_settings(session=session, company_id="acme", actor="alice", source="cli", values={
        "mailgun_api_key": "key-0123456789abcdef", "smtp_url": "smtp://u:relay-pass-1@relay.example:587",
        "enabled": "yes",
    })
    assert changes == {
        "mailgun_api_key": {"from": None, "to": "••••••cdef"},
        "smtp_url": {"from": None, "to": "smtp://u:••••••@relay.example:587"},
        "enabled": {"from": None, "to": True},
    }
    stored = session.get(Company, "acme")
    assert stored.secrets["mailgun_api_key"].startswith("gAAAA") and "mailgun_api_key" not in stored.settings
    assert resolve(session=session, company_id="acme")["mailgun_api_key"] == "key-0123456789abcdef"
    described = describe(session=session, company_id="acme")["settings"]
    assert described["mailgun_api_key"] == {**described["mailgun_api_key"], "value": "••••••cdef", "source": "company",
                                           "secret": True}
    set_company_settings(session=session, company_id="acme", values={"mailgun_api_key": ""}, actor="bob", source="console")
    assert "mailgun_api_key" not in session.get(Company, "acme").secrets
    entries = session.exec(select(AuditEntry).where(AuditEntry.action == "company.settings").order_by(AuditEntry.id)).all()
    assert [(e.actor, e.source, e.target) for e in entries] == [("alice", "cli", "company:acme"), ("bob", "console", "company:acme")]
    assert entries[1].details == {"changes": {"mailgun_api_key": {"from": "••••••cdef", "to": None}}}
    assert "relay-pass-1" not in repr(resolve(session=session, company_id="acme"))


def test_companies_crud(session):
    company(session, "zeta")
    company(session, "acme")
    assert [c.id for c in list_companies(session=session)] == ["acme", "zeta"]
    with pytest.raises(UnusableInput, match="already exists"):
        company(session, "acme")
    with pytest.raises(UnusableInput, match="not a usable company id"):
        add_company(session=session, company_id="a b/c", name="x", actor="t", source="test")
    with pytest.raises(UnusableInput, match="needs a name"):
        add_company(session=session, company_id="new", name="  ", actor="t", source="test")
    rename_company(session=session, company_id="acme", name="Acme Academy", actor="t", source="test")
    assert get_company(session=session, company_id="acme").name == "Acme Academy"
    with pytest.raises(NotFound):
        get_company(session=session, company_id="nope")
    actions = [e.action for e in session.exec(select(AuditEntry).order_by(AuditEntry.id)).all()]
    assert actions == ["company.add", "company.add", "company.rename"]
    shown = show_company(session=session, company_id="acme")
    assert shown["name"] == "Acme Academy" and shown["settings"]["threshold"]["source"] == "default"
    assert "cloud_mode" in shown["settings"]  # a company may hand its jobs to its own AWS
    assert "public_url" not in shown["settings"]  # global-only keys are not a company's to set
    assert "enabled" not in describe(session=session)["settings"]


# Test connection ----------------------------------------------------------------------------


def check_lines(session, company_id="acme"):
    return {r.name: r for r in connection_test.check_company_connections(session=session, company_id=company_id)}


def test_connection_mailgun_s3_sqs_callback(session, mailgun_server, moto_server, dead_url):
    moto_server.client("s3").create_bucket(Bucket="acme-certs")
    queue = moto_server.client("sqs").create_queue(QueueName="acme-jobs")["QueueUrl"]
    company(session, enabled="true", email_provider="mailgun", mailgun_domain="mg.example.com",
            mailgun_api_key=mailgun_server.api_key, mailgun_api_url=mailgun_server.url, storage="s3", bucket="acme-certs",
            aws_region="us-east-1", aws_access_key_id="AKIAX", aws_secret_access_key="moto-secret-key",
            s3_endpoint_url=moto_server.url, sqs_queue_url=queue, callback_url=mailgun_server.url + "/callback")
    lines = check_lines(session)
    assert all(line.ok for line in lines.values()), lines
    assert list(lines) == ["settings", "mailgun", "storage (s3)", "sqs queue", "callback url"]
    assert lines["mailgun"].detail == "domain mg.example.com: state active"
    assert "bucket acme-certs" in lines["storage (s3)"].detail
    assert moto_server.client("s3").list_objects_v2(Bucket="acme-certs").get("KeyCount") == 0  # cleaned up
    set_company_settings(session=session, company_id="acme", actor="t", source="test", values={
        "mailgun_api_key": "key-wrong-0000000000", "bucket": "no-such-bucket", "callback_url": dead_url})
    lines = check_lines(session)
    assert not lines["mailgun"].ok and "API key was refused" in lines["mailgun"].detail
    assert not lines["storage (s3)"].ok and "NoSuchBucket" in lines["storage (s3)"].detail
    assert not lines["callback url"].ok and "unreachable" in lines["callback url"].detail
    assert "key-wrong" not in str(lines)


def test_connection_ses_and_sendgrid(session, moto_server, sendgrid_server):
    company(session, email_provider="ses", aws_region="us-east-1", aws_access_key_id="AKIAX",
            aws_secret_access_key="moto-secret-key", ses_endpoint_url=moto_server.url, sender="noreply@mani.test")
    lines = check_lines(session)
    assert lines["ses"].ok and "quota" in lines["ses"].detail
    assert not lines["ses sender"].ok and "neither noreply@mani.test nor its domain" in lines["ses sender"].detail
    moto_server.verify("mani.test")
    assert check_lines(session)["ses sender"].ok
    company(session, "beta", email_provider="sendgrid", sendgrid_api_key=sendgrid_server.api_key,
            sendgrid_api_url=sendgrid_server.url)
    assert check_lines(session, "beta")["sendgrid"].detail == "the key has mail.send (2 scopes)"
    sendgrid_server.scopes = ["user.profile.read"]
    assert not check_lines(session, "beta")["sendgrid"].ok
    set_company_settings(session=session, company_id="beta", values={"sendgrid_api_key": ""}, actor="t", source="test")
    lines = check_lines(session, "beta")
    assert not lines["settings"].ok and lines["sendgrid"].detail == "not tried: the settings are incomplete"


def test_connection_smtp_login(session, make_smtp_sink):
    sink = make_smtp_sink(auth=("mailer", "right-pass"))
    url = sink.url
    company(session, email_provider="smtp", smtp_url=url)
    lines = check_lines(session)
    assert lines["smtp"].ok and "logged in as mailer" in lines["smtp"].detail
    assert lines["storage (local)"].ok
    set_company_settings(session=session, company_id="acme", values={"smtp_url": url.replace("right-pass", "wrong-pass")},
                         actor="t", source="test")
    lines = check_lines(session)
    assert not lines["smtp"].ok and "wrong-pass" not in lines["smtp"].detail


# The CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli():
    from cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_cli_companies_and_settings(cli, mailgun_server, sqlite_db):
    assert cli("companies", "add", "acme", "--name", "Acme").exit_code == 0
    assert cli("companies", "add", "acme", "--name", "Again").exit_code == 2
    result = cli("companies", "set", "acme", "enabled=true", "email_provider=mailgun", "mailgun_domain=mg.example.com",
                 f"mailgun_api_key={mailgun_server.api_key}", f"mailgun_api_url={mailgun_server.url}", "--json")
    assert result.exit_code == 0, result.output
    assert mailgun_server.api_key not in result.output and json.loads(result.output)["enabled"]["to"] is True
    assert cli("companies", "set", "acme", "threshold=many").exit_code == 2
    assert cli("companies", "show", "nope").exit_code == 2
    shown = json.loads(cli("companies", "show", "acme", "--json").output)
    assert shown["settings"]["mailgun_api_key"]["value"].startswith("••••••")
    human = cli("companies", "show", "acme").output
    assert "mailgun_domain" in human and mailgun_server.api_key not in human
    listed = json.loads(cli("companies", "list", "--json").output)
    assert [(c["id"], c["enabled"], c["email_provider"]) for c in listed] == [("acme", True, "mailgun")]
    tested = cli("companies", "test", "acme", "--json")
    assert tested.exit_code == 0 and json.loads(tested.output)["ok"] is True
    cli("companies", "set", "acme", "mailgun_api_key=key-bad-000000000000")
    failed = cli("companies", "test", "acme")
    assert failed.exit_code == 1 and "FAIL mailgun" in failed.output and "key-bad" not in failed.output
    assert cli("settings", "set", "cloud_fallback_behavior=fail", "cloud_callback_secret=cb-secret-0123456789").exit_code == 0
    settings_doc = json.loads(cli("settings", "show", "--json").output)
    assert settings_doc["settings"]["cloud_fallback_behavior"] == {**settings_doc["settings"]["cloud_fallback_behavior"],
                                                                   "value": "fail", "source": "global"}
    assert "cb-secret-0123456789" not in cli("settings", "show").output
    assert cli("settings", "set", "nope=1").exit_code == 2


def test_cli_keys_generate(cli, tmp_path):
    path = tmp_path / "mani.key"
    result = cli("keys", "generate", "--path", str(path), "--json")
    assert result.exit_code == 0 and json.loads(result.output)["path"] == str(path)
    assert cli("keys", "generate", "--path", str(path)).exit_code == 1  # never silently replaced
    assert cli("keys", "generate", "--path", str(path), "--force").exit_code == 0
    assert len(cli("keys", "generate", "--print").output.strip()) == 44
