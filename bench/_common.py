"""Shared pieces of the bench scripts: the sink process, the CSV and messages, RSS readings, and\nthe baselines mani is measured against (email.mime + smtplib, persistent or one connection each)."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formataddr, formatdate
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SENDER = "Moodle <noreply@moodle.example>"
SUBJECT = "Welcome to Moodle, {firstname}"
LOGIN_URL = "https://moodle.example/login/index.php"

# Stand-ins for the welcome_std template, about the same size as the real one.
TEXT = """Hello {firstname} {lastname},

A new account has been created for you on Moodle.

    Username: {username}
    Temporary password: {password}

Log in at {login_url} and choose a new password when asked.
Your temporary password expires after your first login.

If you need help, reply to this message or contact your site administrator.

-- 
The Moodle team
"""

HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Welcome to Moodle</title></head>
<body style="font-family: Arial, sans-serif; color: #222;">
<p>Hello {firstname} {lastname},</p>
<p>A new account has been created for you on <strong>Moodle</strong>.</p>
<table style="border-collapse: collapse;">
<tr><td style="padding: 4px 12px;">Username</td><td style="padding: 4px 12px;"><code>{username}</code></td></tr>
<tr><td style="padding: 4px 12px;">Temporary password</td><td style="padding: 4px 12px;"><code>{password}</code></td></tr>
</table>
<p><a href="{login_url}" style="background: #0f6cbf; color: #fff; padding: 8px 16px; text-decoration: none;">Log in</a>
and choose a new password when asked. Your temporary password expires after your first login.</p>
<p>If you need help, reply to this message or contact your site administrator.</p>
<p>-- <br>The Moodle team</p>
</body></html>
"""

FIRST_NAMES = ["Jane", "John", "José", "Zoë", "Ana", "Mohammed", "Li", "Søren", "Priya", "Ólafur", "Chloé", "Tomasz"]
LAST_NAMES = ["Doe", "Smith", "Müller", "García", "Nguyen", "Kowalski", "O'Brien", "Papadopoulos", "Tanaka", "Dubois"]


