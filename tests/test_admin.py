"""/admin over HTTP, as the brand team's browser (and a script) meets it: off until a token is
set, the login and its limit, a signed cookie that any worker accepts, CSRF on every form,
and the headers that keep the pages out of frames, caches and referrers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from gigcx.app import GigCX, start
from gigcx.config import Settings, StoreSettings
from gigcx.connectors.web import create_app
from gigcx.connectors.web.admin import SESSION_COOKIE, new_session, session_valid
from gigcx.store.models import utcnow
from tests.helpers.admin import ADMIN_TOKEN, csrf_of, seed_history, sign_in, with_admin
from tests.helpers.experts import ALEX, register_experts
from tests.test_report import decision

XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
PAGES = ("/admin", "/admin/experts", "/admin/gaps", "/admin/conversations", "/admin/drafts")


def client_for(runtime: GigCX, token: str | None = ADMIN_TOKEN) -> httpx.AsyncClient:
    runtime.settings = with_admin(runtime.settings, token)
    app = create_app(runtime.settings, runtime)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def client(gigcx_runtime: GigCX) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(gigcx_runtime) as client:
        yield client


async def test_admin_is_off_until_a_token_is_set(gigcx_runtime: GigCX):
    async with client_for(gigcx_runtime, None) as client:
        for path in (*PAGES, "/admin/login"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert "admin is off: set web.admin_token" in response.text
        refused = await client.post("/admin/login", data={"token": "anything-at-all-here"})
        assert refused.status_code == 404
        # Not even the console's or the widget's credentials open it.
        bearer = await client.get(
            "/admin", headers={"Authorization": "Bearer kestrel-demo-widget-key"}
        )
        assert bearer.status_code == 404


async def test_every_page_sends_a_stranger_to_the_login_form(client: httpx.AsyncClient):
    for path in PAGES:
        response = await client.get(path + "?days=7")
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login?next=")
    login = await client.get("/admin/login?next=/admin/experts")
    assert login.status_code == 200
    assert 'type="password"' in login.text and 'name="token"' in login.text
    assert ADMIN_TOKEN not in login.text


async def test_a_wrong_token_is_refused_and_the_right_one_signs_in(client: httpx.AsyncClient):
    wrong = await sign_in(client, "not-the-admin-token-at-all")
    assert wrong.status_code == 401
    assert "That token is not right" in wrong.text
    assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
    right = await sign_in(client)
    assert right.status_code == 303 and right.headers["location"] == "/admin"
    cookie = right.headers["set-cookie"]
    for attribute in ("HttpOnly", "Path=/admin", "SameSite=strict", "Max-Age="):
        assert attribute.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # plain http here; https would add Secure
    assert ADMIN_TOKEN not in cookie
    for path in PAGES:
        page = await client.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        assert "Sign out" in page.text


async def test_scripts_may_send_the_token_as_a_bearer_and_a_wrong_one_is_401(
    client: httpx.AsyncClient,
):
    ok = await client.get("/admin", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200 and "Conversations" in ok.text
    wrong = await client.get("/admin", headers={"Authorization": "Bearer console-secret"})
    assert wrong.status_code == 401


async def test_an_address_guessing_tokens_must_wait_even_with_the_right_one(
    client: httpx.AsyncClient,
):
    for _ in range(10):  # web.admin_failures_per_minute_per_ip
        assert (await sign_in(client, "guess-guess-guess-guess")).status_code == 401
    limited = await sign_in(client, "guess-guess-guess-guess")
    assert limited.status_code == 429
    assert "try again in" in limited.text and int(limited.headers["retry-after"]) > 0
    assert (await sign_in(client)).status_code == 429
    bearer = await client.get("/admin", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert bearer.status_code == 429


async def test_the_session_is_signed_expires_and_dies_with_the_token(gigcx_runtime: GigCX):
    session = new_session(ADMIN_TOKEN)
    assert session_valid(ADMIN_TOKEN, session)
    assert not session_valid("another-admin-token-rotated", session)
    assert not session_valid(ADMIN_TOKEN, session[:-1] + ("0" if session[-1] != "0" else "1"))
    assert not session_valid(ADMIN_TOKEN, new_session(ADMIN_TOKEN, now=0))  # long expired
    expires, nonce, signature = session.split(".")
    forged = f"{int(expires) + 10**6}.{nonce}.{signature}"
    assert not session_valid(ADMIN_TOKEN, forged)
    # A cookie made by one worker works in another (nothing is kept in a process).
    async with client_for(gigcx_runtime) as other:
        cookie = {"Cookie": f"{SESSION_COOKIE}={session}"}
        assert (await other.get("/admin", headers=cookie)).status_code == 200
    # Rotating the token signs everyone out.
    async with client_for(gigcx_runtime, "a-brand-new-admin-token-0001") as rotated:
        assert (await rotated.get("/admin", headers=cookie)).status_code == 303


async def test_forms_need_the_sessions_csrf_token(client: httpx.AsyncClient):
    await sign_in(client)
    page = (await client.get("/admin")).text
    token = csrf_of(page)
    for data in ({}, {"csrf": "0" * 64}):
        refused = await client.post("/admin/logout", data=data)
        assert refused.status_code == 403, data
        assert "security token" in refused.text
    assert (await client.get("/admin")).status_code == 200  # still signed in
    out = await client.post("/admin/logout", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/admin/login?signed_out=1"
    assert (await client.get("/admin")).status_code == 303
    # A draft's form is refused the same way.
    await sign_in(client)
    refused = await client.post("/admin/drafts/nope", data={"action": "reject"})
    assert refused.status_code == 403


async def test_every_admin_response_is_unframeable_uncached_and_script_free(
    client: httpx.AsyncClient,
):
    await sign_in(client)
    for path in (*PAGES, "/admin/login", "/admin?month=nope"):
        response = await client.get(path)
        headers = response.headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'none'" in csp, path
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert headers["referrer-policy"] == "no-referrer"
        assert "<script" not in response.text.lower(), path


async def test_a_bad_period_or_filter_gets_a_page_naming_the_value(client: httpx.AsyncClient):
    await sign_in(client)
    for path, named in (
        ("/admin?month=2026-13", "'2026-13'"),
        ("/admin/experts?days=0", "days 0"),
        ("/admin/gaps?days=lots", "'lots'"),
        ("/admin/conversations?outcome=lost", "'lost'"),
        ("/admin/conversations?before=yesterday", "'yesterday'"),
        ("/admin/drafts?state=maybe", "'maybe'"),
    ):
        response = await client.get(path)
        assert response.status_code == 400, path
        assert named in response.text.replace("&#39;", "'"), (path, response.text)
    missing = await client.get("/admin/conversations/0123456789abcdef0123456789abcdef")
    assert missing.status_code == 404 and "There is no conversation" in missing.text


async def test_login_sends_back_only_inside_admin(client: httpx.AsyncClient):
    for next_page, lands in (
        ("/admin/gaps?days=7", "/admin/gaps?days=7"),
        ("https://evil.example/", "/admin"),
        ("//evil.example/admin", "/admin"),
    ):
        response = await client.post("/admin/login", data={"token": ADMIN_TOKEN, "next": next_page})
        assert response.headers["location"] == lands


async def test_the_pages_read_the_same_on_sqlite_and_postgresql_and_escape_customer_text(
    brand_settings: Settings, store_url: str
):
    """Each page over each database, signed in as a script (bearer): the numbers the store
    holds, and a customer's markup only ever as text."""
    settings = with_admin(brand_settings.model_copy(update={"store": StoreSettings(url=store_url)}))
    runtime = await start(settings)
    try:
        store = runtime.store
        await register_experts(runtime)
        made = await seed_history(store, days=6)
        stamp = (utcnow() - timedelta(seconds=1)).isoformat()
        conversation = await store.create_conversation("kestrel")
        await store.add_message(conversation.id, "customer", XSS)
        opened = await store.open_handoff(
            conversation.id,
            reason="expert_needed",
            route="expert",
            tags=[XSS],
            packet={
                "summary": f"Customer asked: {XSS}",
                "transcript": [{"seq": 1, "author": "customer", "text": XSS}],
            },
            notice="Passing you to a person.",
            notice_meta=decision("escalate", "expert_needed", "expert"),
            claim_timeout=timedelta(minutes=5),
        )
        assert opened is not None
        draft = await store.add_draft(
            brand="kestrel",
            handoff_id=opened[0].id,
            conversation_id=conversation.id,
            question=XSS,
            alternatives=[XSS],
            answer=XSS,
            product=None,
            tags=[],
            expert=ALEX,
        )
        app = create_app(settings, runtime)
        transport = httpx.ASGITransport(app=app)
        bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=bearer
        ) as client:
            home = await client.get("/admin?days=7")
            assert home.status_code == 200
            assert f'data-name="conversations">{made + 1}<' in home.text
            assert "The bot had no answer" in home.text and "Needs the customer" in home.text
            experts = await client.get("/admin/experts?days=7")
            assert "Alex Moreau" in experts.text and "EUR" in experts.text
            for path in (
                "/admin/conversations?outcome=escalated",
                f"/admin/conversations/{conversation.id}",
                "/admin/drafts",
                f"/admin/drafts/{draft.id}",
            ):
                page = await client.get(path)
                assert page.status_code == 200, (path, page.text[:300])
                assert ESCAPED in page.text, path
                assert XSS not in page.text and "<img" not in page.text, path
            since = (await client.get("/admin/conversations", params={"before": stamp})).text
            assert "← Newest" in since and ESCAPED not in since  # older than the markup
            elsewhere = await store.create_conversation("another-brand")
            assert (await client.get(f"/admin/conversations/{elsewhere.id}")).status_code == 404
    finally:
        await runtime.close()


async def test_over_https_the_session_cookie_is_secure(gigcx_runtime: GigCX):
    gigcx_runtime.settings = with_admin(gigcx_runtime.settings)
    app = create_app(gigcx_runtime.settings, gigcx_runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        signed = await sign_in(client)
        assert "; secure" in signed.headers["set-cookie"].lower()
        # A script's bearer token needs no CSRF token (no cookie rides along with it).
        bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        missing = await client.post("/admin/drafts/nope", data={"action": "reject"}, headers=bearer)
        assert missing.status_code == 404 and "There is no draft" in missing.text


def test_an_admin_token_that_is_short_or_reused_is_refused_naming_the_field():
    from gigcx.config import WebSettings

    for settings, says in (
        ({"admin_token": "too-short"}, "at least 16 characters"),
        ({"admin_token": "x" * 20, "console_token": "x" * 20}, "differ from web.console_token"),
        ({"admin_token": "k" * 20, "widget_keys": ["k" * 20]}, "differ from every key"),
    ):
        with pytest.raises(ValueError, match=says) as refused:
            WebSettings(**settings)
        assert "web.admin_token" in str(refused.value)
    assert WebSettings(admin_token=ADMIN_TOKEN).admin_token is not None
