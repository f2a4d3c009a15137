"""Several `gigcx serve` processes on one PostgreSQL, one Redis and one Chroma server, with
Slack's Web API stood in locally: messages cross workers exactly once, and a worker killed
with -9 loses nothing and leaves its timers to the survivor."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from gigcx.config import Settings, StoreSettings, load_settings
from gigcx.escalation.roster import sync_experts
from gigcx.knowledge import open_index, sync_knowledge
from gigcx.store import ConversationStore, create_engine, upgrade_database
from tests.helpers.chat_server import OpenAIChatServer, last_user_text
from tests.helpers.check_services import REDIS_URL
from tests.helpers.processes import ServerProcess, chroma_server, postgres_database
from tests.helpers.slack_requests import ALEX, JORDAN, KEY, SAMI, SECRET, click, thread_event
from tests.helpers.slack_server import SlackAPIServer

CONSOLE_TOKEN = "a-console-token-for-the-scale-out-test"


@pytest.fixture(scope="module")
def chroma_url(synced_brand: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Chroma server holding the example brand's knowledge (synced once for the module)."""
    with chroma_server(tmp_path_factory.mktemp("chroma")) as url:
        settings = load_settings(synced_brand / "gigcx.yaml", index={"url": url})
        sync_knowledge(settings.knowledge.path, open_index(settings))
        yield url


@dataclass
class Deployment:
    """What several hosts running one brand share, and how to start a worker on it."""

    config: Path
    env: dict[str, str]
    settings: Settings
    logs: Path
    slack: SlackAPIServer
    workers: list[ServerProcess] = field(default_factory=list)

    def worker(self, port: int | None = None, **extra_env: str) -> ServerProcess:
        number = len(self.workers)
        process = ServerProcess(
            self.config, {**self.env, **extra_env}, self.logs / f"worker-{number}.log", port=port
        )
        self.workers.append(process)
        return process.start()

    @contextlib.asynccontextmanager
    async def store(self) -> AsyncIterator[ConversationStore]:
        engine = create_engine(self.settings.store)
        try:
            yield ConversationStore(engine)
        finally:
            await engine.dispose()


@pytest.fixture
async def deployment(
    synced_brand: Path, chroma_url: str, tmp_path: Path
) -> AsyncIterator[Deployment]:
    with SlackAPIServer() as slack:
        async with postgres_database() as store_url:
            env = {
                "GIGCX_STORE__URL": store_url,
                "GIGCX_INDEX__URL": chroma_url,
                "GIGCX_REDIS__URL": REDIS_URL,
                "GIGCX_REDIS__NAMESPACE": f"gigcx-test-{uuid.uuid4().hex[:10]}",
                "GIGCX_SLACK__BOT_TOKEN": "xoxb-test",
                "GIGCX_SLACK__SIGNING_SECRET": SECRET,
                "GIGCX_SLACK__EXPERT_CHANNEL": "C0EXPERTS",
                "GIGCX_SLACK__STAFF_CHANNEL": "C0STAFF",
                "GIGCX_SLACK__API_URL": slack.api_url,
                # The stand-in here has no limits: a card per handoff, however many at once
                # (tests/test_slack_limits.py has the limits, boards and DMs).
                "GIGCX_SLACK__LIMITS__POSTS_PER_CHANNEL_PER_SECOND": "50",
                "GIGCX_SLACK__LIMITS__POSTS_PER_MINUTE": "10000",
                "GIGCX_SLACK__LIMITS__TIER3_PER_MINUTE": "10000",
                "GIGCX_WEB__MESSAGES_PER_MINUTE_PER_IP": "100000",
                "GIGCX_WEB__CONSOLE_TOKEN": CONSOLE_TOKEN,
                "GIGCX_WEB__MESSAGES_PER_MINUTE_PER_CONVERSATION": "100000",
                "GIGCX_ESCALATION__SWEEP_SECONDS": "0.5",
            }
            config = synced_brand / "gigcx.yaml"
            settings = load_settings(config, store=StoreSettings(url=store_url).model_dump())
            engine = create_engine(settings.store)
            await upgrade_database(engine)
            await sync_experts(
                ConversationStore(engine), "kestrel", settings.escalation.experts_file
            )
            await engine.dispose()
            deployment = Deployment(config, env, settings, tmp_path, slack)
            try:
                yield deployment
            finally:
                for worker in deployment.workers:
                    worker.stop()


