"""The e-mail a customer gets: who answered, their words quoted, a resolution if there was
one, and the link back to the conversation; plain text with a simple HTML part."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

# Above this line in a reply is the customer's answer; inbound.py cuts the reply here too.
REPLY_ABOVE = "-- Reply above this line to answer in the conversation --"


@dataclass(frozen=True)
class Reply:
    """An expert's (or staff member's) message, as the customer sees it."""

    who: str  # "Alex, product expert" or "Our support team"
    text: str


@dataclass(frozen=True)
class Letter:
    """What one e-mail says, before it is written out."""

    brand: str
    conversation_id: str
    to: str
    replies: list[Reply]
    resolved_by: str | None  # who resolved the conversation, when it was
    link: str
    link_expires: datetime
    reply_to: str | None  # the signed reply address; None when replies are not taken

    @property
    def subject(self) -> str:
        if not self.replies:
            return f"Your conversation with {self.brand} is resolved"
        return f"New reply from {self.brand} support"


def compose(letter: Letter, sender: str, sender_name: str, thread_domain: str) -> EmailMessage:
    """The message to send; every e-mail of one conversation is in one thread."""
    message = EmailMessage()
    message["Subject"] = letter.subject
    message["From"] = Address(display_name=sender_name, addr_spec=sender)
    message["To"] = letter.to
    if letter.reply_to is not None:
        message["Reply-To"] = letter.reply_to
    message["Date"] = format_datetime(datetime.now().astimezone())
    message["Message-ID"] = make_msgid(domain=thread_domain)
    # Mail clients thread on a shared reference; auto-replies are told to stay quiet.
    message["References"] = f"<conversation.{letter.conversation_id}@{thread_domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(_text(letter))
    message.add_alternative(_html(letter), subtype="html")
    return message


def _intro(letter: Letter) -> list[str]:
    lines = []
    names = list(dict.fromkeys(reply.who for reply in letter.replies))
    if names:
        lines.append(f"{' and '.join(names)} replied to your question:")
    return lines


def _outro(letter: Letter) -> list[str]:
    lines = []
    if letter.resolved_by is not None:
        lines.append(f"{letter.resolved_by} marked your question as resolved.")
    how = "Reply to this e-mail, or open the conversation"
    if letter.reply_to is None:
        how = "Open the conversation"
    lines.append(f"{how} to continue (the link works until {_day(letter.link_expires)}):")
    return lines


def _text(letter: Letter) -> str:
    parts: list[str] = []
    if letter.reply_to is not None:
        parts += [REPLY_ABOVE, ""]
    parts += ["Hi,", ""]
    intro = _intro(letter)
    if intro:
        parts += [*intro, ""]
    for reply in letter.replies:
        if len(letter.replies) > 1 or len({r.who for r in letter.replies}) > 1:
            parts.append(f"{reply.who}:")
        parts += [f"> {line}" if line else ">" for line in reply.text.splitlines()]
        parts.append("")
    parts += [*_outro(letter), letter.link, "", f"— {letter.brand} support", ""]
    return "\n".join(parts)


def _html(letter: Letter) -> str:
    e = html.escape
    body = []
    if letter.reply_to is not None:
        body.append(f'<p style="color:#777;font-size:12px">{e(REPLY_ABOVE)}</p>')
    body.append("<p>Hi,</p>")
    body += [f"<p>{e(line)}</p>" for line in _intro(letter)]
    for reply in letter.replies:
        paragraphs = "".join(
            f"<p style='margin:0 0 8px'>{e(p).replace(chr(10), '<br>')}</p>"
            for p in reply.text.split("\n\n")
        )
        body.append(
            '<blockquote style="margin:0 0 12px;padding:8px 12px;border-left:3px solid #ccc">'
            f'<div style="color:#555;font-size:12px;margin-bottom:4px">{e(reply.who)}</div>'
            f"{paragraphs}</blockquote>"
        )
    outro = _outro(letter)
    body += [f"<p>{e(line)}</p>" for line in outro[:-1]]
    body.append(
        f'<p>{e(outro[-1])}<br><a href="{e(letter.link, quote=True)}">Open the conversation</a></p>'
    )
    body.append(f"<p>— {e(letter.brand)} support</p>")
    return (
        '<!doctype html><html><body style="font-family:sans-serif;line-height:1.45">'
        + "".join(body)
        + "</body></html>"
    )


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%B %Y}"
