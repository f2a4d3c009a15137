"""Signed, expiring links back to a conversation, and signed reply addresses.

A link carries the conversation id and an expiry, signed with `email.link_secret`; never the
customer's token (the server keeps only its hash). A reply address names the conversation
with a short signature, so a reply cannot be pointed at another conversation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

_LINK_LABEL = b"gigcx e-mail link v1\0"
_REPLY_LABEL = b"gigcx reply address v1\0"
_LINK_SIGNATURE_BYTES = 16
_REPLY_SIGNATURE_CHARS = 16
_REPLY_LOCAL = re.compile(r"^reply\+([0-9a-f]{32})\.([0-9a-f]{16})$")


class BadLink(Exception):
    """A link that was altered, or not made by this server."""


class ExpiredLink(Exception):
    """A genuine link whose lifetime is over."""


@dataclass(frozen=True)
class LinkSigner:
    """Makes and checks the links and reply addresses of one brand's e-mails."""

    secret: bytes

    def link(self, conversation_id: str, expires: datetime) -> str:
        """`<payload>.<signature>`, URL-safe: the conversation id and the expiry, signed."""
        payload = bytes.fromhex(conversation_id) + struct.pack(">I", int(expires.timestamp()))
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def open(self, link: str, now: datetime) -> str:
        """The conversation id a link names; BadLink if altered, ExpiredLink if too old."""
        try:
            encoded, signature = link.split(".")
            payload, given = _unb64(encoded), _unb64(signature)
        except ValueError:
            raise BadLink("not a link of ours") from None
        if len(payload) != 20 or not hmac.compare_digest(given, self._sign(payload)):
            raise BadLink("the link's signature does not match")
        (expires,) = struct.unpack(">I", payload[16:])
        if now.timestamp() > expires:
            raise ExpiredLink(datetime.fromtimestamp(expires, UTC).isoformat())
        return payload[:16].hex()

    def reply_local_part(self, conversation_id: str) -> str:
        return f"reply+{conversation_id}.{self._reply_signature(conversation_id)}"

    def conversation_of_reply(self, address: str) -> str | None:
        """The conversation a reply address names, or None when it is not one we signed."""
        local = address.strip().rsplit("@", 1)[0].lower()
        found = _REPLY_LOCAL.match(local)
        if found is None:
            return None
        conversation_id, signature = found.groups()
        if not hmac.compare_digest(signature, self._reply_signature(conversation_id)):
            return None
        return conversation_id

    def _sign(self, payload: bytes) -> bytes:
        digest = hmac.new(self.secret, _LINK_LABEL + payload, hashlib.sha256).digest()
        return digest[:_LINK_SIGNATURE_BYTES]

    def _reply_signature(self, conversation_id: str) -> str:
        message = _REPLY_LABEL + conversation_id.encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:_REPLY_SIGNATURE_CHARS]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
