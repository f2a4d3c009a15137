"""Relay latency between a customer's widget and an expert's Slack thread, on loopback.

Runs `gigcx serve`'s app under uvicorn with the Slack connector pointed at a local stand-in
for Slack's Web API (the one the tests use), escalates a conversation, claims it with a
signed Slack click, then measures N round trips each way:

- customer -> Slack: from the customer's POST until the thread post reaches "Slack";
- Slack -> customer: from the signed thread-reply event until the customer's WebSocket
  delivers the message.

Goal: p99 <= 50 ms each way. Run: .venv/bin/python benchmarks/relay_latency.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gigcx.config import load_settings  # noqa: E402
from gigcx.escalation.roster import sync_experts  # noqa: E402
from gigcx.knowledge import open_index, sync_knowledge  # noqa: E402
from tests.helpers.live_server import live_server  # noqa: E402
from tests.helpers.slack_server import SlackAPIServer  # noqa: E402
from tests.test_slack import SECRET, click, thread_event  # noqa: E402

KEY = "kestrel-demo-widget-key"
ALEX = "U04ALEXM"
console = Console()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(rounds: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as scratch, SlackAPIServer() as slack:
        settings = load_settings(
            REPO / "examples" / "kestrel" / "gigcx.yaml",
            store={"url": f"sqlite:///{scratch}/relay.db"},
            index={"path": str(Path(scratch) / "index")},
        )
        sync_knowledge(settings.knowledge.path, open_index(settings))
        settings = settings.model_copy(
            update={
                "slack": slack.settings(SECRET),
                "web": settings.web.model_copy(
                    update={
                        "messages_per_minute_per_conversation": 100_000,
                        "messages_per_minute_per_ip": 100_000,
                    }
                ),
            }
        )
        async with live_server(settings) as server, httpx.AsyncClient(base_url=server.url) as http:
            await sync_experts(server.runtime.store, "kestrel", settings.escalation.experts_file)
            created = (
                await http.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})
            ).json()
            cid, token = created["conversation_id"], created["token"]
            auth = {"Authorization": f"Bearer {token}"}
            await http.post(f"/v1/conversations/{cid}/handoff", headers=auth)
            await slack.wait_for("chat.postMessage", 1)
            handoff = await server.runtime.store.open_handoff_for(cid)
            assert handoff is not None
            await click(http, slack, "claim", handoff.id, ALEX)
            card = await server.runtime.store.card_for("slack", handoff.id)
            assert card is not None
            to_slack: list[float] = []
            to_customer: list[float] = []
            last_seq = (await server.runtime.store.get_conversation(cid)).last_seq
            ws_url = f"ws://{server.address}/v1/conversations/{cid}/ws?after={last_seq}"
            # The token travels as a subprotocol, as the widget sends it: never in the URL.
            protocols = ["gigcx.v1", f"token.{token}"]
            async with websockets.connect(ws_url, subprotocols=protocols) as socket:
                for number in range(rounds):
                    # customer -> Slack
                    seen = len(slack.calls)
                    text = f"customer message {number}"
                    started = time.perf_counter()
                    await http.post(
                        f"/v1/conversations/{cid}/messages", json={"text": text}, headers=auth
                    )
                    deadline = time.perf_counter() + 10
                    while time.perf_counter() < deadline:
                        found = [
                            at
                            for (method, body), at in zip(
                                slack.calls[seen:], slack.received_at[seen:], strict=True
                            )
                            if method == "chat.postMessage" and text in body.get("text", "")
                        ]
                        if found:
                            to_slack.append((found[0] - started) * 1000)
                            break
                        await asyncio.sleep(0.0005)
                    else:
                        raise TimeoutError(f"{text!r} never reached the Slack thread")
                    # Slack -> customer
                    reply = f"expert reply {number}"
                    started = time.perf_counter()
                    response = await thread_event(
                        http, card.channel, card.ts, ALEX, reply, f"Ev{number}"
                    )
                    assert response.status_code == 200, response.text
                    while True:
                        event = json.loads(await asyncio.wait_for(socket.recv(), 10))
                        if (
                            event.get("type") == "message.created"
                            and event["message"]["text"] == reply
                        ):
                            to_customer.append((time.perf_counter() - started) * 1000)
                            break
            return {"customer -> Slack thread": to_slack, "Slack thread -> customer": to_customer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    results = asyncio.run(measure(args.rounds))
    table = Table(
        title=f"Relay latency on loopback, {args.rounds} rounds (ms)", title_justify="left"
    )
    for column in ("direction", "p50", "p99", "max", "goal p99 <= 50 ms"):
        table.add_column(column)
    summary = {}
    for direction, values in results.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        summary[direction] = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2)}
        table.add_row(
            direction,
            f"{p50:.1f}",
            f"{p99:.1f}",
            f"{max(values):.1f}",
            "met" if p99 <= 50 else "NOT met",
        )
    console.print(table)
    out = REPO / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "relay_latency.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
