"""One recipient's message, rendered and addressed: what every sender hands a provider.

mani's engine (`backend.delivery.sending`, from a database row) and the cloud worker (from a
Job JSON recipient) both build messages here, so a recipient gets the same mail whichever sent it:
the same template context, the same deterministic Message-ID, the same certificate attachment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backend.core.settings import Settings
from backend.mail import templates
from backend.mail.mime import message_id_for
from backend.mail.providers.base import Attachment, OutgoingMessage


def sender_domain(sender: str) -> str:
    """The domain of a sender written as "Name <addr>" or a bare address (for the Message-ID)."""
    address = sender.rsplit("<", 1)[-1].rstrip(">").strip()
    return address.rsplit("@", 1)[-1] or "mani.localhost"


def certificate_attachment(*, pdf: bytes, code: str | None, recipient_id: int) -> Attachment:
    return Attachment(filename=f"certificate-{code or recipient_id}.pdf", content=pdf)


def outgoing_message(
    *, recipient_id: int, job_uuid: str, job_type: str, fields: Mapping[str, Any], variables: Mapping[str, Any],
    template_data: Mapping[str, Any], sender: str, settings: Settings, attachments: Sequence[Attachment] = (),
) -> OutgoingMessage:
    """Render one recipient's templates into a message with mani's deterministic Message-ID.

    `fields` are the recipient's own (email, userid, names, username, password, certificate_*);
    raises `templates.RenderError` (or UnknownJobType) when the templates cannot render for it.
    """
    context, rendered = templates.render_recipient(
        job_type=job_type, fields=dict(fields), variables=dict(variables or {}),
        template_data=dict(template_data or {}), settings=settings,
    )
    fullname = " ".join(part for part in (fields.get("firstname"), fields.get("lastname")) if part) or None
    return OutgoingMessage(
        recipient_id=recipient_id,
        to_address=fields["email"],
        to_name=fullname,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id_for(job_uuid=job_uuid, recipient_id=recipient_id, domain=sender_domain(sender)),
        variables=context,
        attachments=list(attachments),
    )
