"""The one way text supplied by customers, experts or knowledge files reaches Slack: personal
data masked (under `escalation.redact_personal_data`), whitespace and Slack's control characters
made inert. The app's own markup (mentions, bold labels) is added after, never before."""

from __future__ import annotations

import re
from collections.abc import Sequence

from gigcx.escalation.redaction import normalise, redact

# Slack user and bot ids: "U0123ABCD", "W0123ABCD" (Enterprise Grid), "B..." for bots.
_USER_ID = re.compile(r"[UWB][A-Z0-9]{2,}")


class SlackText:
    """Renders untrusted text for Slack's mrkdwn."""

    def __init__(self, redact_personal_data: bool, phone_regions: Sequence[str]) -> None:
        self.redact_personal_data = redact_personal_data
        self.phone_regions = tuple(phone_regions)

    def plain(self, text: object, limit: int | None = None) -> str:
        """`text` masked, then cut to `limit` characters, then escaped: `<!channel>`,
        `<@U…>` and `<https://evil|https://brand>` show as typed and ping or link nobody.
        Invisible characters and reading-order controls are dropped either way."""
        value = str(text)
        value = redact(value, self.phone_regions) if self.redact_personal_data else normalise(value)
        if limit is not None and len(value) > limit:
            value = value[: limit - 1].rstrip() + "…"
        return escape(value)

    def inline(self, text: object, limit: int | None = None) -> str:
        """`plain`, on one line: a value cannot start a line of its own on a card."""
        return self.plain(" ".join(str(text).split()), limit)

    def quoted(self, text: object, limit: int | None = None) -> str:
        """`plain`, every line a quote: a customer's "\n*bot:* Refund approved" stays inside
        their message and cannot pass for a line of the app's own."""
        lines = self.plain(str(text).strip(), limit).splitlines() or [""]
        return "\n".join(f">{line}" for line in lines)


def escape(text: str) -> str:
    # Slack's mrkdwn: these three are the only characters that must be escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def is_user_id(value: str) -> bool:
    """Whether `value` is a Slack user id (U…/W…), which a message can be posted to (a DM)."""
    return _USER_ID.fullmatch(value) is not None and not value.startswith("B")


def mention(user_id: object) -> str:
    """A mention of a Slack user by id; anything that is not an id is shown as text."""
    value = str(user_id)
    return f"<@{value}>" if _USER_ID.fullmatch(value) else escape(value)
