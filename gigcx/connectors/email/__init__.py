"""The e-mail channel: expert replies and resolutions by e-mail to customers who left an
address and are not reading the chat, a signed link back to the conversation, and replies
by e-mail back into it (see README, "E-mail")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gigcx.config import Settings
from gigcx.connectors.email.channel import CONSUMER, OUTBOX_KINDS, EmailChannel, deliver_due, run

if TYPE_CHECKING:
    from gigcx.app import GigCX


class EmailPlugin:
    """The `gigcx.channels` entry point `email = "gigcx.connectors.email:plugin"`: a customer
    channel configured by gigcx's own `email:` section."""

    name = CONSUMER
    kind = "customer"
    description = "expert replies and resolutions by e-mail; replies by e-mail come back"
    settings_model = None
    settings_section = "email"
    outbox_kinds = OUTBOX_KINDS

    def enabled(self, settings: Settings) -> bool:
        return settings.email.enabled

    def create(self, runtime: GigCX, plugin_settings: Any) -> EmailChannel:
        return EmailChannel(runtime)


plugin = EmailPlugin()

__all__ = [
    "CONSUMER",
    "OUTBOX_KINDS",
    "EmailChannel",
    "EmailPlugin",
    "deliver_due",
    "plugin",
    "run",
]
