"""The link in an e-mail: `GET /email/open` checks it and sends the browser on to the brand's
chat page with the link in the URL's fragment (never sent to a server, so never logged);
the widget there trades it at `POST /email/resume` for a token of its own and opens the
conversation. The customer's first token stays valid: the link's token is a second key.

A mail scanner that fetches the link gets only the redirect: no token is made until a
browser runs the widget.
"""

from __future__ import annotations

import hashlib
import html
import secrets
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from gigcx.connectors.email.links import BadLink, ExpiredLink
from gigcx.store.models import utcnow

if TYPE_CHECKING:
    from gigcx.connectors.email.inbound import EmailEndpoints

FRAGMENT = "gigcx-resume"


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    link: str = Field(max_length=200)


def add_resume_routes(router: APIRouter, channel: EmailEndpoints) -> None:
    @router.get("/email/open", include_in_schema=False)
    async def open_link(
        # Named "...token" so the server's log hides it (connectors/web/log_redaction.py).
        resume_token: Annotated[str, Query(max_length=200)] = "",
    ) -> Response:
        problem = await _problem(channel, resume_token)
        if problem is not None:
            return _page(channel, *problem)
        return RedirectResponse(f"{channel.chat_page_url}#{FRAGMENT}={resume_token}", 303)

    @router.post("/email/resume", summary="Trade a link from an e-mail for a widget token")
    async def resume(body: ResumeRequest) -> JSONResponse:
        problem = await _problem(channel, body.link)
        if problem is not None:
            status, _title, words = problem
            return JSONResponse(status_code=status, content={"detail": words})
        conversation_id = channel.signer.open(body.link, utcnow())
        token = secrets.token_urlsafe(32)
        # Hashed as the chat API hashes the widget's token (connectors/web/routes.py).
        digest = hashlib.sha256(token.encode()).hexdigest()
        await channel.runtime.store.mark_conversation(conversation_id, link_token_hash=digest)
        return JSONResponse({"conversation_id": conversation_id, "token": token})


async def _problem(channel: EmailEndpoints, link: str) -> tuple[int, str, str] | None:
    """(status, title, words for the customer) when the link cannot open a conversation."""
    try:
        conversation_id = channel.signer.open(link, utcnow())
    except ExpiredLink:
        return (
            410,
            "This link has expired",
            "Links in our e-mails work for a limited time. Reply to the e-mail to answer, or "
            "start a new chat on our site.",
        )
    except BadLink:
        return (
            403,
            "This link is not valid",
            "The link may have been cut or changed. Open it from the e-mail again, or start a "
            "new chat on our site.",
        )
    conversation = await channel.runtime.store.find_conversation(conversation_id)
    if conversation is None or conversation.brand != channel.settings.brand:
        return (410, "This conversation is gone", "Start a new chat on our site.")
    return None


def _page(channel: EmailEndpoints, status: int, title: str, words: str) -> HTMLResponse:
    brand = html.escape(channel.settings.display_name)
    return HTMLResponse(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} — {brand}</title></head>"
        '<body style="font-family:sans-serif;max-width:36em;margin:4em auto;padding:0 1em">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(words)}</p>"
        f'<p><a href="{html.escape(channel.chat_page_url, quote=True)}">{brand}</a></p>'
        "</body></html>",
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
