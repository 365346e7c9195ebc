"""The `smtp` provider: one SMTP connection per batch, every reply classified.

URL forms (`MANI_SMTP_URL`): `smtp://host:port`, `smtp://user:pass@host:port` (user and
password percent-decoded), `smtp://host:587?starttls=true`, `smtps://host:465`. Further query
options: `cafile=PATH` (trust this CA), `verify=false` (accept any certificate), `helo=NAME`.

How replies become outcomes:
- Each message is MAIL, RCPT, DATA, pipelined (RFC 2920) when the server offers it.
- 250 -> SENT; external_id is the server's queue id when the reply names one
  ("queued as 4F2A1", "id=1q2w3e"), else the Message-ID.
- 421 (the service is closing, for everyone) -> UNAVAILABLE; 454 (back off) -> THROTTLED; the
  rest of the batch gets the same without being tried: pushing on would only collect refusals.
- any other 4xx -> TRANSIENT with the server's code and text.
- 5xx -> PERMANENT with the server's reply text ("550 5.1.1 user unknown").
- a refused greeting or login (a configuration problem, not the message's) -> TRANSIENT.
- a refused, dropped or timed-out connection -> one reconnect, and the message in flight is
  sent again on the new connection (a drop after the final "." may make that a duplicate,
  with the same Message-ID). If the reconnect fails, the message and all the rest of the
  batch are UNAVAILABLE: the server is down, which is no recipient's fault. At most `MAX_RECONNECTS` reconnects per batch (one `with`), however
  many `send` calls it makes; once the batch gave up, later calls answer at once.

`send` never raises for a message's or the server's fault; a bad URL raises ProviderError
when the provider is built. No error text ever holds the password.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from backend.mail.mime import MessageError, compose, needs_smtputf8, normalize_address, split_sender
from backend.mail.providers.base import Outcome, OutgoingMessage, ProviderError, SendResult

MAX_RECONNECTS = 3
THROTTLE_CODES = frozenset({421, 454})
_QUEUE_ID = re.compile(rb"(?:queued as|\bid=)\s*([A-Za-z0-9._-]{1,128})", re.IGNORECASE)
_LEADING_DOT = re.compile(rb"(?m)^\.")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@lru_cache(maxsize=1)
def _local_hostname() -> str:
    # smtplib would call socket.getfqdn() on every connection; it can take seconds without DNS.
    return socket.getfqdn() or "localhost"


class _Refused(Exception):
    """The server answered a command with a non-success code."""

    def __init__(self, code: int, reply: bytes, stage: str):
        super().__init__(code, reply, stage)
        self.code, self.reply, self.stage = code, reply, stage


class _ConnectionLost(Exception):
    """The connection failed, dropped or timed out; the text says how."""


def _reply_text(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {' '.join(text.split())}".strip()


class SmtpProvider:
    name = "smtp"
    # One connection serves the whole batch; the engine's batches (200 by default) fit.
    max_batch = 1000

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        timeout: float = 30.0,
        username: str | None = None,
        password: str | None = None,
        security: str = "plain",
        cafile: str | None = None,
        verify: bool = True,
        helo: str | None = None,
    ):
        if security not in ("plain", "starttls", "ssl"):
            raise ProviderError(f"Unknown SMTP security {security!r}: use plain, starttls or ssl.")
        try:
            self.sender_name, self.envelope_sender = split_sender(sender)
        except MessageError as error:
            raise ProviderError(str(error)) from None
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout
        self.username, self.password = username, password
        self.security, self.cafile, self.verify, self.helo = security, cafile, verify, helo
        self._client: smtplib.SMTP | None = None
        self._connect_error: tuple[Outcome, str] | None = None
        # Set once the batch cannot go on (reconnect failed, throttled): the rest gets this.
        self._given_up: tuple[Outcome, str] | None = None
        self._reconnects = 0

    # Construction -----------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, *, sender: str, timeout: float = 30.0) -> "SmtpProvider":
        """A provider for `smtp://` or `smtps://` URL; ProviderError when the URL is unusable."""
        try:
            parts = urlsplit((url or "").strip())
            port = parts.port
        except ValueError:
            raise ProviderError("The SMTP URL has an invalid port.") from None
        if parts.scheme not in ("smtp", "smtps"):
            raise ProviderError("The SMTP URL must start with smtp:// or smtps://.")
        if not parts.hostname:
            raise ProviderError("The SMTP URL names no host.")
        options = {key.lower(): values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(options) - {"starttls", "cafile", "verify", "helo"}
        if unknown:
            raise ProviderError(f"Unknown SMTP URL option(s): {', '.join(sorted(unknown))}.")
        starttls = _flag(options, "starttls", default=False)
        if starttls and parts.scheme == "smtps":
            raise ProviderError("smtps:// is TLS from the start; starttls=true applies to smtp:// only.")
        security = "ssl" if parts.scheme == "smtps" else ("starttls" if starttls else "plain")
        return cls(
            host=parts.hostname,
            port=port or (465 if security == "ssl" else 25),
            sender=sender,
            timeout=timeout,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            security=security,
            cafile=options.get("cafile") or None,
            verify=_flag(options, "verify", default=True),
            helo=options.get("helo") or None,
        )

    def __repr__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        scheme = "smtps" if self.security == "ssl" else "smtp"
        return f"<SmtpProvider {scheme}://{user}{self.host}:{self.port} {self.security}>"

    # Connection -------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        """An open, greeted, (TLS-wrapped, logged-in) connection; raises _Refused or _ConnectionLost."""
        helo = self.helo or _local_hostname()
        client: smtplib.SMTP | None = None
        try:
            if self.security == "ssl":
                client = smtplib.SMTP_SSL(
                    self.host, self.port, local_hostname=helo, timeout=self.timeout, context=self._tls_context()
                )
            else:
                client = smtplib.SMTP(self.host, self.port, local_hostname=helo, timeout=self.timeout)
            client.ehlo_or_helo_if_needed()
            if self.security == "starttls":
                client.starttls(context=self._tls_context())
                client.ehlo()
            if self.username:
                client.login(self.username, self.password or "")
            return client
        except smtplib.SMTPConnectError as error:
            raise _Refused(error.smtp_code, error.smtp_error, "greeting") from None
        except smtplib.SMTPAuthenticationError as error:
            _close(client)
            raise _Refused(error.smtp_code, error.smtp_error, "AUTH") from None
        except smtplib.SMTPResponseException as error:
            _close(client)
            raise _Refused(error.smtp_code, error.smtp_error, "connect") from None
        except smtplib.SMTPNotSupportedError as error:
            _close(client)
            raise _ConnectionLost(f"{self.host}:{self.port}: {error}") from None
        except (OSError, smtplib.SMTPException) as error:
            _close(client)
            raise _ConnectionLost(f"Cannot connect to {self.host}:{self.port}: {_describe(error)}") from None

    def _open(self) -> bool:
        """Connect; on failure remember why (for the rest of the batch) and answer False."""
        try:
            self._client = self._connect()
            self._connect_error = None
            return True
        except _Refused as refused:
            # A refused greeting or login says nothing about the messages: never PERMANENT.
            outcome = self._outcome_for(refused.code) if refused.code in THROTTLE_CODES else Outcome.TRANSIENT
            text = _reply_text(refused.code, refused.reply)
            if refused.stage == "AUTH":
                text = f"Login as {self.username} refused: {text}"
            self._connect_error = (outcome, text)
        except _ConnectionLost as lost:
            self._connect_error = (Outcome.UNAVAILABLE, str(lost))
        self._client = None
        return False

    def _drop(self) -> None:
        _close(self._client)
        self._client = None

    def __enter__(self) -> "SmtpProvider":
        self._given_up, self._reconnects = None, 0
        self._open()
        return self

    def __exit__(self, *exc_info) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                _close(client)

    # Sending ----------------------------------------------------------------------------

    @staticmethod
    def _outcome_for(code: int) -> Outcome:
        if code == 421:
            return Outcome.UNAVAILABLE
        if code in THROTTLE_CODES:
            return Outcome.THROTTLED
        if 500 <= code < 600:
            return Outcome.PERMANENT
        return Outcome.TRANSIENT

    def _transaction(self, client: smtplib.SMTP, recipient: str, data: bytes, smtputf8: bool) -> bytes:
        """MAIL, RCPT, DATA for one message; the final reply text, or _Refused/_ConnectionLost."""
        try:
            if client.does_esmtp and client.has_extn("pipelining"):
                return self._pipelined(client, recipient, data, smtputf8)
            options = ("SMTPUTF8",) if smtputf8 else ()
            code, reply = client.mail(self.envelope_sender, options)
            if code != 250:
                raise _Refused(code, reply, "MAIL FROM")
            code, reply = client.rcpt(recipient)
            if code not in (250, 251):
                raise _Refused(code, reply, "RCPT TO")
            try:
                code, reply = client.data(data)
            except smtplib.SMTPDataError as error:
                raise _Refused(error.smtp_code, error.smtp_error, "DATA") from None
            if code != 250:
                raise _Refused(code, reply, "end of DATA")
            return reply
        except (OSError, smtplib.SMTPServerDisconnected) as error:
            raise _ConnectionLost(f"Connection to {self.host}:{self.port} lost: {_describe(error)}") from None

    def _pipelined(self, client: smtplib.SMTP, recipient: str, data: bytes, smtputf8: bool) -> bytes:
        """RFC 2920: MAIL, RCPT and DATA in one write, then the content: two round trips, not four."""
        option = " SMTPUTF8" if smtputf8 else ""
        client.send(f"MAIL FROM:<{self.envelope_sender}>{option}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode("utf-8"))
        replies = []
        for stage in ("MAIL FROM", "RCPT TO", "DATA"):
            code, reply = client.getreply()
            if code == 421:  # the server is closing the channel: no further replies will come
                raise _Refused(code, reply, stage)
            replies.append((code, reply, stage))
        (mail_code, *_), (rcpt_code, *_), (data_code, *_) = replies
        accepted = mail_code == 250 and rcpt_code in (250, 251)
        if data_code == 354 and not accepted:
            client.send(b".\r\n")  # a server that said 354 anyway gets an empty, failing message
            client.getreply()
        for (code, reply, stage), wanted in zip(replies, ((250,), (250, 251), (354,))):
            if code not in wanted:
                raise _Refused(code, reply, stage)
        if data.startswith(b".") or b"\n." in data:
            data = _LEADING_DOT.sub(b"..", data)
        client.send(data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"))
        code, reply = client.getreply()
        if code != 250:
            raise _Refused(code, reply, "end of DATA")
        return reply

    def _after_refusal(self, code: int) -> None:
        # 421 means the server is closing the channel; otherwise reset the failed transaction.
        if code == 421 or self._client is None:
            self._drop()
            return
        try:
            self._client.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send every message on this batch's connection; one result per message, in order."""
        results: list[SendResult] = []
        index = 0
        retried_current = False
        while index < len(messages):
            if self._given_up is not None:
                results.extend(self._rest(messages[index:], *self._given_up))
                break
            message = messages[index]
            try:
                recipient = normalize_address(message.to_address)
                data = compose(message, sender=self.sender)
            except MessageError as error:
                results.append(SendResult(message.recipient_id, Outcome.PERMANENT, error=self._scrub(str(error))))
                index += 1
                continue
            smtputf8 = needs_smtputf8(recipient) or needs_smtputf8(self.envelope_sender)

            if self._client is None:
                # A server that refused us with "back off" is not asked again within this batch.
                throttled = self._connect_error is not None and self._connect_error[0] in (
                    Outcome.THROTTLED, Outcome.UNAVAILABLE)
                if throttled or self._reconnects >= MAX_RECONNECTS or not self._open():
                    self._given_up = self._connect_error or (Outcome.UNAVAILABLE, "Too many reconnects in one batch.")
                    continue
                self._reconnects += 1
            if smtputf8 and not self._client.has_extn("smtputf8"):
                error = f"{self.host} does not accept internationalized addresses (SMTPUTF8)."
                results.append(SendResult(message.recipient_id, Outcome.PERMANENT, error=error))
                index += 1
                continue

            try:
                reply = self._transaction(self._client, recipient, data, smtputf8)
            except _ConnectionLost as lost:
                self._drop()
                if not retried_current:
                    retried_current = True  # reconnect and send this message again
                    continue
                results.append(SendResult(message.recipient_id, Outcome.TRANSIENT, error=self._scrub(str(lost))))
            except _Refused as refused:
                outcome = self._outcome_for(refused.code)
                error = _reply_text(refused.code, refused.reply)
                if refused.stage not in ("RCPT TO", "end of DATA"):
                    error += f" (at {refused.stage})"
                self._after_refusal(refused.code)
                if outcome in (Outcome.THROTTLED, Outcome.UNAVAILABLE):
                    self._given_up = (outcome, error)
                    continue
                results.append(SendResult(message.recipient_id, outcome, error=self._scrub(error)))
            else:
                match = _QUEUE_ID.search(reply)
                external_id = match.group(1).decode("ascii") if match else message.message_id
                results.append(SendResult(message.recipient_id, Outcome.SENT, external_id=external_id))
            index += 1
            retried_current = False
        return results

    def _rest(self, messages: Sequence[OutgoingMessage], outcome: Outcome, error: str) -> list[SendResult]:
        error = self._scrub(error)
        return [SendResult(message.recipient_id, outcome, error=error) for message in messages]

    def _scrub(self, text: str) -> str:
        # Defence in depth: a server or library echoing the password must not put it in the store.
        if self.password and len(self.password) >= 3:
            text = text.replace(self.password, "***")
        return text


def _flag(options: Mapping[str, str], key: str, *, default: bool) -> bool:
    value = options.get(key)
    if value is None or value == "":
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ProviderError(f"The SMTP URL option {key}={value!r} is not true or false.")


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"timed out ({text})"
    return text


def _close(client: smtplib.SMTP | None) -> None:
    if client is not None:
        try:
            client.close()
        except OSError:
            pass


def from_settings(*, settings: Any, company_settings: Mapping | None = None) -> SmtpProvider:
    company_settings = company_settings or {}
    url = company_settings.get("smtp_url") or settings.smtp_url
    if not url:
        raise ProviderError("The smtp provider needs an SMTP URL: set MANI_SMTP_URL (smtp://host:port).")
    return SmtpProvider.from_url(
        url,
        sender=company_settings.get("sender") or settings.sender,
        timeout=float(company_settings.get("smtp_timeout") or settings.smtp_timeout),
    )
