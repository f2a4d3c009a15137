"""Signed-in customers: the brand's backend signs the user id (HMAC-SHA256 with the brand's
identity secret) and the widget passes id and hash; the server checks them here."""

from __future__ import annotations

import hashlib
import hmac

from gigcx.config import IdentitySettings


class IdentityRefused(Exception):
    """The user id and hash do not prove who the customer is (the message says why)."""


def secrets_match(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes text a client made up (any characters)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def user_hash(user_id: str, secret: str) -> str:
    """What the brand's backend computes for a signed-in user: hex HMAC-SHA256 of the id."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def verify_identity(settings: IdentitySettings, user_id: str | None, given: str | None) -> bool:
    """True when the customer is verified, False when anonymous is allowed; else refused."""
    if user_id is None and given is None:
        if settings.mode == "required":
            raise IdentityRefused("this brand requires a signed-in customer: user_id and user_hash")
        return False
    if user_id is None or given is None:
        raise IdentityRefused("user_id and user_hash go together")
    if settings.secret is None:
        raise IdentityRefused("this brand has no identity secret, so user_hash cannot be checked")
    expected = user_hash(user_id, settings.secret.get_secret_value())
    if not secrets_match(given.lower(), expected):
        raise IdentityRefused("user_hash does not match user_id")
    return True
