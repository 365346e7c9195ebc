"""mani's CloudFormation stack deployed into moto (server mode), and Lambda's SQS event source
played for real: messages received from moto's queue, wrapped as Lambda SQS events, deleted
when the handler reports them done, made visible again when it lists them as failures.

moto's CloudFormation creates the queues (with the redrive policy), the bucket, the DynamoDB
table, the log groups, the roles, both functions, the event source mapping, the permission and
the SNS topic. It has no support for `AWS::SecretsManager::Secret`, `AWS::ApiGatewayV2::*`,
`AWS::CloudWatch::Alarm`, `AWS::SNS::Subscription` or `AWS::S3::BucketPolicy`, and ignores the
bucket's `PublicAccessBlockConfiguration` and `LifecycleConfiguration`, and the table's `TimeToLiveSpecification`. `deploy_stack` creates
the two secrets, the alarms, the subscription, the public access block, the lifecycle rules, the TTL
directly (from the template's own properties), and leaves the HTTP API and the bucket policy out
(the tests call `ingest` with API Gateway's payload 2.0 events).
"""

from __future__ import annotations

import io
import re
import secrets
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parents[2] / "cloud_workers" / "aws" / "cloudformation.yaml"
CALLBACK_SECRET = "stack-callback-secret-0123456789abcdef"
SENDER = "noreply@mani.test"


def load_template() -> dict:
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(TEMPLATE))


@dataclass
class Stack:
    name: str
    outputs: dict[str, str]
    parameters: dict[str, str]
    physical: dict[str, str]
    worker_env: dict[str, str]
    ingest_env: dict[str, str]
    skipped: list[str] = field(default_factory=list)
    alarms: list[dict] = field(default_factory=list)
    event_source_mapping: dict = field(default_factory=dict)

    @property
    def queue_url(self) -> str:
        return self.outputs["JobQueueUrl"]

    @property
    def dlq_url(self) -> str:
        return self.outputs["DeadLetterQueueUrl"]

    @property
    def bucket(self) -> str:
        return self.outputs["CertificateBucket"]


def _resolve(value: Any, *, parameters: dict, physical: dict, attributes: dict) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (kind, argument), = value.items()
        if kind == "Ref":
            return parameters.get(argument, physical.get(argument))
        if kind == "Fn::GetAtt":
            return attributes[(argument[0], argument[1])]
        if kind == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(parameters.get(m.group(1), physical.get(m.group(1)))), argument)
    if isinstance(value, dict):
        return {k: _resolve(v, parameters=parameters, physical=physical, attributes=attributes) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, parameters=parameters, physical=physical, attributes=attributes) for v in value]
    return value


def _defaults(template: dict) -> dict[str, str]:
    return {k: str(v.get("Default")) for k, v in template["Parameters"].items() if "Default" in v}


