"""What reaches the experts' Slack from outside: nothing a customer types pings anyone, plants
a disguised link or forges a line on the card, and personal data arrives masked."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.helpers.live_server import LiveServer
from tests.helpers.slack_server import SlackAPIServer
from tests.test_slack import ALEX, KEY, click, escalate, server, slack  # noqa: F401

HOSTILE = (
    "<!channel> <!here> <@U0BOSS99> reset your password here: "
    "<https://evil.example/login|https://kestrel.example/reset> & thanks"
)
PERSONAL = (
    "card 4111 1111 1111 1111, mail bob.smith@example.com, call 07700 900123, "
    "IBAN GB82 WEST 1234 5698 7654 32 or DE89 3704 0044 0532 0130 00"
)


def sent_texts(card: dict[str, Any]) -> str:
    return card["text"] + json.dumps(card.get("blocks", []), ensure_ascii=False)


async def claim_first(
    http: httpx.AsyncClient, server: LiveServer, slack: SlackAPIServer, cid: str
) -> list[dict[str, Any]]:
    handoff = await server.runtime.store.open_handoff_for(cid)
    assert handoff is not None
    await click(http, slack, "claim", handoff.id, ALEX)
    return await slack.wait_for("chat.postMessage", 2)  # the card, then the transcript


async def test_what_a_customer_types_pings_nobody_and_links_nowhere_in_slack(
    server: LiveServer, slack: SlackAPIServer
):
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, f"can I talk to a person? {HOSTILE}")
        card, transcript = await claim_first(http, server, slack, cid)
        await http.post(f"/v1/conversations/{cid}/messages", json={"text": HOSTILE}, headers=auth)
        relayed = (await slack.wait_for("chat.postMessage", 3))[2]
    for sent in (sent_texts(card), transcript["text"], relayed["text"]):
        for live in ("<!channel>", "<!here>", "<@U0BOSS99>", "<https://evil.example"):
            assert live not in sent
    # The expert reads what the customer typed, as typed.
    assert "&lt;!channel&gt; &lt;!here&gt; &lt;@U0BOSS99&gt;" in relayed["text"]
    assert "&lt;https://evil.example/login|https://kestrel.example/reset&gt; &amp; thanks" in (
        relayed["text"]
    )


async def test_personal_data_reaches_slack_masked_in_the_card_the_transcript_and_the_thread(
    server: LiveServer, slack: SlackAPIServer
):
    # The first question is longer than the summary's quote: masking comes before the cut.
    first = "can I talk to a person? " + "my X2 stopped charging last week " * 5 + PERSONAL
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, first)
        card, transcript = await claim_first(http, server, slack, cid)
        await http.post(f"/v1/conversations/{cid}/messages", json={"text": PERSONAL}, headers=auth)
        relayed = (await slack.wait_for("chat.postMessage", 3))[2]
    for sent in (sent_texts(card), transcript["text"], relayed["text"]):
        for secret in ("4111", "bob.smith", "900123", "5698 7654", "WEST", "0532 0130"):
            assert secret not in sent, (secret, sent)
    assert relayed["text"] == (
        "*Customer:* card [card number], mail [e-mail], call [phone number], "
        "IBAN [IBAN] or [IBAN]"
    )


async def test_the_card_names_the_customer_from_the_verified_identity_only(
    server: LiveServer, slack: SlackAPIServer
):
    forged = "\n*Verified customer* :white_check_mark:\n"
    async with httpx.AsyncClient(base_url=server.url) as http:
        created = await http.post(
            "/v1/brands/kestrel/conversations",
            json={"widget_key": KEY, "attributes": {forged: "yes", "name": "Jo (CEO)"}},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        await http.post(
            f"/v1/conversations/{body['conversation_id']}/messages",
            json={"text": "can I talk to a person?"},
            headers={"Authorization": f"Bearer {body['token']}"},
        )
        [card] = await slack.wait_for("chat.postMessage", 1)
    sections = [
        block["text"]["text"] for block in card["blocks"] if block.get("type") == "section"
    ]
    assert "*Customer:* not signed in (anonymous)" in sections
    [given] = [s for s in sections if s.startswith("*Given by the customer* (not checked):")]
    assert "*Verified customer* :white_check_mark:: yes" in given and "Jo (CEO)" in given
    # The forged key cannot start a line of its own.
    lines = [line.strip() for section in sections for line in section.splitlines()]
    assert "*Verified customer* :white_check_mark:" not in lines
