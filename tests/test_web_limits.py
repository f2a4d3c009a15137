"""What the chat API refuses, and that a refused request stores nothing: bodies over the size
limit, text the store cannot keep, reserved or oversized customer attributes, an e-mail
address when nobody is waited for, and too many calls a minute (person button, e-mail
address, wrong console tokens)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy import text

from gigcx.app import GigCX, start
from gigcx.config import Settings, StoreSettings
from gigcx.connectors.web import create_app
from tests.conftest import REPO

KEY = "kestrel-demo-widget-key"
CONSOLE_TOKEN = "a-console-token-of-this-test"


def client_for(runtime: GigCX, address: str = "127.0.0.1", **web: Any) -> httpx.AsyncClient:
    """A client of the app with `web` settings changed, calling from `address`."""
    changed = runtime.settings.web.model_copy(update=web)
    runtime.settings = runtime.settings.model_copy(update={"web": changed})
    app = create_app(runtime.settings, runtime)
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(gigcx_runtime: GigCX) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(gigcx_runtime) as client:
        yield client


@pytest.fixture
async def runtime_on_each_store(brand_settings: Settings, store_url: str) -> AsyncIterator[GigCX]:
    """The example brand on SQLite and on PostgreSQL."""
    runtime = await start(brand_settings.model_copy(update={"store": StoreSettings(url=store_url)}))
    yield runtime
    await runtime.close()


def raw_json(body: dict[str, Any]) -> bytes:
    """JSON as a hostile client sends it: a lone surrogate goes out as a `\\ud800` escape."""
    return json.dumps(body).encode()


async def post_raw(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post(
        path, content=raw_json(body), headers={"Content-Type": "application/json", **headers}
    )


async def start_chat(client: httpx.AsyncClient, **extra: Any) -> tuple[str, dict[str, str]]:
    response = await client.post(
        "/v1/brands/kestrel/conversations", json={"widget_key": KEY, **extra}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    return created["conversation_id"], {"Authorization": f"Bearer {created['token']}"}


async def count(runtime: GigCX, table: str) -> int:
    async with runtime.store.engine.connect() as connection:
        return int(await connection.scalar(text(f"select count(*) from {table}")) or 0)


# 1. Size limits


async def test_a_body_declared_over_the_limit_is_refused_unread(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    # 150 MB announced to a conversation that does not exist, with no token: the server
    # answers from the headers alone; the few bytes actually sent are never parsed.
    response = await client.post(
        "/v1/conversations/nope/messages",
        content=b'{"text": "hi"}',
        headers={"Content-Type": "application/json", "Content-Length": str(150 * 2**20)},
    )
    assert response.status_code == 413
    assert response.json()["detail"] == "request body too large: at most 262144 bytes"
    created = await client.post(
        "/v1/brands/kestrel/conversations",
        content=raw_json({"widget_key": KEY}),
        headers={"Content-Type": "application/json", "Content-Length": str(2**30)},
    )
    assert created.status_code == 413
    assert await count(gigcx_runtime, "conversations") == 0


async def test_a_streamed_body_is_cut_off_at_the_limit(gigcx_runtime: GigCX):
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"widget_key": "' + KEY.encode() + b'", "attributes": {"note": "'
        for _ in range(1000):  # 64 MB if it were all read
            sent += 1
            yield b"x" * 65536

    async with client_for(gigcx_runtime, max_body_bytes=100_000) as client:
        response = await client.post(
            "/v1/brands/kestrel/conversations",
            content=endless(),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["detail"] == "request body too large: at most 100000 bytes"
    assert sent <= 2  # read up to the limit, then no further
    assert await count(gigcx_runtime, "conversations") == 0


@pytest.mark.parametrize(
    ("attributes", "words"),
    [
        ({f"a{n}": "x" for n in range(21)}, "attributes: at most 20 attributes (got 21)"),
        ({"note": "x" * 1001}, "attributes.note: must be at most 1000 characters (got 1001)"),
        ({"n" * 65: "x"}, "attributes: a name must be 1 to 64 letters, digits"),
        ({"<!channel>": "x"}, "attributes: a name must be 1 to 64 letters, digits"),
    ],
)
async def test_attributes_over_the_limits_get_422_naming_them_and_nothing_is_stored(
    client: httpx.AsyncClient, gigcx_runtime: GigCX, attributes: dict[str, str], words: str
):
    response = await client.post(
        "/v1/brands/kestrel/conversations", json={"widget_key": KEY, "attributes": attributes}
    )
    assert response.status_code == 422
    assert words in response.json()["detail"]
    assert await count(gigcx_runtime, "conversations") == 0


async def test_the_attribute_limits_are_settings(gigcx_runtime: GigCX):
    async with client_for(gigcx_runtime, max_attributes=2, max_attribute_chars=5) as client:
        many = await client.post(
            "/v1/brands/kestrel/conversations",
            json={"widget_key": KEY, "attributes": {"a": 1, "b": 2, "c": 3}},
        )
        long = await client.post(
            "/v1/brands/kestrel/conversations",
            json={"widget_key": KEY, "attributes": {"plan": "golden"}},
        )
        fits = await client.post(
            "/v1/brands/kestrel/conversations",
            json={"widget_key": KEY, "attributes": {"plan": "gold", "vip": True}},
        )
    assert "attributes: at most 2 attributes (got 3)" in many.json()["detail"]
    assert "attributes.plan: must be at most 5 characters (got 6)" in long.json()["detail"]
    assert fits.status_code == 201


# 2. Text the store cannot keep


@pytest.mark.parametrize(
    ("bad", "what"), [("\x00", "a NUL character"), ("\ud800", "a lone surrogate")]
)
async def test_nul_and_lone_surrogates_get_422_naming_the_field_and_nothing_is_stored(
    runtime_on_each_store: GigCX, bad: str, what: str
):
    runtime = runtime_on_each_store
    async with client_for(runtime) as client:
        for body, words in [
            ({"attributes": {"name": f"Jo{bad}"}}, f"attributes.name: must not contain {what}"),
            ({"attributes": {f"na{bad}me": "Jo"}}, "attributes: a name must be 1 to 64 letters"),
            ({"user_id": f"u{bad}1"}, f"user_id: must not contain {what}"),
        ]:
            refused = await post_raw(
                client, "/v1/brands/kestrel/conversations", {"widget_key": KEY, **body}
            )
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"].startswith(words)
        assert await count(runtime, "conversations") == 0

        cid, auth = await start_chat(client)
        await client.post(f"/v1/conversations/{cid}/handoff", headers=auth)
        before = await runtime.store.messages_after(cid)
        message = await post_raw(
            client, f"/v1/conversations/{cid}/messages", {"text": f"hi {bad} there"}, **auth
        )
        assert message.status_code == 422, message.text
        assert message.json()["detail"] == f"text: must not contain {what}"
        contact = await post_raw(
            client, f"/v1/conversations/{cid}/contact", {"email": f"jo{bad}@example.com"}, **auth
        )
        assert contact.status_code == 422, contact.text
        assert contact.json()["detail"] == f"email: must not contain {what}"
        assert [m.text for m in await runtime.store.messages_after(cid)] == [m.text for m in before]
        conversation = await runtime.store.get_conversation(cid)
        assert "contact_email" not in conversation.customer_attributes


@pytest.mark.parametrize(
    ("bad", "what"), [("\x00", "a NUL character"), ("\ud800", "a lone surrogate")]
)
async def test_a_widget_key_or_user_hash_the_store_cannot_keep_gets_422_not_a_server_error(
    runtime_on_each_store: GigCX, bad: str, what: str
):
    # What an attacker sent to the running server: `{"widget_key": "\ud800"}` was a 500.
    runtime = runtime_on_each_store
    async with client_for(runtime) as client:
        for body, words in [
            ({"widget_key": bad}, f"widget_key: must not contain {what}"),
            ({"widget_key": f"{KEY}{bad}"}, f"widget_key: must not contain {what}"),
            (
                {"widget_key": KEY, "user_id": "u1", "user_hash": f"ab{bad}"},
                f"user_hash: must not contain {what}",
            ),
        ]:
            refused = await post_raw(client, "/v1/brands/kestrel/conversations", body)
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"] == words
        assert await count(runtime, "conversations") == 0


async def test_a_nul_in_a_url_or_a_header_gets_422_naming_where_it_was(gigcx_runtime: GigCX):
    # A lone surrogate cannot travel in a URL or a header (servers read a percent-escape
    # that is not UTF-8 as U+FFFD, and headers as Latin-1); a NUL character can.
    async with client_for(gigcx_runtime, console_token=SecretStr(CONSOLE_TOKEN)) as client:
        cid, auth = await start_chat(client)
        console = {"X-Console-Token": CONSOLE_TOKEN}
        claim = {"expert_id": "alex"}
        for method, path, headers, body, words in [
            ("GET", "/v1/brands/kes%00trel/widget?key=k", {}, None, "path.brand"),
            ("GET", f"/v1/brands/kestrel/widget?key={KEY}%00", {}, None, "query.key"),
            ("POST", "/v1/brands/k%00/conversations", {}, {"widget_key": KEY}, "path.brand"),
            ("GET", f"/v1/conversations/{cid}%00", auth, None, "path.conversation_id"),
            ("POST", f"/v1/conversations/%00{cid}/handoff", auth, None, "path.conversation_id"),
            (
                "GET",
                f"/v1/conversations/{cid}",
                {"Authorization": auth["Authorization"] + "\x00"},
                None,
                "header.authorization",
            ),
            (
                "POST",
                "/v1/brands/kestrel/conversations",
                {"Origin": "https://shop\x00.example"},
                {"widget_key": KEY},
                "header.origin",
            ),
            ("POST", "/v1/console/handoffs/%00/claim", console, claim, "path.handoff_id"),
            ("POST", "/v1/console/handoffs/h1/re%00lease", console, claim, "path.action"),
            (
                "GET",
                "/v1/console/handoffs",
                {"X-Console-Token": CONSOLE_TOKEN + "\x00"},
                None,
                "header.x-console-token",
            ),
        ]:
            response = await client.request(method, path, headers=headers, json=body)
            assert response.status_code == 422, (path, response.text)
            assert response.json()["detail"] == f"{words}: must not contain a NUL character"
        assert await count(gigcx_runtime, "conversations") == 1


# 3. The person button and the e-mail address


async def test_an_email_address_is_taken_only_while_the_customer_waits_for_a_person(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    cid, auth = await start_chat(client)
    early = await client.post(
        f"/v1/conversations/{cid}/contact", json={"email": "jo@example.com"}, headers=auth
    )
    assert early.status_code == 409
    assert early.json()["detail"] == (
        "an e-mail address is taken only while the conversation waits for a person "
        "(this one is with the bot)"
    )
    conversation = await gigcx_runtime.store.get_conversation(cid)
    assert "contact_email" not in conversation.customer_attributes
    assert await gigcx_runtime.store.messages_after(cid) == []
    await client.post(f"/v1/conversations/{cid}/handoff", headers=auth)
    waiting = await client.post(
        f"/v1/conversations/{cid}/contact", json={"email": "jo@example.com"}, headers=auth
    )
    assert waiting.status_code == 201


async def test_the_person_button_and_the_email_address_are_limited_per_minute(
    gigcx_runtime: GigCX,
):
    async with client_for(gigcx_runtime, handoff_calls_per_minute_per_conversation=3) as client:
        cid, auth = await start_chat(client)
        for _ in range(2):
            pressed = await client.post(f"/v1/conversations/{cid}/handoff", headers=auth)
            assert pressed.status_code == 200
        left = await client.post(
            f"/v1/conversations/{cid}/contact", json={"email": "jo@example.com"}, headers=auth
        )
        assert left.status_code == 201
        stored = await gigcx_runtime.store.messages_after(cid)
        for path, body in [("contact", {"email": "jo@example.com"}), ("handoff", None)]:
            limited = await client.post(f"/v1/conversations/{cid}/{path}", json=body, headers=auth)
            assert limited.status_code == 429
            assert limited.json()["detail"].startswith(
                "too many calls for a person or an e-mail address in this conversation "
                "(limit 3 a minute)"
            )
            assert int(limited.headers["Retry-After"]) >= 1
        assert len(await gigcx_runtime.store.messages_after(cid)) == len(stored)


async def test_the_person_button_counts_against_the_per_address_limit(gigcx_runtime: GigCX):
    async with client_for(gigcx_runtime, messages_per_minute_per_ip=3) as client:
        cid, auth = await start_chat(client)  # 1 of 3
        await client.post(f"/v1/conversations/{cid}/handoff", headers=auth)  # 2 of 3
        await client.post(f"/v1/conversations/{cid}/handoff", headers=auth)  # 3 of 3
        limited = await client.post(f"/v1/conversations/{cid}/handoff", headers=auth)
    assert limited.status_code == 429
    assert "from this address" in limited.json()["detail"]


# 4. The console token


async def test_wrong_console_tokens_are_limited_per_address_even_when_one_is_right(
    gigcx_runtime: GigCX,
):
    limits: dict[str, Any] = {
        "console_token": SecretStr(CONSOLE_TOKEN),
        "console_failures_per_minute_per_ip": 3,
    }
    async with client_for(gigcx_runtime, "203.0.113.5", **limits) as guesser:
        for guess in ("kestrel", "demo", "console"):
            wrong = await guesser.get("/v1/console/handoffs", headers={"X-Console-Token": guess})
            assert wrong.status_code == 401
        for token in ("secret", CONSOLE_TOKEN):
            limited = await guesser.get("/v1/console/handoffs", headers={"X-Console-Token": token})
            assert limited.status_code == 429
            assert limited.json()["detail"].startswith(
                "too many wrong console tokens from this address (limit 3 a minute)"
            )
            assert int(limited.headers["Retry-After"]) >= 1
    async with client_for(gigcx_runtime, "198.51.100.8", **limits) as expert:
        for _ in range(5):  # the right token is never counted: the console polls
            right = await expert.get(
                "/v1/console/handoffs", headers={"X-Console-Token": CONSOLE_TOKEN}
            )
            assert right.status_code == 200


def test_no_example_brand_ships_a_console_token():
    # `make demo` runs `gigcx serve --console`, which makes one for the run (see test_cli_chat).
    for config in sorted((REPO / "examples").glob("*/gigcx.yaml")):
        web = yaml.safe_load(config.read_text()).get("web") or {}
        assert web.get("console_token") is None, config


# 5. Reserved attribute names


@pytest.mark.parametrize(
    "name", ["verified", "Verified", "USER_ID", "customer-id", "contact_email", "is_verified"]
)
async def test_reserved_attribute_names_get_422_naming_the_attribute(
    client: httpx.AsyncClient, gigcx_runtime: GigCX, name: str
):
    response = await client.post(
        "/v1/brands/kestrel/conversations",
        json={"widget_key": KEY, "attributes": {"plan": "gold", name: True}},
    )
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"attributes.{name}: is a reserved name (the server sets it); use another name"
    )
    assert await count(gigcx_runtime, "conversations") == 0
