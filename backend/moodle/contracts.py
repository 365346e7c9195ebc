"""The inbound contracts as pydantic models: the seeds' Callback JSON (from external workers)
and the provider webhooks (Mailgun, SES through SNS). They validate requests and are what
`/openapi.json` publishes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.core.contract import SafeStr, ShortStr, UnixSeconds, WholeNumber

Open = ConfigDict(extra="allow")
HexSignature = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]

WORKER_STATUSES = ("completed", "sent", "delivered", "failed", "permanently_failed", "bounced", "complained",
                   "processing", "pending", "retry_pending", "retrying", "skipped", "cancelled")


class RecipientUpdateIn(BaseModel):
    """One recipient's status as a worker reports it (seed 000, "Callback JSON Example")."""

    model_config = Open
    userid: WholeNumber | ShortStr | None = Field(None, description="Moodle user id; or give `email`.")
    recipient_id: WholeNumber | None = Field(
        None, description="mani's recipient id, as the handoff message gave it (matched before userid and email).")
    email: ShortStr | None = None
    # Case-insensitive on the wire; the schema lists the canonical spellings.
    status: Annotated[ShortStr, Field(json_schema_extra={"enum": list(WORKER_STATUSES)})] = Field(
        description="The recipient's new status (case-insensitive).")
    certificate_url: Annotated[SafeStr, Field(max_length=4096)] | None = None
    timesent: UnixSeconds | None = Field(None, description="Unix seconds the mail was sent.")
    error_message: Annotated[SafeStr, Field(max_length=10_000)] | None = None
    attempts: int | None = Field(None, ge=0, le=1000)


class CallbackIn(BaseModel):
    """The Callback JSON a worker posts to `/api/v1/callbacks`, signed with `X-Signature`."""

    model_config = Open
    job_id: ShortStr = Field(description="The job's UUID, as in the Job JSON.")
    recipient_updates: list[RecipientUpdateIn] = Field(max_length=100_000)
    timestamp: UnixSeconds = Field(description="Unix seconds; refused when more than 300 s from the server's clock.")
    source: ShortStr | None = Field(None, description="Who signed the body; `mani` is refused (mani's own callbacks).")
    batch: WholeNumber | None = Field(None, description="The batch number of the handoff message reported on.")


class MailgunSignature(BaseModel):
    model_config = Open
    timestamp: Annotated[SafeStr, Field(pattern=r"^[0-9]{1,12}$")] | int
    token: Annotated[SafeStr, Field(min_length=1, max_length=256)]
    signature: HexSignature


class MailgunMessage(BaseModel):
    model_config = Open
    headers: dict[SafeStr, SafeStr | int | None] = Field(default_factory=dict)


class MailgunDeliveryStatus(BaseModel):
    model_config = Open
    code: int | SafeStr | None = None
    description: SafeStr | None = None
    message: SafeStr | None = None


class MailgunEventData(BaseModel):
    model_config = Open
    event: ShortStr
    id: ShortStr | None = None
    severity: ShortStr | None = None
    recipient: ShortStr | None = None
    reason: SafeStr | None = None
    message: MailgunMessage | None = None
    delivery_status: MailgunDeliveryStatus | None = Field(None, alias="delivery-status")
    user_variables: dict[SafeStr, SafeStr | int | float | bool | None] | None = Field(None, alias="user-variables")


class MailgunWebhookIn(BaseModel):
    """Mailgun's JSON webhook: the signature block and one event."""

    model_config = Open
    signature: MailgunSignature
    event_data: MailgunEventData = Field(alias="event-data")


class SnsMessageIn(BaseModel):
    """An Amazon SNS message (SES bounce and complaint notifications arrive as these)."""

    model_config = Open
    Type: Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
    MessageId: ShortStr
    TopicArn: ShortStr
    Message: SafeStr = Field(max_length=262_144)
    Timestamp: ShortStr
    SignatureVersion: ShortStr = Field(description="1 (SHA1) or 2 (SHA256); others are refused as unsigned.")
    Signature: SafeStr = Field(max_length=4096)
    SigningCertURL: SafeStr = Field(max_length=2048)
    Subject: SafeStr | None = None
    Token: SafeStr | None = Field(None, max_length=4096)
    SubscribeURL: SafeStr | None = Field(None, max_length=2048)
    UnsubscribeURL: SafeStr | None = Field(None, max_length=2048)


class SesAddress(BaseModel):
    model_config = Open
    emailAddress: ShortStr | None = None
    diagnosticCode: SafeStr | None = None


class SesBounce(BaseModel):
    model_config = Open
    bounceType: ShortStr | None = None
    bounceSubType: ShortStr | None = None
    bouncedRecipients: list[SesAddress] = Field(default_factory=list, max_length=10_000)


class SesComplaint(BaseModel):
    model_config = Open
    complaintFeedbackType: ShortStr | None = None
    complainedRecipients: list[SesAddress] = Field(default_factory=list, max_length=10_000)


class SesHeader(BaseModel):
    model_config = Open
    name: SafeStr | None = None
    value: SafeStr | None = None


class SesCommonHeaders(BaseModel):
    model_config = Open
    messageId: SafeStr | None = None


class SesMail(BaseModel):
    model_config = Open
    messageId: SafeStr | None = None
    commonHeaders: SesCommonHeaders | None = None
    headers: list[SesHeader] = Field(default_factory=list, max_length=1000)


class SesNotification(BaseModel):
    """The JSON inside an SNS `Message` from SES."""

    model_config = Open
    notificationType: ShortStr | None = None
    eventType: ShortStr | None = None
    mail: SesMail | None = None
    bounce: SesBounce | None = None
    complaint: SesComplaint | None = None
