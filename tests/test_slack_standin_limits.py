"""The Slack stand-in's rate limits, direct messages and first-seen records, as a real
slack_sdk client sees them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.helpers.slack_server import SlackAPIServer, SlackRateLimits, dm_channel


@pytest.fixture
def slack() -> Iterator[SlackAPIServer]:
    with SlackAPIServer(limits=SlackRateLimits()) as server:
        yield server


def client_of(server: SlackAPIServer) -> AsyncWebClient:
    """A real Slack client pointed at the stand-in, without slack_sdk's own retries."""
    return AsyncWebClient(token="xoxb-test", base_url=server.api_url, retry_handlers=[])


async def refused(call: Any) -> SlackApiError:
    """The SlackApiError a call raises (failing the test when it goes through)."""
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


def retry_after(error: SlackApiError) -> int:
    """The Retry-After seconds of a 429 answer."""
    assert error.response.status_code == 429
    assert error.response["error"] == "ratelimited"
    return int(error.response.headers["Retry-After"])


async def test_three_posts_to_a_channel_then_429_other_channels_still_open(
    slack: SlackAPIServer,
) -> None:
    client = client_of(slack)
    for n in range(3):
        answer = await client.chat_postMessage(channel="C0EXPERTS", text=f"post {n}")
        assert answer["ok"]
    error = await refused(client.chat_postMessage(channel="C0EXPERTS", text="one too many"))
    assert retry_after(error) >= 1
    assert (await client.chat_postMessage(channel="C0STAFF", text="elsewhere"))["ok"]

    assert [body["text"] for body in slack.posted("chat.postMessage")] == [
        "post 0",
        "post 1",
        "post 2",
        "elsewhere",
    ]  # the refused post was not acted on
    assert len(slack.cards("C0EXPERTS")) == 3
    assert [call.scope for call in slack.rate_limited] == [("chat.postMessage", "C0EXPERTS")]
    assert slack.violations == []
    assert slack.method_counts() == {"chat.postMessage": 4}


async def test_the_workspace_post_limit_spans_channels() -> None:
    limits = SlackRateLimits(post_workspace_per_minute=60)  # a bucket of 6, one a second
    with SlackAPIServer(limits=limits) as slack:
        client = client_of(slack)
        for n in range(6):
            assert (await client.chat_postMessage(channel=f"C{n}", text="hi"))["ok"]
        error = await refused(client.chat_postMessage(channel="C6", text="hi"))
        assert retry_after(error) >= 1
        assert [call.scope for call in slack.rate_limited] == [("chat.postMessage", "*")]
        # Every channel is now inside the workspace's Retry-After: another post breaks it.
        await refused(client.chat_postMessage(channel="C0", text="hi"))
        assert [call.channel for call in slack.violations] == ["C0"]


async def test_chat_update_is_limited_per_method_workspace_wide() -> None:
    limits = SlackRateLimits(tier_per_minute={3: 30.0})  # a bucket of 3, one per 2 s
    with SlackAPIServer(limits=limits) as slack:
        client = client_of(slack)
        posted = await client.chat_postMessage(channel="C0EXPERTS", text="card")
        for n in range(3):
            answer = await client.chat_update(channel="C0EXPERTS", ts=posted["ts"], text=f"{n}")
            assert answer["ok"]
        error = await refused(client.chat_update(channel="C0EXPERTS", ts=posted["ts"], text="x"))
        assert retry_after(error) == 2
        assert slack.rate_limited[-1].scope == ("chat.update", "*")
        # Another tier 3 method has its own bucket, and posting is not a tier method.
        assert (await client.chat_delete(channel="C0EXPERTS", ts=posted["ts"]))["ok"]
        assert (await client.chat_postMessage(channel="C0STAFF", text="still"))["ok"]
        assert slack.method_counts() == {"chat.postMessage": 2, "chat.update": 3, "chat.delete": 1}


async def test_calling_inside_retry_after_is_a_violation_and_waiting_it_out_is_not() -> None:
    limits = SlackRateLimits(post_per_channel_per_second=2.0)  # a token back within 0.5 s
    with SlackAPIServer(limits=limits) as slack:
        client = client_of(slack)
        for _ in range(3):
            await client.chat_postMessage(channel="C0EXPERTS", text="hi")
        wait = retry_after(await refused(client.chat_postMessage(channel="C0EXPERTS", text="x")))
        assert wait == 1
        assert slack.violations == []

        again = await refused(client.chat_postMessage(channel="C0EXPERTS", text="x"))
        assert retry_after(again) == 1
        assert len(slack.violations) == 1
        assert slack.violations[0].scope == ("chat.postMessage", "C0EXPERTS")

        await asyncio.sleep(wait + 0.2)
        assert (await client.chat_postMessage(channel="C0EXPERTS", text="waited"))["ok"]
        assert len(slack.violations) == 1
        assert len(slack.rate_limited) == 2