def csv_rows(count: int) -> list[dict[str, str]]:
    rows = []
    for i in range(count):
        first = FIRST_NAMES[i % len(FIRST_NAMES)]
        last = LAST_NAMES[(i // len(FIRST_NAMES)) % len(LAST_NAMES)]
        rows.append(
            {
                "userid": str(100000 + i),
                "email": f"bench.user{i}@example.com",
                "firstname": first,
                "lastname": last,
                "username": f"user{i}",
                "password": f"Tmp#{(i * 7919) % 1000003:07d}x",
            }
        )
    return rows


def write_csv(path: Path, count: int) -> Path:
    """A welcome_std CSV with `count` distinct recipients."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["userid", "email", "firstname", "lastname", "username", "password"])
        writer.writeheader()
        writer.writerows(csv_rows(count))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def render(row: dict[str, str]) -> tuple[str, str, str]:
    """(subject, text, html) of the welcome message for one CSV row."""
    values = dict(row, login_url=LOGIN_URL)
    return SUBJECT.format(**values), TEXT.format(**values), HTML.format(**values)


# The sink process ---------------------------------------------------------------------------


class SinkProcess:
    """bench/smtp_sink.py in its own process, on a free port."""

    def __init__(self, directory: Path, *, impl: str = "minimal", name: str = "sink"):
        self.stats_file = directory / f"{name}-{os.getpid()}-{time.monotonic_ns()}.json"
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "smtp_sink.py"), "--port", "0", "--stats-file", str(self.stats_file),
             "--impl", impl],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while not self.stats_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("The bench SMTP sink did not start.")
            time.sleep(0.02)
        self.port = self.stats()["port"]
        self.url = f"smtp://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        for _ in range(50):
            try:
                return json.loads(self.stats_file.read_text())
            except (OSError, ValueError):
                time.sleep(0.01)
        raise RuntimeError("Cannot read the sink's stats file.")

    def wait_for(self, messages: int, *, timeout: float) -> dict:
        """Wait until the sink counted `messages` (its file lags up to 0.5 s); the last stats."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["messages"] >= messages or time.monotonic() > deadline:
                return stats
            time.sleep(0.1)

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.process.pid)

    def stop(self) -> dict:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        stats = self.stats()
        self.stats_file.unlink(missing_ok=True)
        return stats

    def __enter__(self) -> "SinkProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


# Processes and memory ---------------------------------------------------------------------------


def descendants(root: int) -> list[int]:
    """`root` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of one process in MB, None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
    except OSError:
        return "?"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Baselines and the sink's ceiling ---------------------------------------------------------------

ENVELOPE_SENDER = "noreply@moodle.example"
_CRLF_COMPAT32 = compat32.clone(linesep="\r\n")


def legacy_mime(row: dict[str, str]) -> bytes:
    """The same two-part message through email.mime, as cheaply as the standard library allows."""
    subject, text, html = render(row)
    message = MIMEMultipart("alternative")
    message["From"] = SENDER
    message["To"] = formataddr((f"{row['firstname']} {row['lastname']}", row["email"]))
    message["Subject"] = subject
    message["Date"] = formatdate()
    message["Message-ID"] = f"<raw.{row['userid']}@moodle.example>"
    message.attach(MIMEText(text, "plain", "utf-8"))
    message.attach(MIMEText(html, "html", "utf-8"))
    # SMTP wants CRLF; compat32's default "\n" would make the whole message one overlong line.
    return message.as_bytes(policy=_CRLF_COMPAT32)


# Baselines ------------------------------------------------------------------------------------


def _raw_sender(port: int, rows: list[dict], ready, go) -> None:
    client = smtplib.SMTP("127.0.0.1", port, local_hostname="bench", timeout=60)
    ready.release()
    go.wait()
    for row in rows:
        client.sendmail(ENVELOPE_SENDER, [row["email"]], legacy_mime(row))
    client.quit()


def _raw_worker(port: int, rows: list[dict], threads: int, ready, go, done) -> None:
    import threading

    senders = [threading.Thread(target=_raw_sender, args=(port, rows[i::threads], ready, go)) for i in range(threads)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    done.put(len(rows))


def raw_limit(rows: list[dict], port: int, processes: int, threads: int = 1) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for `processes` forked senders of `threads` threads, each
    thread with one persistent connection."""
    cpu_before = _children_cpu()
    context = multiprocessing.get_context("fork")
    ready, go, done = context.Semaphore(0), context.Event(), context.Queue()
    workers = [
        context.Process(target=_raw_worker, args=(port, rows[i::processes], threads, ready, go, done))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in range(processes * threads):
        ready.acquire()
    started = time.perf_counter()
    go.set()
    sent = sum(done.get() for _ in workers)
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    assert sent == len(rows)
    return elapsed, _children_cpu() - cpu_before


def naive(rows: list[dict], port: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for one connection per message, in sequence."""
    cpu_before = time.process_time()
    started = time.perf_counter()
    for row in rows:
        client = smtplib.SMTP("127.0.0.1", port, local_hostname="bench", timeout=60)
        client.sendmail(ENVELOPE_SENDER, [row["email"]], legacy_mime(row))
        client.quit()
    return time.perf_counter() - started, time.process_time() - cpu_before


def _blast_worker(port: int, count: int, message: bytes, window: int, done) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", port)) as connection:
        reader = connection.makefile("rb")
        reader.readline()
        connection.sendall(b"EHLO bench\r\n")
        while reader.readline()[3:4] == b"-":
            pass
        sent = 0
        while sent < count:
            batch = min(window, count - sent)
            connection.sendall(
                b"".join(
                    b"MAIL FROM:<%s>\r\nRCPT TO:<ceiling%d@example.com>\r\nDATA\r\n%s\r\n.\r\n"
                    % (ENVELOPE_SENDER.encode(), os.getpid() * 1_000_000 + sent + i, message)
                    for i in range(batch)
                )
            )
            for _ in range(batch * 4):
                reader.readline()
            sent += batch
        connection.sendall(b"QUIT\r\n")
        reader.readline()
    done.put(count)


def sink_ceiling(port: int, count: int, message: bytes, connections: int = 2) -> tuple[float, float]:
    """(wall, client CPU seconds) for the sink to take `count` messages from pipelining clients."""
    cpu_before = _children_cpu()
    context = multiprocessing.get_context("fork")
    done = context.Queue()
    started = time.perf_counter()
    workers = [
        context.Process(target=_blast_worker, args=(port, count // connections, message, 100, done))
        for _ in range(connections)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        done.get()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started, _children_cpu() - cpu_before


def compose_rates(rows: list[dict], seconds: float = 1.0) -> dict[str, float]:
    """Messages composed per second on one core: email.mime against backend.mail.mime."""
    rates = {}
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        legacy_mime(rows[count % len(rows)])
        count += 1
    rates["email.mime"] = count / (time.perf_counter() - started)
    try:
        from backend.mail.mime import compose
        from backend.mail.providers.base import OutgoingMessage
    except ImportError:
        return rates
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        row = rows[count % len(rows)]
        subject, text, html = render(row)
        message = OutgoingMessage(
            recipient_id=count, to_address=row["email"], to_name=f"{row['firstname']} {row['lastname']}",
            subject=subject, text=text, html=html, message_id=f"mani.bench.{count}@moodle.example",
        )
        compose(message, sender=SENDER)
        count += 1
    rates["backend.mail.mime"] = count / (time.perf_counter() - started)
    return rates
