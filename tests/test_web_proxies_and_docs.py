"""The app as any server runs it (`create_app`): the client address behind a load balancer,
and API docs that work with no internet."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Route

from gigcx.app import GigCX
from gigcx.connectors.web import create_app
from tests.helpers.live_server import live_server

KEY = "kestrel-demo-widget-key"
BALANCER = "10.0.0.5"
STRANGER = "10.0.0.9"


def app_behind(runtime: GigCX, client: str) -> httpx.AsyncClient:
    """The app with web.trusted_proxies = [BALANCER] and 2 requests a minute per address,
    reached from `client` (the address the server would see on the socket)."""
    web = runtime.settings.web.model_copy(
        update={"trusted_proxies": [BALANCER], "messages_per_minute_per_ip": 2}
    )
    settings = runtime.settings.model_copy(update={"web": web})
    transport = httpx.ASGITransport(app=create_app(settings, runtime), client=(client, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def start_chat_for(http: httpx.AsyncClient, forwarded_for: str) -> int:
    response = await http.post(
        "/v1/brands/kestrel/conversations",
        json={"widget_key": KEY},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return response.status_code


async def test_behind_a_trusted_balancer_each_customer_has_their_own_limit(gigcx_runtime: GigCX):
    async with app_behind(gigcx_runtime, BALANCER) as http:
        first_customer = [await start_chat_for(http, "203.0.113.7") for _ in range(3)]
        assert first_customer == [201, 201, 429]
        # Another customer through the same balancer is not held back by the first.
        assert await start_chat_for(http, "198.51.100.23") == 201
        # A client's own forged entry before the real one changes nothing: the balancer's
        # entry (the last one) names the customer.
        assert await start_chat_for(http, "192.0.2.1, 203.0.113.7") == 429


async def test_an_untrusted_client_cannot_dodge_the_limit_with_x_forwarded_for(
    gigcx_runtime: GigCX,
):
    async with app_behind(gigcx_runtime, STRANGER) as http:
        codes = [await start_chat_for(http, f"203.0.113.{n}") for n in range(3)]
        assert codes == [201, 201, 429]


@pytest.fixture
async def docs_client(gigcx_runtime: GigCX) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(gigcx_runtime.settings, gigcx_runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_api_docs_load_every_asset_from_the_server_itself(
    docs_client: httpx.AsyncClient, page: str
):
    html = (await docs_client.get(page)).text
    assets = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
    assert any(asset.endswith(".js") for asset in assets), html
    for asset in assets:
        assert not urlsplit(asset).netloc, f"{page} loads {asset} from another host"
        response = await docs_client.get(asset)
        assert response.status_code == 200, asset


async def test_swagger_ui_shows_the_api_in_a_browser_with_no_internet(
    brand_settings, browser: Browser
):
    """Chromium with every request to another host refused, as on a machine offline."""
    async with live_server(brand_settings) as server:
        page = await browser.new_page()
        elsewhere: list[str] = []

        async def offline(route: Route) -> None:
            if urlsplit(route.request.url).netloc == server.address:
                await route.continue_()
            else:
                elsewhere.append(route.request.url)
                await route.abort("internetdisconnected")

        await page.route("**/*", offline)
        await page.goto(f"{server.url}/docs")
        title = page.locator(".swagger-ui .info .title")
        await title.wait_for(timeout=15_000)
        assert "gigcx chat API" in await title.inner_text()
        assert await page.locator(".opblock-summary-path").count() > 5
        assert elsewhere == []
        await page.close()