async def test_a_post_to_a_user_goes_to_their_dm_with_its_own_budget(
    slack: SlackAPIServer,
) -> None:
    client = client_of(slack)
    assert dm_channel("U123") == "D123"
    for _ in range(2):
        answer = await client.chat_postMessage(channel="U123", text="hello")
        assert answer["channel"] == "D123"
    assert (await client.chat_postMessage(channel="D123", text="direct"))["channel"] == "D123"
    await refused(client.chat_postMessage(channel="U123", text="one too many"))
    assert slack.rate_limited[-1].scope == ("chat.postMessage", "D123")
    # Other conversations have their own budgets.
    assert (await client.chat_postMessage(channel="U456", text="hi"))["channel"] == "D456"
    assert (await client.chat_postMessage(channel="C0EXPERTS", text="hi"))["ok"]
    assert [m["text"] for m in slack.cards("D123")] == ["hello", "hello", "direct"]


def card(handoff_id: str, *, closed: bool = False) -> list[dict[str, Any]]:
    """A handoff card's blocks: a claim button, or a close button once claimed, and a
    select of priorities."""
    action = f"close:{handoff_id}" if closed else f"claim:{handoff_id}"
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": "A customer needs help"}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Go"},
                    "action_id": "go",
                    "value": action,
                },
                {
                    "type": "static_select",
                    "action_id": "priority",
                    "options": [
                        {"text": {"type": "plain_text", "text": p}, "value": f"{p}:{handoff_id}"}
                        for p in ("low", "high")
                    ],
                },
            ],
        },
    ]


async def test_first_seen_records_the_values_of_posted_and_updated_cards(
    slack: SlackAPIServer,
) -> None:
    client = client_of(slack)
    metadata = {"event_type": "handoff", "event_payload": {"handoff_id": "h1"}}
    posted = await client.chat_postMessage(
        channel="C0EXPERTS", text="card", blocks=card("h1"), metadata=metadata
    )
    assert set(slack.first_seen) == {"claim:h1", "low:h1", "high:h1", "h1"}
    assert set(slack.seen_in.values()) == {"C0EXPERTS"}
    before = dict(slack.first_seen)

    await client.chat_update(
        channel="C0EXPERTS", ts=posted["ts"], text="claimed", blocks=card("h1", closed=True)
    )
    assert slack.first_seen["close:h1"] >= before["claim:h1"]
    assert {k: slack.first_seen[k] for k in before} == before  # first sightings stay

    # A form-encoded call sends the blocks as JSON text; a DM is seen in its D channel.
    await client.api_call(
        "chat.postMessage", data={"channel": "U9", "text": "t", "blocks": json.dumps(card("h2"))}
    )
    assert slack.seen_in["claim:h2"] == "D9"


async def test_without_limits_every_call_is_answered_at_once() -> None:
    with SlackAPIServer() as slack:
        client = client_of(slack)
        for n in range(50):
            assert (await client.chat_postMessage(channel="C0EXPERTS", text=f"{n}"))["ok"]
        assert slack.rate_limited == []
        assert slack.method_counts() == {"chat.postMessage": 50}

        # Limits switched on later start with full buckets.
        slack.limits = SlackRateLimits()
        for _ in range(3):
            await client.chat_postMessage(channel="C0EXPERTS", text="limited now")
        await refused(client.chat_postMessage(channel="C0EXPERTS", text="x"))
        slack.limits = None
        assert (await client.chat_postMessage(channel="C0EXPERTS", text="free again"))["ok"]


async def test_the_scripted_ratelimited_failure_still_works(slack: SlackAPIServer) -> None:
    slack.failures["chat.postMessage"] = "ratelimited"
    slack.retry_after = 7
    error = await refused(client_of(slack).chat_postMessage(channel="C0EXPERTS", text="x"))
    assert retry_after(error) == 7
    assert slack.rate_limited == []  # scripted, not the limits'
