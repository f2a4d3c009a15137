"""The brand team's side in tests: /admin turned on with a known token, and signing in."""

from __future__ import annotations

import re

import httpx
from pydantic import SecretStr

from gigcx.config import Settings

ADMIN_TOKEN = "admin-secret-for-the-kestrel-team"


def with_admin(settings: Settings, token: str | None = ADMIN_TOKEN) -> Settings:
    web = settings.web.model_copy(
        update={"admin_token": SecretStr(token) if token is not None else None}
    )
    return settings.model_copy(update={"web": web})


async def sign_in(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    """Signs `client` in through the login form; the response (a 303 when right)."""
    return await client.post("/admin/login", data={"token": token, "next": "/admin"})


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)
