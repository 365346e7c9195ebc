"""`mani companies token|tokens|revoke-token` and `mani callbacks list|show|redeliver`."""

from __future__ import annotations

import json

import httpx
from cryptography.fernet import Fernet
from typer.testing import CliRunner

import cli
from backend.core.settings import reset_settings_cache
from backend.moodle import callbacks
from models.db import session_scope
from tests.support.engine import people, run_inline, submit, write_csv
from tests.support.receiver import Receiver

SECRET = "moodle-callback-secret"


def mani(*args: str):
    result = CliRunner().invoke(cli.app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def test_api_tokens_are_shown_once_and_listed_by_prefix(sqlite_db, monkeypatch):
    monkeypatch.setenv("MANI_SECRET_KEY", Fernet.generate_key().decode())
    reset_settings_cache()
    assert mani("companies", "add", "acme", "--name", "Acme").exit_code == 0
    issued = json.loads(mani("companies", "token", "acme", "--json").stdout)
    listed = mani("companies", "tokens", "acme", "--json")
    assert issued["token"] not in listed.stdout
    [row] = json.loads(listed.stdout)
    assert issued["token"].startswith(row["prefix"]) and row["revoked_at"] is None
    assert mani("companies", "revoke-token", str(row["id"])).exit_code == 0
    assert json.loads(mani("companies", "tokens", "acme", "--json").stdout)[0]["revoked_at"]
    assert mani("companies", "token", "nope").exit_code == 2


def test_callbacks_are_listed_shown_and_redelivered(sqlite_db, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_SECRET_KEY", Fernet.generate_key().decode())
    reset_settings_cache()
    with Receiver(SECRET) as receiver:
        assert mani("companies", "add", "acme", "--name", "Acme").exit_code == 0
        assert mani("companies", "set", "acme", f"callback_url={receiver.url}", f"callback_secret={SECRET}").exit_code == 0
        job_id = submit(write_csv(tmp_path / "u.csv", people(3)), company_id="acme")
        assert run_inline(job_id).status == "completed"
        listed = json.loads(mani("callbacks", "list", "--job", str(job_id), "--json").stdout)
        assert {d["kind"] for d in listed["deliveries"]} == {"batch", "final"}
        assert listed["stats"]["delivered"] == 0
        receiver.fail_next(1)
        with httpx.Client() as client:
            for delivery in sorted(listed["deliveries"], key=lambda d: d["id"]):
                with session_scope() as session:
                    callbacks.deliver(session=session, delivery_id=delivery["id"], http_client=client)
        first = min(d["id"] for d in listed["deliveries"])
        shown = json.loads(mani("callbacks", "show", str(first), "--json").stdout)
        assert [a["status_code"] for a in shown["attempt_log"]] == [500]
        assert shown["status"] == "pending" and shown["next_attempt_at"]
        redelivered = json.loads(mani("callbacks", "redeliver", str(first), "--json").stdout)
        assert redelivered["redelivered"] == [first]
        with httpx.Client() as client, session_scope() as session:
            callbacks.deliver(session=session, delivery_id=first, http_client=client)
        stats = json.loads(mani("callbacks", "list", "--job", str(job_id), "--json").stdout)["stats"]
        assert (stats["delivered"], stats["total"], stats["delivered_share"]) == (2, 2, 1.0)
        # Moodle ends with every recipient's final state (keyed by email, as the CSV had no userid).
        assert receiver.statuses == {(listed["deliveries"][0]["job_uuid"], f"user{i}@example.com"): "completed"
                                     for i in range(3)}
        assert not receiver.rejected
    assert mani("callbacks", "redeliver").exit_code == 2
