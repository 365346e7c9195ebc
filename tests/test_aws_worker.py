"""The Lambda worker against the stack deployed into moto (server mode): real SQS messages
received from moto and wrapped as Lambda SQS events, SES/S3/DynamoDB/Secrets Manager in moto,
callbacks to a local receiver that checks signatures the way Moodle does."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import uuid

import pytest

from backend.moodle import signing
from backend.cloud.job_message import build_job_message, encode, recipient_entry
from backend.mail.mime import message_id_for
from tests.support.aws_stack import (
    CALLBACK_SECRET,
    EventSource,
    LambdaContext,
    aws_environment,
    deploy_stack,
)
from tests.support.cloud import dead_url, moto_server  # noqa: F401
from tests.support.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Tried to parse AWS")]


@pytest.fixture
def stack(moto_server):
    moto_server.verify("mani.test")
    return deploy_stack(moto_server)


def _use_env(monkeypatch, env: dict) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def worker(moto_server, stack, monkeypatch):
    from cloud_workers.aws import lambda_handler

    # The stack paces each worker at 7 messages/s; unpaced here so the tests run quickly.
    _use_env(monkeypatch, aws_environment(moto_server, stack.worker_env) | {"SEND_RATE": "0"})
    lambda_handler.reset()
    yield lambda_handler
    lambda_handler.reset()


@pytest.fixture
def receiver():
    with Receiver(CALLBACK_SECRET) as server:
        yield server


def job_bodies(receiver_url: str, *, batches: int = 3, per_batch: int = 4, job_type: str = "certificate",
               action: str = "both", passwords: bool = False, template_data: dict | None = None):
    job_id = str(uuid.uuid4())
    bodies, rid = [], 0
    for number in range(1, batches + 1):
        recipients = []
        for _ in range(per_batch):
            rid += 1
            recipients.append(recipient_entry(
                job_id=job_id, recipient_id=rid, email=f"learner{rid}@example.com", userid=5000 + rid,
                firstname="Ada", lastname=f"Lovelace {rid}", username=f"ada{rid}", secret=CALLBACK_SECRET,
                password=f"Temp-{rid}-pass!" if passwords else None, variables={"grade": "A"}))
        message = build_job_message(
            job_id=job_id, tenant_id=7, job_type=job_type, action=action, callback_url=receiver_url,
            recipients=recipients, batch=number, certificate_template="default",
            template_data=template_data or {"course_name": "Safe Lab Work", "site_name": "Moodle Academy",
                                            "login_url": "https://moodle.example.com/login"})
        bodies.append(encode(message))
    return job_id, bodies


def updates_by_rid(receiver: Receiver) -> dict[int, dict]:
    found = {}
    for item in receiver.accepted:
        for update in item.payload["recipient_updates"]:
            found[update["recipient_id"]] = update
    return found


def test_the_stack_deploys_into_moto_as_the_issue_lists(moto_server, stack):
    assert {"JobQueueUrl", "DeadLetterQueueUrl", "CertificateBucket", "WorkerFunctionName", "IngestUrl"} <= set(stack.outputs)
    sqs = moto_server.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 5 and redrive["deadLetterTargetArn"].endswith("mani-test-jobs-dlq")
    function = moto_server.client("lambda").get_function_configuration(FunctionName=stack.outputs["WorkerFunctionName"])
    assert int(attributes["VisibilityTimeout"]) > function["Timeout"]
    assert function["Runtime"] == "python3.11" and function["Handler"] == "lambda_handler.handler"
    mapping = stack.event_source_mapping
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and mapping["BatchSize"] == 1
    assert mapping["EventSourceArn"] == stack.outputs["JobQueueArn"]
    s3 = moto_server.client("s3")
    rules = s3.get_bucket_encryption(Bucket=stack.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=stack.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    lifecycle = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=stack.bucket)["Rules"]}
    assert lifecycle["certificates-expire"]["Expiration"]["Days"] == 30  # > the 7-day links
    ttl = moto_server.client("dynamodb").describe_time_to_live(TableName=stack.outputs["IdempotencyTableName"])
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expiration"
    alarms = {a["AlarmName"]: a for a in moto_server.client("cloudwatch").describe_alarms()["MetricAlarms"]}
    assert alarms["mani-test-queue-depth"]["Threshold"] == 1000
    assert alarms["mani-test-dlq-not-empty"]["Threshold"] == 1
    assert alarms["mani-test-worker-error-rate"]["Threshold"] == 5
    assert alarms["mani-test-ses-bounce-rate"]["Threshold"] == 0.05
    # What moto's CloudFormation could not create (made directly, or left out: the HTTP API).
    assert set(stack.skipped) >= {"CallbackSecretValue", "IngestToken", "HttpApi", "QueueDepthAlarm"}


def test_a_certificate_job_of_several_batches_end_to_end(moto_server, stack, worker, receiver):
    job_id, bodies = job_bodies(receiver.url, batches=3, per_batch=4)
    source = EventSource(moto_server, stack, worker.handler)
    for body in bodies:
        source.send(body)
    responses = source.drain()
    assert len(responses) == 3 and all(r == {"batchItemFailures": []} for r in responses)

    assert len(moto_server.deliveries) == 12
    assert sorted(d.to for d in moto_server.deliveries) == sorted(f"learner{i}@example.com" for i in range(1, 13))
    keys = [o["Key"] for o in moto_server.client("s3").list_objects_v2(Bucket=stack.bucket)["Contents"]]
    assert len(keys) == 12 and all(k.startswith(f"{job_id}/") and k.endswith(".pdf") for k in keys)
    updates = updates_by_rid(receiver)
    assert sorted(updates) == list(range(1, 13)) and not receiver.rejected
    assert all(item.payload["source"] == "worker" for item in receiver.accepted)
    assert {item.payload["batch"] for item in receiver.accepted} == {1, 2, 3}
    for delivery in moto_server.deliveries:
        rid = int(delivery.to.removeprefix("learner").split("@")[0])
        update = updates[rid]
        assert update["status"] == "completed" and update["attempts"] == 1 and update["userid"] == 5000 + rid
        assert update["timesent"] and update["error_message"] is None
        assert update["certificate_url"].startswith(moto_server.url) and "X-Amz-Expires=604800" in update["certificate_url"]
        assert update["certificate_code"] in delivery.text and "Safe Lab Work" in delivery.text
        assert delivery.headers["Message-ID"] == f"<{message_id_for(job_uuid=job_id, recipient_id=rid, domain='mani.test')}>"
        pdf = moto_server.client("s3").get_object(Bucket=stack.bucket, Key=f"{job_id}/{rid}-{update['certificate_code']}.pdf")
        assert pdf["Body"].read().startswith(b"%PDF")


def test_passwords_travel_sealed_and_arrive_in_the_mail(moto_server, stack, worker, receiver):
    job_id, bodies = job_bodies(receiver.url, batches=1, per_batch=3, job_type="welcome_std", action="email",
                                passwords=True)
    assert "Temp-1-pass!" not in bodies[0] and '"password"' not in bodies[0]
    source = EventSource(moto_server, stack, worker.handler)
    source.send(bodies[0])
    assert source.drain() == [{"batchItemFailures": []}]
    texts = {d.to: d.text for d in moto_server.deliveries}
    assert all(f"Temp-{i}-pass!" in texts[f"learner{i}@example.com"] for i in range(1, 4))
    assert all(u["status"] == "completed" for u in updates_by_rid(receiver).values())


def test_a_message_delivered_twice_sends_nothing_twice(moto_server, stack, worker, receiver):
    _, bodies = job_bodies(receiver.url, batches=1, per_batch=5)
    source = EventSource(moto_server, stack, worker.handler)
    source.send(bodies[0])
    source.send(bodies[0])  # SQS's at-least-once delivery, made certain
    assert source.drain() == [{"batchItemFailures": []}] * 2
    assert len(moto_server.deliveries) == 5
    assert len(moto_server.client("s3").list_objects_v2(Bucket=stack.bucket)["Contents"]) == 5
    first, second = receiver.accepted
    # The repeat reports the saved results: same links, same send times, nothing new.
    assert first.payload["recipient_updates"] == second.payload["recipient_updates"]
    assert first.payload["timestamp"] <= second.payload["timestamp"]


def test_ses_throttling_is_waited_out_within_the_time_left(moto_server, stack, worker, receiver):
    _, bodies = job_bodies(receiver.url, batches=1, per_batch=6, job_type="reminder", action="email",
                           template_data={"course_name": "Fire Safety", "due_date": "2025-12-31",
                                          "completion_percent": 40})
    moto_server.throttle(4)
    source = EventSource(moto_server, stack, worker.handler)
    source.send(bodies[0])
    assert source.drain() == [{"batchItemFailures": []}]
    assert moto_server.throttled == 4 and len(moto_server.deliveries) == 6
    assert all(u["attempts"] == 1 and u["status"] == "completed" for u in updates_by_rid(receiver).values())


def test_throttling_past_the_time_left_returns_the_message_without_burning_an_attempt(
        moto_server, stack, worker, receiver, monkeypatch):
    monkeypatch.setenv("CALLBACK_MARGIN_SECONDS", "5")
    worker.reset()
    _, bodies = job_bodies(receiver.url, batches=1, per_batch=4, job_type="reminder", action="email",
                           template_data={"course_name": "Fire Safety", "due_date": "2025-12-31",
                                          "completion_percent": 40})
    moto_server.throttle(10_000)
    source = EventSource(moto_server, stack, worker.handler)
    message_id = source.send(bodies[0])
    assert source.poll(seconds=5.5) == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert moto_server.deliveries == [] and receiver.received == []
    moto_server.throttle(0)
    assert source.poll() == {"batchItemFailures": []}
    assert len(moto_server.deliveries) == 4
    assert all(u["attempts"] == 1 for u in updates_by_rid(receiver).values())


def test_a_callback_receiver_that_is_down_sends_the_message_back(moto_server, stack, worker, receiver):
    _, bodies = job_bodies(receiver.url, batches=1, per_batch=3)
    source = EventSource(moto_server, stack, worker.handler)
    message_id = source.send(bodies[0])
    receiver.down()
    assert source.poll() == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert len(moto_server.deliveries) == 3 and source.count() == 1
    receiver.up()
    assert source.poll() == {"batchItemFailures": []}
    assert len(moto_server.deliveries) == 3  # reported now, not sent again
    assert sorted(updates_by_rid(receiver)) == [1, 2, 3] and source.count() == 0


def test_a_poison_message_ends_in_the_dead_letter_queue(moto_server, stack, worker, receiver):
    source = EventSource(moto_server, stack, worker.handler)
    poison = source.send("this is not a job")
    failures = []
    for _ in range(10):
        response = source.poll()
        if response is None:
            break
        failures.append(response)
    assert failures == [{"batchItemFailures": [{"itemIdentifier": poison}]}] * 5  # maxReceiveCount
    assert source.count() == 0 and source.count(stack.dlq_url) == 1
    (dead,) = moto_server.client("sqs").receive_message(QueueUrl=stack.dlq_url)["Messages"]
    assert dead["Body"] == "this is not a job" and receiver.received == []


def test_a_transient_failure_counts_attempts_across_deliveries_then_reports_failed(
        moto_server, stack, worker, receiver, monkeypatch, dead_url):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", dead_url)  # SES unreachable: transient every time
    monkeypatch.setenv("MAX_RECEIVE_COUNT", "2")
    worker.reset()
    _, bodies = job_bodies(receiver.url, batches=1, per_batch=2, job_type="reminder", action="email",
                           template_data={"course_name": "Fire Safety", "due_date": "2025-12-31",
                                          "completion_percent": 40})
    source = EventSource(moto_server, stack, worker.handler)
    message_id = source.send(bodies[0])
    assert source.poll() == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert source.poll() == {"batchItemFailures": []}  # the worker's last delivery: settle as failed
    updates = updates_by_rid(receiver)
    assert [u["status"] for u in updates.values()] == ["failed", "failed"]
    assert all(u["attempts"] == 6 and "gave up after 6 attempts" in u["error_message"] for u in updates.values())


# Intake (api_gateway mode) --------------------------------------------------------------------


@pytest.fixture
def intake(moto_server, stack, monkeypatch):
    from cloud_workers.aws import lambda_handler

    _use_env(monkeypatch, aws_environment(moto_server, stack.ingest_env))
    lambda_handler.reset()
    token = moto_server.client("secretsmanager").get_secret_value(SecretId=stack.physical["IngestToken"])["SecretString"]
    yield lambda_handler, token
    lambda_handler.reset()


def http_event(body: bytes | str = b"", *, token: str | None, signature: str | None = None, method: str = "POST",
               path: str = "/jobs", b64: bool = False) -> dict:
    raw = body.encode() if isinstance(body, str) else body
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if signature is not None:
        headers["x-signature"] = signature
    return {"version": "2.0", "routeKey": f"{method} {path}", "rawPath": path, "headers": headers,
            "requestContext": {"http": {"method": method, "path": path}},
            "body": base64.b64encode(raw).decode() if b64 else raw.decode(), "isBase64Encoded": b64}


def test_ingest_queues_a_signed_job_and_refuses_bad_tokens_and_signatures(moto_server, stack, intake):
    handler, token = intake
    _, bodies = job_bodies("https://mani.example.com/api/v1/callbacks", batches=1, per_batch=2)
    body = bodies[0].encode()
    good = signing.sign(body, CALLBACK_SECRET)
    context = LambdaContext(seconds=29)

    answer = handler.ingest(http_event(body, token=token, signature=good, b64=True), context)
    assert answer["statusCode"] == 202 and json.loads(answer["body"])["recipients"] == 2
    (queued,) = moto_server.client("sqs").receive_message(QueueUrl=stack.queue_url)["Messages"]
    assert json.loads(queued["Body"]) == json.loads(body)

    def refused(event) -> tuple[int, str]:
        result = handler.ingest(event, context)
        return result["statusCode"], json.loads(result["body"])["error"]

    assert refused(http_event(body, token=None, signature=good)) == (401, "unauthorized")
    assert refused(http_event(body, token="not-the-token", signature=good)) == (401, "unauthorized")
    assert refused(http_event(body, token=token, signature="0" * 64)) == (401, "bad_signature")
    assert refused(http_event(body, token=token, signature=None)) == (401, "bad_signature")
    assert refused(http_event(b"{nope", token=token, signature=signing.sign(b"{nope", CALLBACK_SECRET))) == (400, "malformed_json")
    no_recipients = json.dumps({**json.loads(body), "recipients": []}).encode()
    assert refused(http_event(no_recipients, token=token, signature=signing.sign(no_recipients, CALLBACK_SECRET))) == (400, "invalid")
    payload = json.loads(body)
    payload["recipients"][0]["password"] = "plain-text"
    plain = json.dumps(payload).encode()
    assert refused(http_event(plain, token=token, signature=signing.sign(plain, CALLBACK_SECRET))) == (400, "plain_password")
    health = handler.ingest(http_event(token=token, method="GET", path="/health"), context)
    assert health["statusCode"] == 200 and json.loads(health["body"])["ok"] is True
    assert handler.ingest(http_event(token="wrong", method="GET", path="/health"), context)["statusCode"] == 401


def test_an_oversized_batch_goes_by_claim_check_and_the_worker_reads_it(moto_server, stack, intake, receiver, monkeypatch):
    handler, token = intake
    padding = "x" * 2_000  # each recipient carries a long variable: the batch outgrows 256 KiB
    _, bodies = job_bodies(receiver.url, batches=1, per_batch=150, job_type="reminder", action="email",
                           template_data={"course_name": "Fire Safety", "due_date": "2025-12-31",
                                          "completion_percent": 40, "note": padding})
    payload = json.loads(bodies[0])
    for item in payload["recipients"]:
        item["note_" + str(item["recipient_id"])] = padding
    body = json.dumps(payload).encode()
    assert len(body) > 256 * 1024
    answer = handler.ingest(http_event(body, token=token, signature=signing.sign(body, CALLBACK_SECRET)), None)
    assert answer["statusCode"] == 202 and json.loads(answer["body"])["claim_check"] is True
    keys = [o["Key"] for o in moto_server.client("s3").list_objects_v2(Bucket=stack.bucket)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("claim-check/")

    from cloud_workers.aws import lambda_handler

    _use_env(monkeypatch, aws_environment(moto_server, stack.worker_env) | {"SEND_RATE": "0", "SEND_CONCURRENCY": "16"})
    lambda_handler.reset()
    source = EventSource(moto_server, stack, lambda_handler.handler)
    assert source.drain() == [{"batchItemFailures": []}]
    assert len(moto_server.deliveries) == 150 and len(updates_by_rid(receiver)) == 150


def test_the_mail_is_the_mime_mani_composes(moto_server, stack, worker, receiver):
    job_id, bodies = job_bodies(receiver.url, batches=1, per_batch=1, template_data={
        "course_name": "Sécurité au labo", "attach_pdf": True, "site_name": "Moodle", "login_url": "https://m.example"})
    source = EventSource(moto_server, stack, worker.handler)
    source.send(bodies[0])
    source.drain()
    (delivery,) = moto_server.deliveries
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(delivery.raw)
    (attachment,) = list(parsed.iter_attachments())
    assert attachment.get_filename().startswith("certificate-MANI-") and attachment.get_content().startswith(b"%PDF")
    assert "Sécurité au labo" in delivery.text