class Customer:
    """A customer who writes through one worker and listens on a WebSocket to another,
    as a load balancer without sticky sessions may arrange."""

    def __init__(self, writes_to: ServerProcess, listens_to: ServerProcess) -> None:
        self.http = httpx.AsyncClient(base_url=writes_to.url, timeout=30)
        self.listens_to = listens_to
        self.pushed: list[dict[str, Any]] = []
        self._socket: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        created = await self.http.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})
        assert created.status_code == 201, created.text
        self.cid, token = created.json()["conversation_id"], created.json()["token"]
        self.auth = {"Authorization": f"Bearer {token}"}
        ws = self.listens_to.url.replace("http://", "ws://")
        self._socket = await websockets.connect(
            f"{ws}/v1/conversations/{self.cid}/ws",
            subprotocols=["gigcx.v1", f"token.{token}"],
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._socket:
            event = json.loads(raw)
            if event["type"] == "message.created":
                self.pushed.append(event["message"])

    async def say(self, text: str) -> dict[str, Any]:
        response = await self.http.post(
            f"/v1/conversations/{self.cid}/messages", json={"text": text}, headers=self.auth
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def wait_for_pushed(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not any(m["text"] == text for m in self.pushed):
            assert time.monotonic() < deadline, f"never pushed {text!r}: {self.pushed}"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._socket is not None:
            await self._socket.close()
        await self.http.aclose()


async def settle(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_two_workers_deliver_every_message_exactly_once_to_the_right_place(
    deployment: Deployment,
):
    a, b = deployment.worker(), deployment.worker()
    await asyncio.gather(a.ready(), b.ready())
    slack = deployment.slack
    customers = [Customer(*((a, b) if n % 2 else (b, a))) for n in range(5)]
    try:
        for customer in customers:
            await customer.start()
        for customer in customers:
            await customer.say(f"I want to talk to a person, this is customer {customer.cid}")

        # One card per handoff, although both workers heard of each.
        cards = await slack.wait_for("chat.postMessage", len(customers))
        await asyncio.sleep(1.0)
        cards = [c for c in slack.posted("chat.postMessage") if "thread_ts" not in c]
        assert len(cards) == len(customers)

        async with deployment.store() as store:
            handoffs = {c.cid: await store.open_handoff_for(c.cid) for c in customers}
            for n, customer in enumerate(customers):
                handoff = handoffs[customer.cid]
                assert handoff is not None
                # Slack's buttons and thread replies arrive at whichever worker.
                worker = (a, b)[n % 2]
                async with httpx.AsyncClient(base_url=worker.url) as http:
                    claimer = expert_for(n, handoff.route)
                    claimed = await click(http, slack, "claim", handoff.id, claimer)
                    assert claimed.status_code == 200
            await settle(
                lambda: _all_claimed(store, [h.id for h in handoffs.values() if h is not None])
            )
            cards_at = {c.cid: await store.card_for("slack", handoffs[c.cid].id) for c in customers}  # type: ignore[union-attr]
            routes = [handoffs[c.cid].route for c in customers]  # type: ignore[union-attr]

        for n, customer in enumerate(customers):
            card = cards_at[customer.cid]
            assert card is not None
            worker = (b, a)[n % 2]
            async with httpx.AsyncClient(base_url=worker.url) as http:
                reply, expert = f"Expert here for {customer.cid}", expert_for(n, routes[n])
                response = await thread_event(
                    http, card.channel, card.ts, expert, reply, f"Ev-{customer.cid}"
                )
                assert response.status_code == 200
                # Slack retries the same event at the other worker: acted on once.
                other = (a, b)[n % 2]
                async with httpx.AsyncClient(base_url=other.url) as again:
                    await thread_event(
                        again, card.channel, card.ts, expert, reply, f"Ev-{customer.cid}"
                    )
        for customer in customers:
            await customer.wait_for_pushed(f"Expert here for {customer.cid}")
            await customer.say(f"thanks from {customer.cid}")

        threads = await slack.wait_for("chat.postMessage", len(customers) * 3)
        await asyncio.sleep(1.0)
        threads = slack.posted("chat.postMessage")
        for customer in customers:
            card = cards_at[customer.cid]
            assert card is not None
            # The expert's reply reached this customer once and nobody else.
            everyone = [m["text"] for c in customers for m in c.pushed]
            assert everyone.count(f"Expert here for {customer.cid}") == 1
            assert [m["text"] for m in customer.pushed].count(
                f"Expert here for {customer.cid}"
            ) == 1
            # The customer's thanks reached this handoff's thread once.
            in_thread = [t["text"] for t in threads if t.get("thread_ts") == card.ts]
            assert in_thread.count(f"*Customer:*\n>thanks from {customer.cid}") == 1
            # Every message pushed once, in order, without gaps.
            seqs = [m["seq"] for m in customer.pushed]
            assert seqs == list(range(1, len(seqs) + 1))

        # A widget that lost its socket reconnects to the other worker and resumes after
        # the last message it has: the rest arrive, nothing twice.
        first = customers[0]
        ws = first.http.base_url.copy_with(scheme="ws")
        token = first.auth["Authorization"].removeprefix("Bearer ")
        url = f"{str(ws).rstrip('/')}/v1/conversations/{first.cid}/ws?after=2"
        protocols = ["gigcx.v1", f"token.{token}"]
        async with websockets.connect(url, subprotocols=protocols) as resumed:
            replayed = []
            while len(replayed) < len(first.pushed) - 2:
                event = json.loads(await asyncio.wait_for(resumed.recv(), 10))
                if event["type"] == "message.created":
                    replayed.append(event["message"]["seq"])
        assert replayed == [m["seq"] for m in first.pushed[2:]]
    finally:
        for customer in customers:
            await customer.close()


def expert_for(n: int, route: str) -> str:
    """Alex takes three conversations (his capacity), Sami the other two; Jordan (staff)
    any the bot routed to staff, which gig experts may not claim."""
    if route == "staff":
        return JORDAN
    return ALEX if n < 3 else SAMI


async def _all_claimed(store: ConversationStore, handoff_ids: list[str]) -> bool:
    states = [(await store.get_handoff(h)).state for h in handoff_ids]
    return states == ["assigned"] * len(handoff_ids)


async def test_a_worker_killed_mid_conversation_and_mid_handoff_loses_nothing(
    deployment: Deployment,
):
    quick = {"GIGCX_ESCALATION__CLAIM_TIMEOUT_SECONDS": "10"}
    a, b = deployment.worker(**quick), deployment.worker(**quick)
    await asyncio.gather(a.ready(), b.ready())
    customer = Customer(a, b)
    await customer.start()
    try:
        await customer.say("how do I pair my X2 with my phone?")
        await customer.say("I want to talk to a person")  # a handoff, waiting
        async with deployment.store() as store:
            handoff = await store.open_handoff_for(customer.cid)
            assert handoff is not None and handoff.offers == 1

        # Messages in flight to A when it is killed: whatever A answered 201 for is kept.
        async def burst() -> list[int]:
            stored = []
            async with httpx.AsyncClient(base_url=a.url, timeout=10) as http:
                for n in range(100_000):  # until A is gone
                    try:
                        response = await http.post(
                            f"/v1/conversations/{customer.cid}/messages",
                            json={"text": f"still there? {n}"},
                            headers=customer.auth,
                        )
                    except httpx.HTTPError:
                        break
                    if response.status_code == 201:
                        stored.append(response.json()["message"]["seq"])
            return stored

        sending = asyncio.create_task(burst())
        await asyncio.sleep(0.5)
        a.kill()
        acknowledged = await sending
        assert acknowledged, "A answered nothing before it died"

        # The customer carries on through B; nothing A acknowledged is missing.
        await customer.http.aclose()
        customer.http = httpx.AsyncClient(base_url=b.url, timeout=30)
        await customer.say("hello? anyone?")
        async with deployment.store() as store:
            messages = await store.messages_after(customer.cid)
            seqs = [m.seq for m in messages]
            assert seqs == list(range(1, len(seqs) + 1))  # no gaps, no duplicates
            assert set(acknowledged) <= set(seqs)
            assert messages[-1].text == "hello? anyone?"
            assert (await store.get_handoff(handoff.id)).state == "waiting"

            # Its claim deadline passes: B's sweeper re-offers it, once (not once per
            # worker); then an expert claims it, which stops the re-offers.
            await settle(lambda: _offered_again(store, handoff.id), timeout=40)
            async with httpx.AsyncClient(base_url=b.url) as http:
                claimed = await http.post(
                    f"/v1/console/handoffs/{handoff.id}/claim",
                    json={"expert_id": ALEX},
                    headers={"X-Console-Token": CONSOLE_TOKEN},
                )
                assert claimed.status_code == 200, claimed.text
            assert (await store.get_handoff(handoff.id)).offers == 2
            # Slack hears of it all, in order; an item A held when it died is taken over by
            # B when A's lease on it runs out (55 s).
            await settle(lambda: _outbox_empty(store), timeout=90)
        assert await _urgent_cards(deployment.slack, 1)

        # A comes back: it serves the same conversation, whole.
        await deployment.worker(port=a.port, **quick).ready()
        async with httpx.AsyncClient(base_url=a.url) as http:
            listed = await http.get(
                f"/v1/conversations/{customer.cid}/messages", headers=customer.auth
            )
        assert [m["seq"] for m in listed.json()["messages"]] == seqs
    finally:
        await customer.close()


class HangingModel:
    """A language model that never finishes answering questions about Canada (until the
    test lets it go) and answers others at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.hanging = threading.Event()

    def reply(self, body: dict[str, Any]) -> str:
        if "canada" in last_user_text(body).lower():
            self.hanging.set()
            self.release.wait(60)
        text = "We ship to the United States, Canada and the United Kingdom [1]."
        return json.dumps({"escalate": False, "answer": text, "citations": [1]})


async def test_a_worker_killed_in_the_middle_of_a_turn_holds_up_the_next_one_briefly(
    deployment: Deployment,
):
    """A dies while its bot turn holds the conversation's turn lease; the customer's next
    message, to B, is answered within 5 s (one lease), not after the longest turn."""
    model = HangingModel()
    with OpenAIChatServer(model.reply) as llm:
        slow_llm = {
            "GIGCX_BOT__MODE": "llm",
            "GIGCX_BOT__ANSWER_THRESHOLD": "0.05",  # every shipping question reaches the model
            "GIGCX_BOT__LLM__BASE_URL": llm.base_url,
            "GIGCX_BOT__LLM__MODEL": "local-test",
            "GIGCX_BOT__LLM__TIMEOUT_SECONDS": "60",
        }
        a, b = deployment.worker(**slow_llm), deployment.worker(**slow_llm)
        await asyncio.gather(a.ready(), b.ready())
        customer = Customer(a, b)
        await customer.start()
        try:
            asking = asyncio.create_task(customer.say("do you ship to canada?"))
            assert await asyncio.to_thread(model.hanging.wait, 30), "A's turn never started"
            a.kill()
            with contextlib.suppress(httpx.HTTPError):
                await asking  # A died before it answered

            await customer.http.aclose()
            customer.http = httpx.AsyncClient(base_url=b.url, timeout=30)
            started = time.monotonic()
            turn = await customer.say("and do you ship to the UK?")
            waited = time.monotonic() - started
            assert [r["author"] for r in turn["replies"]] == ["bot"]
            assert waited < 5, f"the next message waited {waited:.1f} s for a dead worker"
        finally:
            model.release.set()
            await customer.close()


async def _outbox_empty(store: ConversationStore) -> bool:
    return (await store.outbox_backlog("slack"))[0] == 0


async def _urgent_cards(slack: SlackAPIServer, count: int) -> bool:
    posted = slack.posted("chat.postMessage")
    return sum("Still waiting" in json.dumps(c.get("blocks", [])) for c in posted) == count


async def _offered_again(store: ConversationStore, handoff_id: str) -> bool:
    return (await store.get_handoff(handoff_id)).offers >= 2


async def test_serve_with_several_workers_adds_up_their_metrics(deployment: Deployment):
    server = ServerProcess(
        deployment.config, deployment.env, deployment.logs / "serve.log", workers=2
    ).start()
    deployment.workers.append(server)
    await server.ready()
    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(40):  # spread over both workers by the kernel
            assert (await http.get("/v1/brands/kestrel/widget", params={"key": KEY})).is_success
        text = (await http.get("/metrics")).text
    served = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(
            'gigcx_http_requests_total{method="GET",route="/v1/brands/{brand}/widget"'
        )
    ]
    assert sum(served) == 40  # whichever worker answered the scrape, it counts all of them
