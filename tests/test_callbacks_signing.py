"""Signing: what mani signs passes Moodle's check (seed 000, Task 4.4.2), and nothing else does."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest

from backend.moodle import signing
from tests.support.receiver import Receiver

SECRET = "hmac_secret_key"


def test_sign_is_lowercase_hex_hmac_sha256_of_the_raw_body():
    body = b'{"job_id":"x","recipient_updates":[],"timestamp":1700308900}'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signing.sign(body, SECRET) == expected
    assert expected == expected.lower() and len(expected) == 64


def test_signed_body_stamps_the_time_and_signs_the_exact_bytes():
    body, signature = signing.signed_body({"job_id": "j", "recipient_updates": []}, SECRET, now=1700308900.7)
    assert json.loads(body)["timestamp"] == 1700308900
    assert signing.sign(body, SECRET) == signature
    assert signing.verify(body, signature, SECRET, now=1700308900)["job_id"] == "j"


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_verify_accepts_the_edges_of_the_window(offset):
    body, signature = signing.signed_body({"a": 1}, SECRET, now=1_000_000)
    signing.verify(body, signature, SECRET, now=1_000_000 + offset)


@pytest.mark.parametrize("offset", [-301, 301, 86400])
def test_verify_refuses_stale_and_future_timestamps(offset):
    body, signature = signing.signed_body({"a": 1}, SECRET, now=1_000_000)
    with pytest.raises(signing.StaleTimestamp):
        signing.verify(body, signature, SECRET, now=1_000_000 + offset)


def test_verify_refuses_a_tampered_body_a_wrong_secret_and_junk_signatures():
    body, signature = signing.signed_body({"status": "completed"}, SECRET)
    with pytest.raises(signing.BadSignature):
        signing.verify(body.replace(b"completed", b"failed"), signature, SECRET)
    with pytest.raises(signing.BadSignature):
        signing.verify(body, signature, "another secret")
    for junk in (None, "", signature.upper(), signature[:-1], "é" * 64):
        with pytest.raises(signing.BadSignature):
            signing.verify(body, junk, SECRET)


def test_verify_refuses_a_signed_body_that_is_not_a_json_object():
    for body in (b"not json", b"[1, 2]"):
        with pytest.raises(signing.NotJson):
            signing.verify(body, signing.sign(body, SECRET), SECRET)


def test_a_missing_timestamp_counts_as_zero_like_php():
    body = b'{"job_id": "x"}'
    with pytest.raises(signing.StaleTimestamp):
        signing.verify(body, signing.sign(body, SECRET), SECRET)


def test_the_receiver_accepts_what_mani_signs_and_rejects_the_rest_over_http():
    with Receiver(SECRET) as receiver, httpx.Client() as client:
        body, signature = signing.signed_body({"job_id": "j1", "recipient_updates": [
            {"userid": 1001, "status": "completed"}]}, SECRET)
        assert client.post(receiver.url, content=body, headers={"X-Signature": signature}).status_code == 200
        assert receiver.statuses == {("j1", "1001"): "completed"}
        # Re-serialized JSON is different bytes: the signature no longer matches.
        reserialized = json.dumps(json.loads(body), indent=1).encode()
        answer = client.post(receiver.url, content=reserialized, headers={"X-Signature": signature})
        assert (answer.status_code, answer.json()["message"]) == (401, "Invalid signature")
        old, old_signature = signing.signed_body({"job_id": "j1"}, SECRET, now=time.time() - 301)
        answer = client.post(receiver.url, content=old, headers={"X-Signature": old_signature})
        assert (answer.status_code, answer.json()["message"]) == (401, "Request expired")
        assert len(receiver.accepted) == 1 and len(receiver.rejected) == 2
