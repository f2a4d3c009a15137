"""Surge: conversations arriving at 30x a normal rate, on the scale-out stack, with 1 and
then 2 worker processes.

The stack is what a brand runs at scale, started as a user would: PostgreSQL (this
machine's), Redis (this machine's), `chroma run` holding the example brand's knowledge, and
`gigcx serve --workers N`. Customers arrive open-loop (one every 1/rate seconds, whether or
not earlier ones are done) and each: opens a conversation, connects its WebSocket, asks one
question from the example brand's cases (about a quarter escalate) and waits for the reply to be
pushed. A pool of simulated experts claims waiting handoffs through the expert console API
(up to 3 a second) and resolves them 5 s later, so the handoff queue rises during the surge
and drains after it (sampled until it is empty, or 60 s after the surge).

Reported per run: conversations, errors, messages lost (acknowledged or shown to a customer
but not in the store, or stored but never pushed: must be 0), bot-reply latency p50/p99
(question sent -> reply pushed on the WebSocket), throughput, and the handoff queue over
time (sampled from /metrics, plotted to benchmarks/out/surge_queue.png). Then the ratio of
2 workers to 1.

Run: .venv/bin/python benchmarks/surge.py [--normal-rate 0.5] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import secrets
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.loadgen import Chat, count_lost, percentile, questions, run_chat  # noqa: E402
from gigcx.config import StoreSettings, load_settings  # noqa: E402
from gigcx.knowledge import open_index, sync_knowledge  # noqa: E402
from gigcx.store import ConversationStore, create_engine, upgrade_database  # noqa: E402
from gigcx.store.models import Expert  # noqa: E402
from tests.helpers.processes import ServerProcess, chroma_server, postgres_database  # noqa: E402

SURGE = 30
CONSOLE_TOKEN = secrets.token_urlsafe(16)
OUT = REPO / "benchmarks" / "out"
console = Console(width=130)


@dataclass
class Run:
    workers: int
    chats: list[Chat]
    seconds: float
    lost: int
    queue: list[tuple[float, int]] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [chat.error for chat in self.chats if chat.error]

    @property
    def latencies(self) -> list[float]:
        return [c.reply_latency for c in self.chats if c.reply_latency is not None]

    @property
    def throughput(self) -> float:
        """Conversations answered per second of the run."""
        return len(self.latencies) / self.seconds


EXPERT_CLAIMS_PER_SECOND = 3
# Only registered experts may claim, up to their capacity: 3 claims a second, each held 5 s,
# is at most 15 held at once.
BENCH_EXPERTS = [f"UBENCH{n:02d}" for n in range(8)]


async def register_bench_experts(store_url: str) -> None:
    """The simulated experts in the brand's registry, as `gigcx experts sync` writes them."""
    engine = create_engine(StoreSettings(url=store_url))
    try:
        await upgrade_database(engine)
        pool = [
            Expert(key=expert_id, name=expert_id, tier="gig", capacity=3, active=True)
            for expert_id in BENCH_EXPERTS
        ]
        await ConversationStore(engine).sync_experts("kestrel", pool)
    finally:
        await engine.dispose()


async def experts(
    url: str, stop: asyncio.Event, per_second: int = EXPERT_CLAIMS_PER_SECOND
) -> None:
    """Claim the oldest waiting handoffs, up to `per_second`, and resolve each 5 s later."""
    headers = {"X-Console-Token": CONSOLE_TOKEN}
    turns = itertools.cycle(BENCH_EXPERTS)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        held: list[tuple[float, str, str]] = []
        while not stop.is_set():
            now = time.monotonic()
            for due, handoff_id, expert in [h for h in held if h[0] <= now]:
                await http.post(
                    f"/v1/console/handoffs/{handoff_id}/resolve", json={"expert_id": expert}
                )
                held.remove((due, handoff_id, expert))
            waiting = [
                h
                for h in (await http.get("/v1/console/handoffs")).json()
                if h["state"] == "waiting"
            ]
            for handoff in waiting[:per_second]:
                expert = next(turns)
                claimed = await http.post(
                    f"/v1/console/handoffs/{handoff['id']}/claim", json={"expert_id": expert}
                )
                if claimed.status_code == 200:
                    held.append((now + 5.0, handoff["id"], expert))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def sample_queue(url: str, stop: asyncio.Event, into: list[tuple[float, int]]) -> None:
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                text = (await http.get("/metrics")).text
                found = re.search(r"^gigcx_handoffs_waiting ([0-9.e+]+)$", text, re.M)
                if found:
                    into.append((time.monotonic() - started, int(float(found.group(1)))))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def surge(url: str, rate: float, seconds: float) -> tuple[list[Chat], float]:
    """Customers arriving at `rate` a second for `seconds`; all their chats."""
    asked = questions()
    ws_base = url.replace("http://", "ws://")
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        started = time.perf_counter()
        tasks = []
        for n in range(int(rate * seconds)):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            question, _ = asked[n % len(asked)]
            tasks.append(asyncio.create_task(run_chat(http, ws_base, question)))
        chats = list(await asyncio.gather(*tasks))
        return chats, time.perf_counter() - started