def deploy_stack(moto, *, stage: str = "test", extra: dict | None = None) -> Stack:
    """Create the stack in moto, then what moto's CloudFormation cannot create."""
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="mani-code")
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:  # moto checks the code exists, never runs it
        archive.writestr("lambda_handler.py", "def handler(event, context):\n    return {}\n")
    s3.put_object(Bucket="mani-code", Key="mani-lambda.zip", Body=code.getvalue())
    parameters = {"CallbackSecret": CALLBACK_SECRET, "SenderAddress": SENDER, "AlarmEmail": "ops@mani.test",
                  "CodeBucket": "mani-code", "CodeKey": "mani-lambda.zip", "Stage": stage, **(extra or {})}
    cfn = moto.client("cloudformation")
    name = f"mani-{stage}"
    cfn.create_stack(StackName=name, TemplateBody=TEMPLATE.read_text(), Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    summaries = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries if r.get("PhysicalResourceId")}

    template = load_template()
    created = set(physical)
    skipped = sorted(k for k in template["Resources"] if k not in created and k != "IngestPermission")
    # What moto skipped, created directly -------------------------------------------------------
    sm = moto.client("secretsmanager")
    physical["CallbackSecretValue"] = sm.create_secret(Name=f"mani/{stage}/callback-secret",
                                                       SecretString=parameters["CallbackSecret"])["ARN"]
    physical["IngestToken"] = sm.create_secret(Name=f"mani/{stage}/ingest-token",
                                               SecretString=secrets.token_urlsafe(36))["ARN"]
    # The bucket's public access block and lifecycle rules, which moto's CloudFormation ignores.
    bucket = template["Resources"]["CertificateBucket"]["Properties"]
    s3.put_public_access_block(Bucket=physical["CertificateBucket"],
                               PublicAccessBlockConfiguration=dict(bucket["PublicAccessBlockConfiguration"]))
    rules = []
    for rule in bucket["LifecycleConfiguration"]["Rules"]:
        days = _resolve(rule["ExpirationInDays"], parameters={**_defaults(template), **parameters},
                        physical=physical, attributes={})
        api_rule = {"ID": rule["Id"], "Status": rule["Status"], "Expiration": {"Days": int(days)},
                    "Filter": {"Prefix": rule.get("Prefix", "")}}
        if "AbortIncompleteMultipartUpload" in rule:
            api_rule["AbortIncompleteMultipartUpload"] = dict(rule["AbortIncompleteMultipartUpload"])
        rules.append(api_rule)
    s3.put_bucket_lifecycle_configuration(Bucket=physical["CertificateBucket"], LifecycleConfiguration={"Rules": rules})
    # The table's TTL, which moto's CloudFormation ignores too.
    ttl = template["Resources"]["IdempotencyTable"]["Properties"]["TimeToLiveSpecification"]
    moto.client("dynamodb").update_time_to_live(TableName=physical["IdempotencyTable"], TimeToLiveSpecification={
        "AttributeName": ttl["AttributeName"], "Enabled": bool(ttl["Enabled"])})
    sns = moto.client("sns")
    sns.subscribe(TopicArn=physical["AlarmTopic"], Protocol="email", Endpoint=parameters["AlarmEmail"])
    queue_names = {k: physical[k].rsplit("/", 1)[-1] for k in ("JobQueue", "DeadLetterQueue")}
    attributes = {(k, "QueueName"): v for k, v in queue_names.items()}
    all_parameters = {**_defaults(template), **parameters}
    cloudwatch = moto.client("cloudwatch")
    alarms = []
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        properties = _resolve(dict(resource["Properties"]), parameters=all_parameters, physical=physical,
                              attributes=attributes)
        cloudwatch.put_metric_alarm(**properties)
        alarms.append(properties)

    lam = moto.client("lambda")
    # The tests play the event source mapping themselves (`EventSource`); moto's own would try
    # to run the function in docker on every send, receiving (and hiding) the messages.
    (mapping,) = lam.list_event_source_mappings(FunctionName=outputs["WorkerFunctionName"])["EventSourceMappings"]
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    worker_env = dict(lam.get_function_configuration(FunctionName=outputs["WorkerFunctionName"])
                      ["Environment"]["Variables"])
    ingest_env = dict(lam.get_function_configuration(FunctionName=outputs["IngestFunctionName"])
                      ["Environment"]["Variables"])
    # moto drops the environment entries that refer to resources it skipped: the secrets.
    worker_env["CALLBACK_SECRET_ARN"] = physical["CallbackSecretValue"]
    ingest_env.update(CALLBACK_SECRET_ARN=physical["CallbackSecretValue"], INGEST_TOKEN_ARN=physical["IngestToken"])
    return Stack(name=name, outputs=outputs, parameters=all_parameters, physical=physical,
                 worker_env={k: str(v) for k, v in worker_env.items()},
                 ingest_env={k: str(v) for k, v in ingest_env.items()}, skipped=skipped, alarms=alarms,
                 event_source_mapping=mapping)


def aws_environment(moto, env: dict[str, str]) -> dict[str, str]:
    """The environment a function of the stack sees, with the AWS endpoints pointing at moto."""
    return {**env, "AWS_ENDPOINT_URL": moto.url, "AWS_REGION": moto.region, "AWS_DEFAULT_REGION": moto.region,
            "AWS_ACCESS_KEY_ID": "AKIAMANITEST", "AWS_SECRET_ACCESS_KEY": "moto-secret",
            "AWS_LAMBDA_FUNCTION_NAME": env.get("POWERTOOLS_SERVICE_NAME", "mani-worker")}


class LambdaContext:
    """The parts of Lambda's context object the handler and Powertools read."""

    def __init__(self, *, seconds: float = 300.0, function_name: str = "mani-test-worker"):
        self.deadline = time.monotonic() + seconds
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def sqs_event(messages: list[dict], *, queue_arn: str, region: str = "us-east-1") -> dict:
    """Lambda's SQS event for messages received with AttributeNames=All."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": dict(m.get("Attributes", {})), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
        "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region,
    } for m in messages]}


class EventSource:
    """Lambda's SQS event source mapping with ReportBatchItemFailures, driven step by step."""

    def __init__(self, moto, stack: Stack, handler, *, batch_size: int = 1):
        self.sqs = moto.client("sqs")
        self.stack, self.handler, self.batch_size = stack, handler, batch_size
        self.queue_arn = stack.outputs["JobQueueArn"]
        self.responses: list[dict] = []

    def send(self, body: str) -> str:
        return self.sqs.send_message(QueueUrl=self.stack.queue_url, MessageBody=body)["MessageId"]

    def poll(self, *, seconds: float = 300.0) -> dict | None:
        """One invocation: receive, run the handler, delete what it finished, release what failed."""
        answer = self.sqs.receive_message(QueueUrl=self.stack.queue_url, MaxNumberOfMessages=self.batch_size,
                                          AttributeNames=["All"], WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            return None
        response = self.handler(sqs_event(messages, queue_arn=self.queue_arn), LambdaContext(seconds=seconds))
        self.responses.append(response)
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] in failed:
                # The visibility timeout passing, without waiting for it.
                self.sqs.change_message_visibility(QueueUrl=self.stack.queue_url,
                                                   ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
            else:
                self.sqs.delete_message(QueueUrl=self.stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return response

    def drain(self, *, limit: int = 50, seconds: float = 300.0) -> list[dict]:
        done = []
        for _ in range(limit):
            response = self.poll(seconds=seconds)
            if response is None:
                break
            done.append(response)
        return done

    def count(self, url: str | None = None) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.stack.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
