"""A fast SMTP sink for benchmarks, meant to run in its own process.

    python bench/smtp_sink.py --port 2525 --stats-file /tmp/sink.json

It speaks real SMTP (EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT;
PIPELINING, 8BITMIME and SMTPUTF8 advertised), accepts everything, and counts messages,
distinct recipients, connections and bytes. The counts are rewritten as JSON to
`--stats-file` every 0.5 s (atomically), printed on SIGUSR1, and printed and written once more
on SIGTERM/SIGINT. With `--port 0` the chosen port is in the stats file ("port").

`--impl aiosmtpd` runs the same sink on aiosmtpd instead of the minimal protocol below, to
compare ceilings (aiosmtpd costs several times more CPU per message).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

EHLO_REPLY = (
    b"250-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
    b"250-SIZE 52428800\r\n250 ENHANCEDSTATUSCODES\r\n"
)


class Stats:
    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.connections = 0
        self.recipients: set[bytes] = set()
        self.recipient_deliveries = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.port = 0

    def record(self, rcpts: list[bytes], size: int) -> None:
        now = time.time()
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.messages += 1
        self.bytes += size
        self.recipient_deliveries += len(rcpts)
        self.recipients.update(rcpts)

    def as_dict(self) -> dict:
        return {
            "port": self.port,
            "pid": os.getpid(),
            "messages": self.messages,
            "distinct_recipients": len(self.recipients),
            "recipient_deliveries": self.recipient_deliveries,
            "connections": self.connections,
            "bytes": self.bytes,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "written_at": time.time(),
        }


class SinkProtocol(asyncio.Protocol):
    """One SMTP session. Replies to pipelined commands are written in one go."""

    def __init__(self, stats: Stats):
        self.stats = stats
        self.buffer = bytearray()
        self.in_data = False
        self.scan_from = 0
        self.rcpts: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.stats.connections += 1
        transport.write(b"220 bench-sink ESMTP ready\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies: list[bytes] = []
        buffer = self.buffer
        while buffer:
            if self.in_data:
                if buffer.startswith(b".\r\n"):
                    body_end, consumed = 0, 3  # an empty message
                else:
                    found = buffer.find(b"\r\n.\r\n", max(self.scan_from - 4, 0))
                    if found < 0:
                        self.scan_from = len(buffer)
                        break
                    body_end, consumed = found + 2, found + 5
                # Dot-unstuffing: a line starting ".." carried a line starting ".".
                body = bytes(buffer[:body_end])
                if body.startswith(b"..") or b"\r\n.." in body:
                    body = body.replace(b"\r\n..", b"\r\n.")
                    if body.startswith(b".."):
                        body = body[1:]
                del buffer[:consumed]
                self.in_data = False
                self.scan_from = 0
                self.stats.record(self.rcpts, len(body))
                self.rcpts = []
                replies.append(b"250 2.0.0 OK: queued as %d\r\n" % self.stats.messages)
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                break
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            verb = line[:4].upper()
            if verb == b"MAIL":
                self.rcpts = []
                replies.append(b"250 2.1.0 OK\r\n")
            elif verb == b"RCPT":
                address = line[line.find(b":") + 1 :].strip()
                if address.startswith(b"<"):
                    address = address[1 : address.find(b">")]
                self.rcpts.append(address.lower())
                replies.append(b"250 2.1.5 OK\r\n")
            elif verb == b"DATA":
                if not self.rcpts:
                    replies.append(b"503 5.5.1 RCPT first\r\n")
                else:
                    self.in_data = True
                    replies.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"EHLO":
                replies.append(EHLO_REPLY)
            elif verb == b"HELO":
                replies.append(b"250 bench-sink\r\n")
            elif verb == b"RSET":
                self.rcpts = []
                replies.append(b"250 2.0.0 OK\r\n")
            elif verb == b"NOOP":
                replies.append(b"250 2.0.0 OK\r\n")
            elif verb == b"QUIT":
                replies.append(b"221 2.0.0 Bye\r\n")
                self.transport.write(b"".join(replies))
                self.transport.close()
                return
            else:
                replies.append(b"502 5.5.2 Command not implemented\r\n")
        if replies:
            self.transport.write(b"".join(replies))


async def _serve_minimal(stats: Stats, host: str, port: int) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SinkProtocol(stats), host, port, backlog=512, reuse_address=True)


async def _serve_aiosmtpd(stats: Stats, host: str, port: int) -> asyncio.AbstractServer:
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            stats.record([address.lower().encode() for address in envelope.rcpt_tos], len(envelope.original_content))
            return "250 2.0.0 OK: queued as %d" % stats.messages

    class CountingSMTP(SMTP):
        def connection_made(self, transport):
            if self.transport is None:
                stats.connections += 1
            super().connection_made(transport)

    loop = asyncio.get_running_loop()
    handler = Handler()
    return await loop.create_server(
        lambda: CountingSMTP(handler, enable_SMTPUTF8=True, hostname="bench-sink"), host, port, backlog=512
    )


def _write_stats(stats: Stats, path: str | None) -> None:
    if not path:
        return
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        json.dump(stats.as_dict(), handle)
    os.replace(temporary, path)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--stats-file", default=None)
    parser.add_argument("--impl", choices=("minimal", "aiosmtpd"), default="minimal")
    options = parser.parse_args(argv)

    stats = Stats()
    serve = _serve_minimal if options.impl == "minimal" else _serve_aiosmtpd
    server = await serve(stats, options.host, options.port)
    stats.port = server.sockets[0].getsockname()[1]
    _write_stats(stats, options.stats_file)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def report() -> None:
        print(json.dumps(stats.as_dict()), flush=True)

    loop.add_signal_handler(signal.SIGUSR1, report)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"bench sink ({options.impl}) listening on {options.host}:{stats.port}", file=sys.stderr, flush=True)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.5)
        except asyncio.TimeoutError:
            pass
        _write_stats(stats, options.stats_file)
    server.close()
    _write_stats(stats, options.stats_file)
    report()


if __name__ == "__main__":
    asyncio.run(main())
