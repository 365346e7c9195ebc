"""Unauthenticated large POSTs cost `mani serve` kilobytes, not megabytes.

Starts `mani serve` (a fresh data dir), then sends ROUNDS rounds of 16 concurrent 63 MB POSTs
with no token or signature to each body-taking endpoint, and prints the server's RSS before,
at its peak (VmHWM) and after. Before issue 11 the same load took the server to 983 MB.

    .venv/bin/python bench/http_rss.py [--rounds 2] [--clients 16] [--mib 63]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
PATHS = ("/api/v1/jobs", "/api/v1/callbacks", "/webhooks/mailgun", "/webhooks/ses")
CHUNK = b"[" + b" " * (1024 * 1024 - 1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) // 1024
    return fields


def post(port: int, path: str, mib: int, answers: list) -> None:
    """One POST of `mib` MiB, sent as fast as the server reads it; the status line it got."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {mib * 1024 * 1024}\r\n\r\n").encode()
    status = "no answer"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
            connection.sendall(head)
            try:
                for _ in range(mib):
                    connection.sendall(CHUNK)
            except OSError:
                pass  # answered and closed before the body was sent: what is wanted
            status = connection.recv(64).split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
    except OSError as error:
        status = type(error).__name__
    answers.append((path, status))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--mib", type=int, default=63)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MANI_")}
        env.update(MANI_DATA_DIR=data_dir, MANI_CONFIG=str(Path(data_dir) / "none.toml"))
        server = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "serve", "--port", str(port)],
                                  cwd=REPO_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("mani serve did not start")
                    time.sleep(0.2)
            time.sleep(1)
            before = memory(server.pid)["VmRSS"]
            answers: list = []
            started = time.monotonic()
            for _ in range(args.rounds):
                for path in PATHS:
                    threads = [threading.Thread(target=post, args=(port, path, args.mib, answers))
                               for _ in range(args.clients)]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
            elapsed = time.monotonic() - started
            time.sleep(1)
            after = memory(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=20)
    statuses: dict = {}
    for path, status in answers:
        statuses.setdefault(path, {}).setdefault(status, 0)
        statuses[path][status] += 1
    total_mib = args.rounds * len(PATHS) * args.clients * args.mib
    print(f"{args.rounds} rounds x {len(PATHS)} endpoints x {args.clients} concurrent {args.mib} MiB "
          f"unauthenticated POSTs ({total_mib} MiB offered) in {elapsed:.1f} s")
    for path, counts in statuses.items():
        print(f"  {path}: " + ", ".join(f"{count} x {status}" for status, count in sorted(counts.items())))
    print(f"server RSS: {before} MB before, peak {after['VmHWM']} MB, {after['VmRSS']} MB after "
          f"(target: peak < 150 MB)")


if __name__ == "__main__":
    main()
