"""The Lambda worker's speed and memory: 200-recipient certificate batches, against moto.

    .venv/bin/python bench/lambda_handler.py [--batches 3] [--size 200] [--zip cloud_workers/aws/dist/mani-lambda.zip]

The stack is deployed into moto (server mode, this machine); each batch is one real SQS
message (certificate job, action `both`: render the PDF, store it in S3, presign, compose,
send through SES, Powertools idempotency records in DynamoDB, one signed callback to a local
receiver). The handler runs in a fresh child process, as a Lambda container would: the first
batch pays the cold start, the next ones are warm. With `--zip` the child runs the unpacked
deployment zip beside only boto3 (the zip deploy.sh builds), else the source tree.

Printed per batch: wall seconds, CPU seconds, recipients/s, and the child's peak RSS. Then the
figures that choose `FunctionMemory`: Lambda gives a function CPU in proportion to its memory
(one full vCPU at 1,769 MB), so a CPU-bound batch takes about cpu_seconds * 1769 / memory
seconds below that size; the table shows the time and GB-seconds of a 200-recipient batch at
each size, and the peak memory says which sizes fit at all.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FULL_VCPU_MB = 1769
PRICE_GB_SECOND = 0.0000166667  # x86, us-east-1, the Lambda price list (to be checked)
BOTO3 = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six.py")


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; getrusage's ru_maxrss keeps the parent's across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(paths: list[str], events_file: str) -> None:
    """Run the handler on each event in turn, printing one JSON line per batch."""
    sys.path[:0] = paths
    started = time.perf_counter()
    import lambda_handler

    imported = time.perf_counter() - started

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "mani-bench-worker", 1024, "bench"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mani-bench-worker"

        def __init__(self):
            self.deadline = time.monotonic() + 900

        def get_remaining_time_in_millis(self):
            return int((self.deadline - time.monotonic()) * 1000)

    print(json.dumps({"import_seconds": imported,
                      "rss_mb": peak_rss_mb()}), flush=True)
    for line in Path(events_file).read_text().splitlines():
        event = json.loads(line)
        wall, cpu = time.perf_counter(), time.process_time()
        response = lambda_handler.handler(event, Context())
        print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                          "failures": len(response["batchItemFailures"]),
                          "rss_mb": peak_rss_mb()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8, help="SEND_CONCURRENCY")
    parser.add_argument("--zip", type=Path, help="run this deployment zip instead of the source tree")
    parser.add_argument("--child", nargs=2, metavar=("PATHS", "EVENTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0].split(os.pathsep), args.child[1])
        return

    from tests.support.aws_stack import CALLBACK_SECRET, aws_environment, deploy_stack, sqs_event
    from tests.support.cloud import MotoServer
    from tests.support.receiver import Receiver
    from tests.test_aws_worker import job_bodies

    moto = MotoServer().start()
    work = Path(tempfile.mkdtemp(prefix="mani-bench-lambda-"))
    try:
        moto.verify("mani.test")
        stack = deploy_stack(moto)
        sqs = moto.client("sqs")
        with Receiver(CALLBACK_SECRET) as receiver:
            _, bodies = job_bodies(receiver.url, batches=args.batches, per_batch=args.size)
            lines = []
            for body in bodies:
                sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
                messages = sqs.receive_message(QueueUrl=stack.queue_url, AttributeNames=["All"])["Messages"]
                lines.append(json.dumps(sqs_event(messages, queue_arn=stack.outputs["JobQueueArn"])))
            events = work / "events.jsonl"
            events.write_text("\n".join(lines))
            if args.zip:
                task, runtime = work / "task", work / "runtime"
                with zipfile.ZipFile(args.zip) as archive:
                    archive.extractall(task)
                runtime.mkdir()
                site = Path(sysconfig.get_paths()["purelib"])
                for name in BOTO3:
                    (runtime / name).symlink_to(site / name)
                paths, flags = [str(task), str(runtime)], ["-I", "-S"]
            else:
                paths, flags = [str(REPO / "cloud_workers" / "aws"), str(REPO)], []
            env = {"PATH": os.environ["PATH"], "HOME": str(work), "LANG": "C.UTF-8",
                   **aws_environment(moto, stack.worker_env), "SEND_RATE": "0",
                   "SEND_CONCURRENCY": str(args.concurrency)}
            run = subprocess.Popen([sys.executable, *flags, str(Path(__file__).resolve()), "--child",
                                    os.pathsep.join(paths), str(events)], env=env, stdout=subprocess.PIPE, text=True)
            rows = [json.loads(line) for line in run.stdout]
            run.wait()
            sent = len(moto.deliveries)
            reported = sum(len(r.payload["recipient_updates"]) for r in receiver.accepted)
    finally:
        moto.stop()

    head, batches = rows[0], rows[1:]
    source = f"zip {args.zip}" if args.zip else "source tree"
    print(f"mani Lambda worker, {len(batches)} batches of {args.size} recipients with certificates ({source}),"
          f" SEND_CONCURRENCY={args.concurrency}, against moto on this machine")
    print(f"  cold import of the handler: {head['import_seconds']:.2f} s, RSS {head['rss_mb']:.0f} MB")
    for number, row in enumerate(batches, 1):
        label = "cold" if number == 1 else "warm"
        print(f"  batch {number} ({label}): {row['wall']:6.2f} s wall {row['cpu']:6.2f} s cpu "
              f"{args.size / row['wall']:7.1f} recipients/s  {args.size / row['cpu']:7.1f} recipients/cpu-s  "
              f"peak RSS {row['rss_mb']:.0f} MB  failures {row['failures']}")
    print(f"  sent {sent} mails, {reported} recipients reported in signed callbacks")
    warm = batches[1:] or batches
    cpu = sum(r["cpu"] for r in warm) / len(warm)
    wall = sum(r["wall"] for r in warm) / len(warm)
    peak = max(r["rss_mb"] for r in batches)
    print(f"\n  a warm {args.size}-recipient batch: {cpu:.2f} cpu-s, {wall:.2f} s wall here; peak RSS {peak:.0f} MB")
    print("  FunctionMemory   fits   est. s/batch   GB-s/batch   $ per 1,000 recipients (compute)")
    for memory in (512, 1024, 1769, 2048, 3008):
        share = min(1.0, memory / FULL_VCPU_MB)
        seconds = max(wall, cpu / share)
        gb_seconds = seconds * memory / 1024
        fits = "yes" if peak * 1.25 < memory else "no"
        per_thousand = gb_seconds * PRICE_GB_SECOND * 1000 / args.size
        print(f"  {memory:>14}   {fits:>4}   {seconds:12.1f}   {gb_seconds:10.1f}   {per_thousand:10.4f}")


if __name__ == "__main__":
    main()