async def one_run(workers: int, rate: float, seconds: float, chroma_url: str, scratch: Path) -> Run:
    async with postgres_database() as store_url:
        env = {
            "GIGCX_STORE__URL": store_url,
            "GIGCX_INDEX__URL": chroma_url,
            "GIGCX_REDIS__URL": "redis://127.0.0.1:6379/0",
            "GIGCX_REDIS__NAMESPACE": f"gigcx-bench-{uuid.uuid4().hex[:8]}",
            # One load generator is one address: the per-address limit would refuse it.
            "GIGCX_WEB__MESSAGES_PER_MINUTE_PER_IP": "1000000",
            "GIGCX_WEB__CONSOLE_TOKEN": CONSOLE_TOKEN,
        }
        server = ServerProcess(
            REPO / "examples" / "kestrel" / "gigcx.yaml",
            env,
            scratch / f"serve-{workers}.log",
            workers=workers,
        ).start()
        try:
            await server.ready(timeout=180)
            await register_bench_experts(store_url)
            await asyncio.sleep(3 * workers)  # every worker up and warmed, not just one
            stop = asyncio.Event()
            queue: list[tuple[float, int]] = []
            helpers = [
                asyncio.create_task(experts(server.url, stop)),
                asyncio.create_task(sample_queue(server.url, stop, queue)),
            ]
            chats, took = await surge(server.url, rate, seconds)
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                lost = await count_lost(http, chats)
            drained_by = time.monotonic() + 60
            while time.monotonic() < drained_by and not (queue and queue[-1][1] == 0):
                await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*helpers)
            return Run(workers, chats, took, lost, queue)
        finally:
            server.stop()


def report(runs: list[Run], rate: float, normal: float) -> None:
    table = Table(title=f"Surge: {rate:g} conversations/s ({SURGE}x a normal {normal:g}/s)")
    for column in (
        "workers",
        "conversations",
        "escalated",
        "errors",
        "lost",
        "reply p50 ms",
        "reply p99 ms",
        "answered/s",
        "max queue",
    ):
        table.add_column(column, justify="right")
    for run in runs:
        table.add_row(
            str(run.workers),
            str(len(run.chats)),
            str(sum(c.escalated for c in run.chats)),
            str(len(run.errors)),
            str(run.lost),
            f"{percentile(run.latencies, 0.5) * 1000:.0f}",
            f"{percentile(run.latencies, 0.99) * 1000:.0f}",
            f"{run.throughput:.1f}",
            str(max((q for _, q in run.queue), default=0)),
        )
    console.print(table)
    for run in runs:
        for error in sorted(set(run.errors))[:5]:
            console.print(f"  {run.workers} worker(s), error: {error}")
    if len(runs) == 2:
        one, two = runs
        p99_one, p99_two = percentile(one.latencies, 0.99), percentile(two.latencies, 0.99)
        console.print(
            f"2 workers / 1 worker: reply p99 {p99_two / p99_one:.2f}x, "
            f"p50 {percentile(two.latencies, 0.5) / percentile(one.latencies, 0.5):.2f}x, "
            f"throughput {two.throughput / one.throughput:.2f}x"
        )


def plot(runs: list[Run]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    for run in runs:
        if run.queue:
            times, lengths = zip(*run.queue, strict=True)
            axes.plot(times, lengths, label=f"{run.workers} worker(s)")
    axes.set_xlabel("seconds since the surge began")
    axes.set_ylabel("handoffs waiting")
    axes.set_title(
        f"Handoff queue during and after the surge (experts claim {EXPERT_CLAIMS_PER_SECOND}/s)"
    )
    axes.legend()
    OUT.mkdir(exist_ok=True)
    path = OUT / "surge_queue.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--normal-rate", type=float, default=0.5, help="conversations/s normally")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    rate = args.normal_rate * SURGE
    with tempfile.TemporaryDirectory(prefix="gigcx-surge-") as folder:
        scratch = Path(folder)
        with chroma_server(scratch / "chroma") as chroma_url:
            settings = load_settings(
                REPO / "examples" / "kestrel" / "gigcx.yaml", index={"url": chroma_url}
            )
            sync_knowledge(settings.knowledge.path, open_index(settings))
            runs = []
            for workers in args.workers:
                console.print(f"[bold]{workers} worker(s)[/]: {rate:g}/s for {args.seconds:g} s")
                runs.append(await one_run(workers, rate, args.seconds, chroma_url, scratch))
    report(runs, rate, args.normal_rate)
    console.print(f"Queue plot: {plot(runs)}")


if __name__ == "__main__":
    asyncio.run(main())
