"""How fast the brand team's overview is over a big store: 100,000 conversations of the last
30 days on PostgreSQL (a bot turn each, a third escalated, most claimed, replied to,
resolved and some rated), then the overview computed and the `/admin` pages rendered,
each many times; prints p50/p99 and peak memory.

    python benchmarks/admin_overview.py [--conversations 100000] [--runs 30]

Needs PostgreSQL at 127.0.0.1:5432 (a throw-away database is created and dropped). The rows
are written with COPY, the way a long-running deployment would have written them turn by
turn; what is timed is only reading them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gigcx.config import StoreSettings, load_settings
from gigcx.insights.report import Period, conversation_rows, overview
from gigcx.store import ConversationStore, create_engine, upgrade_database
from tests.helpers.processes import postgres_database

BRAND = "kestrel"
REPO = Path(__file__).resolve().parent.parent
REASONS = [
    ("expert_needed", "expert", 5),
    ("low_confidence", "expert", 3),
    ("staff_topic", "staff", 4),
    ("human_requested", "expert", 2),
    ("frustration", "expert", 1),
]
QUESTIONS = [
    "how do I pair my x2 with my phone",
    "where is my order",
    "the left bud does not charge",
    "can I use the x1 on a plane",
    "how do I update the firmware",
    "my refund has not arrived",
]


def _jsonb(value: Any) -> str:
    return json.dumps(value)


def generate(count: int, days: int, now: datetime, seed: int = 7) -> dict[str, list[tuple]]:
    rng = random.Random(seed)
    rows: dict[str, list[tuple]] = {
        "conversations": [],
        "messages": [],
        "decision_trails": [],
        "handoffs": [],
        "csat": [],
        "answer_ratings": [],
        "ledger": [],
    }
    reasons = [r for r in REASONS for _ in range(r[2])]
    span = days * 86400
    for n in range(count):
        cid = uuid.uuid4().hex
        start = now - timedelta(seconds=rng.uniform(0, span))
        question = rng.choice(QUESTIONS)
        escalate = rng.random() < 0.33
        clarify = not escalate and rng.random() < 0.07
        action = "escalate" if escalate else "clarify" if clarify else "answer"
        reason, route, _ = rng.choice(reasons) if escalate else (None, None, 0)
        bot_at = start + timedelta(seconds=1)
        state = "bot"
        messages = [(cid, 1, "customer", question, "[]", "{}", None, start)]
        decision = {"action": action, "reason": reason, "route": route, "query": question}
        messages.append((cid, 2, "bot", "…", "[]", _jsonb({"decision": decision}), None, bot_at))
        passages = [
            {
                "title": "Pairing",
                "section": "Steps",
                "path": "x2/pairing.md",
                "score": round(rng.uniform(0.3, 0.9), 3),
                "product": "x2",
            }
        ]
        rows["decision_trails"].append(
            (
                BRAND,
                cid,
                2,
                action,
                reason,
                route,
                rng.random(),
                question,
                "x2",
                _jsonb(passages),
                _jsonb({"dense": 0.5}),
                bot_at,
            )
        )
        if action == "answer" and rng.random() < 0.2:
            rows["answer_ratings"].append(
                (BRAND, cid, 2, rng.random() < 0.75, bot_at + timedelta(seconds=30))
            )
        if escalate:
            hid = uuid.uuid4().hex
            claimed = first = closed = None
            hstate = "waiting"
            if rng.random() < 0.85:
                claimed = bot_at + timedelta(seconds=rng.expovariate(1 / 120))
                first = claimed + timedelta(seconds=rng.expovariate(1 / 60))
                hstate = "assigned"
                if rng.random() < 0.8:
                    closed = first + timedelta(seconds=rng.expovariate(1 / 600))
                    hstate = "resolved"
            state = {"waiting": "waiting", "assigned": "assigned", "resolved": "resolved"}[hstate]
            rows["handoffs"].append(
                (
                    hid,
                    cid,
                    reason,
                    route,
                    "[]",
                    "{}",
                    hstate,
                    "alex" if claimed else None,
                    "Alex" if claimed else None,
                    1,
                    bot_at + timedelta(minutes=5),
                    None,
                    bot_at,
                    claimed,
                    closed,
                    first,
                )
            )
            if first is not None:
                messages.append((cid, 3, "expert", "Happy to help", "[]", "{}", None, first))
            if closed is not None:
                expert = rng.choice(["alex", "sami", "kim"])
                rows["ledger"].append(
                    (
                        BRAND,
                        expert,
                        cid,
                        hid,
                        claimed,
                        closed,
                        int((closed - claimed).total_seconds()),
                        None,
                        4.5,
                        "EUR",
                    )
                )
                if rng.random() < 0.4:
                    rows["csat"].append(
                        (cid, hid, expert, rng.randint(1, 5), "", closed + timedelta(minutes=1))
                    )
        rows["conversations"].append(
            (
                cid,
                BRAND,
                f"anon-{n}",
                "",
                "{}",
                state,
                len(messages),
                start,
                start,
                0,
                None,
                0,
                None,
                "",
            )
        )
        rows["messages"].extend(messages)
    return rows


COLUMNS = {
    "conversations": [
        "id",
        "brand",
        "customer_id",
        "token_hash",
        "customer_attributes",
        "state",
        "last_seq",
        "created_at",
        "updated_at",
        "customer_read_seq",
        "customer_read_at",
        "emailed_seq",
        "emailed_at",
        "link_token_hash",
    ],
    "messages": [
        "conversation_id",
        "seq",
        "author",
        "text",
        "citations",
        "meta",
        "source",
        "created_at",
    ],
    "decision_trails": [
        "brand",
        "conversation_id",
        "seq",
        "action",
        "reason",
        "route",
        "confidence",
        "query",
        "product",
        "passages",
        "evidence",
        "created_at",
    ],
    "handoffs": [
        "id",
        "conversation_id",
        "reason",
        "route",
        "tags",
        "packet",
        "state",
        "assignee",
        "assignee_name",
        "offers",
        "claim_deadline",
        "resolve_deadline",
        "created_at",
        "claimed_at",
        "closed_at",
        "first_reply_at",
    ],
    "csat": ["conversation_id", "handoff_id", "assignee", "score", "comment", "created_at"],
    "answer_ratings": ["brand", "conversation_id", "seq", "helpful", "created_at"],
    "ledger": [
        "brand",
        "expert",
        "conversation_id",
        "handoff_id",
        "claimed_at",
        "resolved_at",
        "handle_seconds",
        "csat",
        "payout",
        "currency",
    ],
}


async def load(url: str, rows: dict[str, list[tuple]]) -> None:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for table in (
            "conversations",
            "messages",
            "decision_trails",
            "handoffs",
            "csat",
            "answer_ratings",
            "ledger",
        ):
            await connection.copy_records_to_table(
                table, records=rows[table], columns=COLUMNS[table]
            )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


def summary(label: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (
        f"{label:<34} p50 {statistics.median(ordered) * 1000:7.1f} ms   "
        f"p99 {p99 * 1000:7.1f} ms   (n={len(ordered)})"
    )


async def timed(runs: int, work: Any) -> list[float]:
    await work()  # warm
    result = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        result.append(time.perf_counter() - started)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    now = datetime.now(UTC)
    started = time.perf_counter()
    rows = generate(args.conversations, args.days, now)
    print(
        f"generated {args.conversations:,} conversations "
        f"({len(rows['messages']):,} messages, {len(rows['handoffs']):,} handoffs, "
        f"{len(rows['decision_trails']):,} decision trails) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    async with postgres_database() as url:
        engine = create_engine(StoreSettings(url=url))
        await upgrade_database(engine)
        await engine.dispose()
        started = time.perf_counter()
        await load(url, rows)
        print(f"loaded with COPY in {time.perf_counter() - started:.1f} s")
        del rows
        engine = create_engine(StoreSettings(url=url))
        store = ConversationStore(engine)
        period = Period.last_days(args.days)
        report = await overview(store, BRAND, period)
        print(
            f"overview: {report.conversations:,} conversations, {report.bot_answers:,} bot "
            f"answers, {report.escalated:,} escalated, claim p50 "
            f"{report.time_to_claim.p50:.0f} s"
        )
        print(
            summary(
                "overview() (store -> numbers)",
                await timed(args.runs, lambda: overview(store, BRAND, period)),
            )
        )
        print(
            summary(
                "conversation list (50 newest)",
                await timed(args.runs, lambda: conversation_rows(store, BRAND, period)),
            )
        )
        await engine.dispose()
        await pages(url, args.runs, args.days)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB (includes generating the rows)")


async def pages(url: str, runs: int, days: int) -> None:
    """The rendered pages over HTTP (in-process ASGI), signed in with the admin token."""
    from gigcx.config import WebSettings
    from gigcx.connectors.web.server import create_app

    if "admin_token" not in WebSettings.model_fields:
        print("(no /admin pages in this build)")
        return
    token = "benchmark-admin-token-0123456789"
    settings = load_settings(
        REPO / "examples" / "kestrel" / "gigcx.yaml",
        store={"url": url},
        web={"admin_token": token},
    )
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {token}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for path in (
                f"/admin?days={days}",
                f"/admin/conversations?days={days}",
                f"/admin/experts?days={days}",
            ):
                response = await client.get(path, headers=headers)
                if response.status_code != 200:
                    print(f"{path}: {response.status_code} {response.text[:200]}")
                    continue

                async def get(path: str = path) -> None:
                    (await client.get(path, headers=headers)).raise_for_status()

                print(summary(f"GET {path}", await timed(runs, get)))


if __name__ == "__main__":
    asyncio.run(main())
