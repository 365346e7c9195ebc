"""The zip `deploy.sh --package-only` builds is the zip that runs: unpacked into an empty folder
beside only boto3 (what Lambda's python3.11 runtime provides), imported and run in a fresh,
isolated interpreter against moto and a callback receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.support.aws_stack import CALLBACK_SECRET, aws_environment, deploy_stack, sqs_event
from tests.support.cloud import moto_server  # noqa: F401
from tests.support.receiver import Receiver
from tests.test_aws_worker import job_bodies, updates_by_rid

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Tried to parse AWS")]

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "cloud_workers" / "aws" / "deploy.sh"
ZIP = ROOT / "cloud_workers" / "aws" / "dist" / "mani-lambda.zip"
# boto3 and what it needs: the SDK Lambda's runtime ships.
BOTO3 = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six.py")

RUN = """
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import lambda_handler
assert lambda_handler.__file__.startswith(sys.argv[1]), lambda_handler.__file__
foreign = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "sqlmodel", "textual", "dramatiq", "redis", "httpx", "models", "actors", "console")})
assert not foreign, foreign

class Context:
    function_name = "mani-test-worker"; memory_limit_in_mb = 1024; aws_request_id = "zip-test"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mani-test-worker"
    deadline = time.monotonic() + 300
    def get_remaining_time_in_millis(self):
        return int((self.deadline - time.monotonic()) * 1000)

event = json.load(open(sys.argv[3]))
print(json.dumps({"response": lambda_handler.handler(event, Context()),
                  "backend": sys.modules["backend"].__file__, "jinja2": sys.modules["jinja2"].__file__}))
"""


@pytest.fixture(scope="module")
def lambda_zip() -> Path:
    build = subprocess.run(["bash", str(DEPLOY), "test", "us-east-1", "--package-only"], cwd=ROOT,
                           capture_output=True, text=True, timeout=900,
                           env={**os.environ, "PYTHON": sys.executable})
    assert build.returncode == 0, build.stderr[-3000:]
    assert ZIP.is_file()
    return ZIP


def test_the_packaged_zip_runs_beside_only_boto3(lambda_zip, tmp_path, moto_server):
    size = lambda_zip.stat().st_size
    assert size < 50 * 1024 * 1024  # Lambda's limit for a zip; docs/aws.md quotes the figure
    with zipfile.ZipFile(lambda_zip) as archive:
        names = archive.namelist()
        unpacked = sum(info.file_size for info in archive.infolist())
        archive.extractall(tmp_path / "task")
    assert unpacked < 250 * 1024 * 1024
    assert "lambda_handler.py" in names and "backend/cloud/worker.py" in names
    assert not any(name.startswith(("boto3/", "botocore/", "textual/", "dramatiq/", "sqlalchemy/", "tests/"))
                   for name in names)
    extensions = [n for n in names if ".so" in n.rsplit("/", 1)[-1]]
    assert any("cpython-311-x86_64-linux-gnu" in n for n in extensions)  # wheels for Lambda's python3.11
    assert not [n for n in extensions for tag in ("aarch64", "musl", "darwin", "cpython-310", "cpython-312") if tag in n]

    runtime = tmp_path / "runtime"  # only boto3, as in Lambda's python3.11 runtime
    runtime.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in BOTO3:
        (runtime / name).symlink_to(site / name)

    moto_server.verify("mani.test")
    stack = deploy_stack(moto_server)
    sqs = moto_server.client("sqs")
    with Receiver(CALLBACK_SECRET) as receiver:
        _, bodies = job_bodies(receiver.url, batches=1, per_batch=3, passwords=True, job_type="welcome_std")
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=bodies[0])
        messages = sqs.receive_message(QueueUrl=stack.queue_url, AttributeNames=["All"])["Messages"]
        event_file = tmp_path / "event.json"
        event_file.write_text(json.dumps(sqs_event(messages, queue_arn=stack.outputs["JobQueueArn"])))
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
               **aws_environment(moto_server, stack.worker_env), "SEND_RATE": "0"}
        run = subprocess.run([sys.executable, "-I", "-S", "-c", RUN, str(tmp_path / "task"), str(runtime),
                              str(event_file)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["response"] == {"batchItemFailures": []}
        assert result["backend"].startswith(str(tmp_path / "task"))
        assert result["jinja2"].startswith(str(tmp_path / "task"))
        assert len(moto_server.deliveries) == 3
        assert all("Temp-" in d.text for d in moto_server.deliveries)
        updates = updates_by_rid(receiver)
        assert sorted(updates) == [1, 2, 3] and all(u["status"] == "completed" for u in updates.values())
        assert all(u["certificate_url"] for u in updates.values())
