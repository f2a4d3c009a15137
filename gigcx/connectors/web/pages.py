"""What the gigcx server shows in a browser: the widget script, and a demo product page with
the widget on it (so a newcomer sees the customer's side at http://127.0.0.1:8080)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from gigcx.app import GigCX
from gigcx.connectors.web.dependencies import runtime

STATIC = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/widget.js")
async def widget_script() -> FileResponse:
    return FileResponse(
        STATIC / "widget.js",
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/console")
async def console_page() -> FileResponse:
    """The local expert console (a stand-in for Slack); it asks for web.console_token."""
    return FileResponse(STATIC / "console.html", media_type="text/html")


@router.get("/console.js")
async def console_script() -> FileResponse:
    return FileResponse(STATIC / "console.js", media_type="application/javascript")


@router.get("/console.css")
async def console_style() -> FileResponse:
    return FileResponse(STATIC / "console.css", media_type="text/css")


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/demo")


@router.get("/demo")
async def demo_page(gigcx: Annotated[GigCX, Depends(runtime)]) -> HTMLResponse:
    """A product page of the brand with the widget embedded by its one script tag."""
    settings = gigcx.settings
    keys = settings.web.widget_keys
    if not keys:
        return HTMLResponse(
            "<p>Add a key to <code>web.widget_keys</code> in gigcx.yaml to see the widget.</p>",
            status_code=503,
        )
    products = "".join(
        f"<li><strong>{html.escape(p.name)}</strong>"
        f"{' — ' + html.escape(p.kind) if p.kind else ''}</li>"
        for p in settings.products
    )
    page = (STATIC / "demo.html").read_text(encoding="utf-8")
    replacements = {
        "{{brand_name}}": html.escape(settings.display_name),
        "{{brand}}": html.escape(settings.brand, quote=True),
        "{{key}}": html.escape(keys[0], quote=True),
        "{{products}}": products or "<li>Our products</li>",
        "{{color}}": html.escape(settings.widget.color, quote=True),
    }
    for marker, value in replacements.items():
        page = page.replace(marker, value)
    return HTMLResponse(page)
