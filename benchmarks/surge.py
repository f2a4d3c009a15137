"""Surge: conversations arriving at 30x a normal rate, on the scale-out stack, with 2 worker
processes (or 1 and then 2, to compare).

The stack is what a brand runs at scale, started as a user would: PostgreSQL (this
machine's), Redis (this machine's), `chroma run` holding the example brand's knowledge, and
`gigcx serve --workers N`. Customers arrive open-loop (one every 1/rate seconds, whether or
not earlier ones are done) and each: opens a conversation, connects its WebSocket, asks one
question from the example brand's cases (about a quarter escalate) and waits for the reply to be
pushed. A pool of simulated experts claims waiting handoffs through the expert console API
(up to 3 a second) and resolves them 5 s later, so the handoff queue rises during the surge
and drains after it (sampled until it is empty, or 60 s after the surge).

The default is issue 17's figure: 30x a normal 1.7 conversations/s, 51/s for 60 s (3,060
conversations), on 2 workers; the goal is 0 errors, 0 lost and a bot reply p99 of 2 s or less.

Reported per run: conversations, escalated, errors, messages lost (acknowledged or shown to a
customer but not in the store, or stored but never pushed: must be 0), bot-reply latency
p50/p99 (question sent -> reply pushed on the WebSocket), answered/s, the longest handoff
queue (sampled from /metrics, plotted to benchmarks/out/surge_queue.png), the peak RSS of the
worker processes (summed), their CPU (and their main threads'), and what the load generator
cost: its CPU (it shares the machine's cores with the server) and how late customers started
against their schedule. With 1 and 2 workers, the ratio of 2 to 1.

The experts work in Slack (issue 18; `benchmarks/slack_experts.py`): the local Slack stand-in
enforces Slack's documented rate limits (`--slack limited`, the default), or answers every
call at once with gigcx's own pacing lifted (`unlimited`, for comparison), or experts use the
console API without Slack (`off`). With Slack, the report adds escalation -> visible in Slack,
time to claim, a customer's message -> in the expert's thread, Slack calls per handoff, 429s
and calls sent during a Retry-After, and the plot shows Slack's backlog (handoffs escalated
but not yet visible there) beside the handoff queue.

Run: .venv/bin/python benchmarks/surge.py [--normal-rate 1.7] [--seconds 60] [--workers 1,2]
     [--slack limited,unlimited] [--profile] (py-spy on every worker for 10 s, 20 s into the
     surge, sampling the thread that holds the interpreter lock: benchmarks/out/*.raw)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as redis
import uvloop
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import gigcx  # noqa: E402
from benchmarks.loadgen import (  # noqa: E402
    Chat,
    count_lost,
    customer_question,
    percentile,
    questions,
    run_chat,
)
from benchmarks.procfs import TICKS, peak_rss, thread_times  # noqa: E402
from benchmarks.slack_experts import (  # noqa: E402
    SlackRun,
    backlog_in_slack,
    experts_in_slack,
    slack_env,
    slack_server,
)
from gigcx.config import StoreSettings, load_settings  # noqa: E402
from gigcx.knowledge import open_index, sync_knowledge  # noqa: E402
from gigcx.store import ConversationStore, create_engine, upgrade_database  # noqa: E402
from gigcx.store.models import Expert  # noqa: E402
from tests.helpers.check_services import POSTGRES_ADMIN_URL  # noqa: E402
from tests.helpers.processes import ServerProcess, chroma_server, postgres_database  # noqa: E402
from tests.helpers.slack_server import SlackAPIServer  # noqa: E402

SURGE = 30
NORMAL_RATE = 1.7  # conversations a second on a normal day (issue 17)
CONSOLE_TOKEN = secrets.token_urlsafe(16)
OUT = REPO / "benchmarks" / "out"
DOCS_PLOT = REPO / "docs" / "surge_queue.png"
PROFILE_AFTER, PROFILE_SECONDS = 20.0, 10
CLIENTS = 32  # HTTP clients the customers share (see surge)
REDIS_URL = "redis://127.0.0.1:6379/0"
console = Console(width=240)


@dataclass
class ThreadUse:
    """CPU seconds of one worker's threads during the surge, by thread name, and how long
    its main thread was ready to run but waited for a core (the machine's other work)."""

    pid: int
    main: float
    others: dict[str, float]
    main_waited: float = 0.0


@dataclass
class Run:
    workers: int
    slack_mode: str
    chats: list[Chat]
    seconds: float
    lost: int
    queue: list[tuple[float, int]] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)  # arrival started - scheduled, seconds
    generator_cpu: float = 0.0  # CPU seconds of the load generator during the surge
    machine_busy: float = 0.0  # share of all cores busy during the surge (anyone's)
    worker_rss: list[int] = field(default_factory=list)  # peak RSS of each worker, bytes
    threads: list[ThreadUse] = field(default_factory=list)
    server_code: list[str] = field(default_factory=list)  # each worker's PYTHONPATH
    cpu_by_who: dict[str, float] = field(default_factory=dict)  # CPU seconds in the surge
    # What the surge cost the services: PostgreSQL sessions opened and transactions (this
    # run's database only), Redis commands by name (every client of this Redis: noisy).
    services: dict[str, float] = field(default_factory=dict)
    loop_lags: list[float] = field(default_factory=list)  # the generator's event loop, s
    server_p50: float = float("nan")  # the server's own reply time (histogram bucket bound)
    server_p99: float = float("nan")
    postgres: list[dict[str, int]] = field(default_factory=list)  # connections by state
    slack: dict[str, object] = field(default_factory=dict)  # SlackRun.figures, with Slack
    slack_backlog: list[tuple[float, int]] = field(default_factory=list)  # not yet visible

    def postgres_peak(self, state: str | None = None) -> int:
        return max(
            (sum(v for k, v in s.items() if state in (None, k)) for s in self.postgres),
            default=0,
        )

    @property
    def errors(self) -> list[str]:
        return [chat.error for chat in self.chats if chat.error]

    @property
    def latencies(self) -> list[float]:
        return [c.reply_latency for c in self.chats if c.reply_latency is not None]

    @property
    def post_latencies(self) -> list[float]:
        """Question sent -> its POST answered (with the bot's reply in the body): the server's
        turn, without the WebSocket push that `latencies` also waits for."""
        return [c.post_latency for c in self.chats if c.post_latency is not None]

    @property
    def throughput(self) -> float:
        """Conversations answered per second of the run."""
        return len(self.latencies) / self.seconds

    def latency_by_arrival(self, every: float = 10.0) -> list[tuple[int, float, float]]:
        """(second the customers arrived from, reply p50, p99) for each `every` seconds of
        the surge: a slow start shows apart from a server that falls behind."""
        answered = [c for c in self.chats if c.reply_latency is not None]
        if not answered:
            return []
        first = min(c.started_at for c in self.chats)
        slices: dict[int, list[float]] = {}
        for chat in answered:
            start = int((chat.started_at - first) // every * every)
            slices.setdefault(start, []).append(chat.reply_latency or 0.0)
        return [
            (start, percentile(values, 0.5), percentile(values, 0.99))
            for start, values in sorted(slices.items())
        ]

    @property
    def worker_cpu(self) -> float:
        return sum(t.main + sum(t.others.values()) for t in self.threads)

    def summary(self) -> dict[str, object]:
        return {
            "workers": self.workers,
            "slack_mode": self.slack_mode,
            "slack": self.slack,
            "slack_backlog": self.slack_backlog,
            "conversations": len(self.chats),
            "escalated": sum(c.escalated for c in self.chats),
            "errors": len(self.errors),
            "error_kinds": sorted(set(self.errors))[:5],
            "lost": self.lost,
            "reply_p50_ms": percentile(self.latencies, 0.5) * 1000,
            "reply_p99_ms": percentile(self.latencies, 0.99) * 1000,
            "reply_by_arrival": self.latency_by_arrival(),
            "post_p50_ms": percentile(self.post_latencies, 0.5) * 1000,
            "post_p99_ms": percentile(self.post_latencies, 0.99) * 1000,
            "answered_per_s": self.throughput,
            "seconds": self.seconds,
            "max_queue": max((q for _, q in self.queue), default=0),
            "lag_p50_ms": percentile(self.lags, 0.5) * 1000,
            "lag_p99_ms": percentile(self.lags, 0.99) * 1000,
            "lag_max_ms": max(self.lags, default=0) * 1000,
            "generator_cpu_s": self.generator_cpu,
            "machine_busy": self.machine_busy,
            "worker_peak_rss_mb": [r / 2**20 for r in self.worker_rss],
            "threads": [asdict(t) for t in self.threads],
            "server_code": self.server_code,
            "cpu_by_who": self.cpu_by_who,
            "services": self.services,
            "loop_lag_p99_ms": percentile(self.loop_lags, 0.99) * 1000,
            "loop_lag_max_ms": max(self.loop_lags, default=0) * 1000,
            "server_reply_p50_le_s": self.server_p50,
            "server_reply_p99_le_s": self.server_p99,
            "postgres_connections_peak": self.postgres_peak(),
            "postgres_active_peak": self.postgres_peak("active"),
            "postgres": self.postgres,
            "queue": self.queue,
        }


EXPERT_CLAIMS_PER_SECOND = 3
# Only registered experts may claim, up to their capacity: 3 claims a second, each held 5 s,
# is at most 15 held at once. A staff question only staff may claim: both kinds are there.
BENCH_EXPERTS = {
    "gig": [f"UBENCH{n:02d}" for n in range(8)],
    "staff": [f"UBSTAFF{n:02d}" for n in range(8)],
}


async def register_bench_experts(store_url: str) -> None:
    """The simulated experts in the brand's registry, as `gigcx experts sync` writes them."""
    engine = create_engine(StoreSettings(url=store_url))
    try:
        await upgrade_database(engine)
        pool = [
            Expert(
                key=expert_id,
                name=expert_id,
                tier=tier,
                capacity=3,
                active=True,
                handles={"slack": expert_id},  # their Slack user id, for --slack
            )
            for tier, keys in BENCH_EXPERTS.items()
            for expert_id in keys
        ]
        await ConversationStore(engine).sync_experts("kestrel", pool)
    finally:
        await engine.dispose()


async def experts(
    url: str, stop: asyncio.Event, per_second: int = EXPERT_CLAIMS_PER_SECOND
) -> None:
    """Claim the oldest waiting handoffs, up to `per_second`, and resolve each 5 s later."""
    headers = {"X-Console-Token": CONSOLE_TOKEN}
    turns = {tier: itertools.cycle(keys) for tier, keys in BENCH_EXPERTS.items()}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        held: list[tuple[float, str, str]] = []
        while not stop.is_set():
            now = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
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
                    expert = next(turns["staff" if handoff["route"] == "staff" else "gig"])
                    claimed = await http.post(
                        f"/v1/console/handoffs/{handoff['id']}/claim", json={"expert_id": expert}
                    )
                    if claimed.status_code == 200:
                        held.append((now + 5.0, handoff["id"], expert))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def loop_lag(stop: asyncio.Event, into: list[float], every: float = 0.05) -> None:
    """How late this process's event loop wakes a sleeper: a busy load generator is late
    sending questions and late reading replies, which would count against the server."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(every)
        into.append(time.perf_counter() - started - every)


async def sample_postgres(database: str, stop: asyncio.Event, into: list[dict[str, int]]) -> None:
    """The run database's connections by state, twice a second: a pool at its limit shows
    as a flat maximum, a slow server as many `active` ones."""
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        while not stop.is_set():
            rows = await admin.fetch(
                "SELECT coalesce(state, '?') AS state, count(*) AS n FROM pg_stat_activity "
                "WHERE datname = $1 GROUP BY 1",
                database,
            )
            into.append({row["state"]: row["n"] for row in rows})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        await admin.close()


async def server_reply_seconds(url: str) -> dict[float, int]:
    """The server's own bot-reply histogram (cumulative counts by upper bound, seconds)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        text = (await http.get("/metrics")).text
    found = re.findall(r'^gigcx_bot_reply_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', text, re.M)
    return {float(bound): int(float(count)) for bound, count in found}


def bucket_quantile(before: dict[float, int], after: dict[float, int], share: float) -> float:
    """The upper bound of the bucket that holds the `share` quantile of what was added."""
    counts = sorted((bound, after[bound] - before.get(bound, 0)) for bound in after)
    total = counts[-1][1] if counts else 0
    for bound, count in counts:
        if count >= share * total:
            return bound
    return float("nan")


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


async def surge(
    url: str, rate: float, seconds: float, lags: list[float], tokens: dict[str, str]
) -> tuple[list[Chat], float]:
    """Customers arriving at `rate` a second for `seconds`; all their chats. How late each
    customer's first step ran against its schedule goes to `lags`: a generator that cannot
    keep up would understate the surge. Each conversation's token goes to `tokens`, for
    the customer to write again once an expert has them."""
    asked = questions()
    ws_base = url.replace("http://", "ws://")
    # Customers share HTTP clients, a few dozen each: one client for all 3,000 spent 90% of
    # the generator's time in httpcore's pool, which scans every connection it holds on
    # each request (the arrivals then started seconds late); a client per customer would
    # pay a pool's setup each time.
    # Idle connections are dropped before uvicorn's keep-alive (5 s) closes them under a
    # request.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=3.0)
    clients = [httpx.AsyncClient(base_url=url, timeout=60, limits=limits) for _ in range(CLIENTS)]
    try:

        async def customer(question: str, due: float, http: httpx.AsyncClient) -> Chat:
            lags.append(time.perf_counter() - due)
            chat = await run_chat(http, ws_base, question)
            tokens[chat.conversation_id] = chat.token
            return chat

        started = time.perf_counter()
        tasks = []
        for n in range(round(rate * seconds)):
            due = started + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            question = customer_question(asked, n)
            tasks.append(asyncio.create_task(customer(question, due, clients[n % CLIENTS])))
        chats = list(await asyncio.gather(*tasks))
        return chats, time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


# ---------------------------------------------------------------- the server's processes


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def worker_pids(server: ServerProcess) -> list[int]:
    """The processes that serve requests: uvicorn's workers, or the one process itself."""
    assert server.process is not None
    pid = server.process.pid
    workers = [
        child
        for child in _children(pid)
        if "resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes().decode()
    ]
    return workers or [pid]


def run_queue_wait(pid: int) -> float:
    """Seconds the process's main thread has spent ready to run, waiting for a core."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
    return 0.0


def thread_use(pid: int, before: dict[int, tuple[str, float]], waited: float) -> ThreadUse:
    after = thread_times(pid)
    main = after[pid][1] - before.get(pid, ("", 0.0))[1]
    others: dict[str, float] = {}
    for tid, (name, seconds) in after.items():
        if tid != pid:
            # Threads of a pool share a name stem ("gigcx-knowledge_3"): add them up.
            stem = re.sub(r"[_-]?\d+$", "", name)
            others[stem] = others.get(stem, 0.0) + seconds - before.get(tid, ("", 0.0))[1]
    busy = {k: v for k, v in others.items() if v >= 0.05}
    return ThreadUse(pid, main, busy, run_queue_wait(pid) - waited)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def process_times() -> dict[int, tuple[str, float]]:
    """Every process's name (its command line's first words) and CPU seconds so far, with
    those of its children that have ended."""
    times = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            words = (entry / "cmdline").read_bytes().split(b"\0")
            name = " ".join(Path(w.decode(errors="replace")).name for w in words[:3] if w)
            # With the children it has reaped (cutime, cstime): a PostgreSQL backend that
            # closed, a test process that ended, counted under their parent.
            ticks = sum(int(value) for value in fields[11:15])
            times[int(entry.name)] = (name, ticks / TICKS)
    return times


def who_used_cpu(
    before: dict[int, tuple[str, float]], workers: list[int], server: int
) -> dict[str, float]:
    """CPU seconds since `before`, by who: the workers, this generator, the services, and
    everything else on the machine (another engineer's runs are noise to say)."""
    used: dict[str, float] = {}
    me = os.getpid()
    for pid, (name, seconds) in process_times().items():
        spent = seconds - before.get(pid, (name, 0.0))[1]
        if spent < 0.05:
            continue
        if pid in workers:
            who = "gigcx workers"
        elif pid == me:
            who = "load generator"
        elif pid == server:
            who = "gigcx supervisor"
        elif "chroma" in name:
            who = "chroma server"
        elif "postgres" in name:
            who = "postgresql"
        elif "redis" in name:
            who = "redis"
        else:
            who = f"other: {name[:60]}"
        used[who] = used.get(who, 0.0) + spent
    return dict(sorted(used.items(), key=lambda kv: -kv[1]))


async def service_counters(database: str) -> dict[str, float]:
    """PostgreSQL's counters for `database` and Redis's command counts, so far."""
    counters: dict[str, float] = {}
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        row = await admin.fetchrow(
            "SELECT sessions, xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1",
            database,
        )
    finally:
        await admin.close()
    if row is not None:
        counters.update({f"pg {key}": float(value) for key, value in row.items()})
    client = redis.from_url(REDIS_URL)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    for name, stat in stats.items():
        counters[f"redis {name.removeprefix('cmdstat_')}"] = float(stat["calls"])
    return counters


def per_conversation(
    before: dict[str, float], after: dict[str, float], conversations: int
) -> dict[str, float]:
    changed = {key: after[key] - before.get(key, 0.0) for key in after}
    return {k: v / max(1, conversations) for k, v in changed.items() if v >= conversations / 10}


def server_code(pid: int) -> str:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for item in environ:
        if item.startswith(b"PYTHONPATH="):
            return item.decode().removeprefix("PYTHONPATH=")
    return "(no PYTHONPATH: the venv's installed gigcx)"


async def profile(pids: list[int], workers: int) -> None:
    """py-spy on every worker for PROFILE_SECONDS, PROFILE_AFTER seconds into the surge."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    await asyncio.sleep(PROFILE_AFTER)
    stamp = time.strftime("%H%M%S")
    running = []
    for pid in pids:
        out = OUT / f"profile-{stamp}-{workers}w-{pid}.raw"
        command = [spy, "record", "-p", str(pid), "-d", str(PROFILE_SECONDS), "-r", "100"]
        command += ["-f", "raw", "--threads", "--nonblocking", "--gil", "-o", str(out)]
        running.append(
            await asyncio.create_subprocess_exec(
                *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
    for process in running:
        await process.wait()
    console.print(f"  profiles: {OUT}/profile-{stamp}-{workers}w-*.raw")


async def explain_not_shown(store_url: str, handoff_ids: list[str]) -> list[dict[str, object]]:
    """What the store holds of handoffs whose customer's follow-up never showed in Slack:
    its outbox items still waiting, and its card."""
    admin = await asyncpg.connect(store_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        found = []
        for handoff_id in handoff_ids:
            outbox = await admin.fetch(
                "SELECT kind, attempts, due_at, locked_until, last_error FROM outbox "
                "WHERE handoff_id = $1 AND consumer = 'slack'",
                handoff_id,
            )
            card = await admin.fetchrow(
                "SELECT channel, ts, thread_channel, shows_seq FROM channel_cards "
                "WHERE handoff_id = $1",
                handoff_id,
            )
            state = await admin.fetchval("SELECT state FROM handoffs WHERE id = $1", handoff_id)
            found.append(
                {
                    "handoff": handoff_id,
                    "state": state,
                    "outbox": [dict(row) for row in outbox],
                    "card": dict(card) if card else None,
                }
            )
        return found
    finally:
        await admin.close()


async def run_handoffs(store_url: str) -> list[dict[str, object]]:
    """Every handoff of the run, as the store has it."""
    admin = await asyncpg.connect(store_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await admin.fetch("SELECT id, created_at, claimed_at FROM handoffs")
    finally:
        await admin.close()
    return [dict(row) for row in rows]


async def one_run(
    workers: int,
    rate: float,
    seconds: float,
    chroma_url: str,
    scratch: Path,
    with_profile: bool,
    slack_mode: str,
    slack: SlackAPIServer | None,
    redis_url: str,
) -> Run:
    async with postgres_database() as store_url:
        env = {
            "GIGCX_STORE__URL": store_url,
            "GIGCX_INDEX__URL": chroma_url,
            "GIGCX_REDIS__URL": redis_url,
            "GIGCX_REDIS__NAMESPACE": f"gigcx-bench-{uuid.uuid4().hex[:8]}",
            # One load generator is one address: the per-address limit would refuse it.
            "GIGCX_WEB__MESSAGES_PER_MINUTE_PER_IP": "1000000",
            "GIGCX_WEB__CONSOLE_TOKEN": CONSOLE_TOKEN,
        }
        if slack is not None:
            env.update(slack_env(slack))
        if slack_mode == "unlimited":  # gigcx's own pacing lifted too: Slack without limits
            env.update(
                {
                    "GIGCX_SLACK__LIMITS__POSTS_PER_CHANNEL_PER_SECOND": "50",
                    "GIGCX_SLACK__LIMITS__POSTS_PER_MINUTE": "10000",
                    "GIGCX_SLACK__LIMITS__TIER3_PER_MINUTE": "10000",
                }
            )
        tokens: dict[str, str] = {}
        slack_run = SlackRun(slack_mode)
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
            pids = worker_pids(server)
            assert len(pids) == workers, f"{len(pids)} worker processes, not {workers}"
            stop = asyncio.Event()
            queue: list[tuple[float, int]] = []
            lags: list[float] = []
            loop_lags: list[float] = []
            surging = asyncio.Event()
            working = (
                experts(server.url, stop)
                if slack is None
                else experts_in_slack(
                    server.url, CONSOLE_TOKEN, slack, BENCH_EXPERTS, tokens, slack_run, stop
                )
            )
            helpers = [
                asyncio.create_task(working),
                asyncio.create_task(sample_queue(server.url, stop, queue)),
            ]
            surge_started = time.perf_counter()
            postgres: list[dict[str, int]] = []
            pg_watch = asyncio.create_task(
                sample_postgres(store_url.rsplit("/", 1)[-1], surging, postgres)
            )
            replies_before = await server_reply_seconds(server.url)
            spying = asyncio.create_task(profile(pids, workers)) if with_profile else None
            threads_before = {pid: thread_times(pid) for pid in pids}
            waited_before = {pid: run_queue_wait(pid) for pid in pids}
            processes_before = process_times()
            database = store_url.rsplit("/", 1)[-1]
            await asyncio.sleep(1.5)  # PostgreSQL publishes a backend's counters within 1 s
            services_before = await service_counters(database)
            busy_before, total_before = machine_ticks()
            cpu_before = resource.getrusage(resource.RUSAGE_SELF)
            # No cyclic garbage collection in the generator while customers arrive: with
            # thousands of open chats each collection walks them all, and py-spy found
            # half of the generator's time there (attributed to whatever allocated).
            gc.collect()
            gc.disable()
            # The generator's own lateness while customers arrive (not while it sets up).
            lag_watch = asyncio.create_task(loop_lag(surging, loop_lags))
            try:
                chats, took = await surge(server.url, rate, seconds, lags, tokens)
            finally:
                gc.enable()
            surging.set()
            await asyncio.gather(lag_watch, pg_watch)
            cpu_after = resource.getrusage(resource.RUSAGE_SELF)
            busy_after, total_after = machine_ticks()
            threads = [thread_use(pid, threads_before[pid], waited_before[pid]) for pid in pids]
            assert server.process is not None
            cpu_by_who = who_used_cpu(processes_before, pids, server.process.pid)
            await asyncio.sleep(1.5)
            services = per_conversation(
                services_before, await service_counters(database), len(chats)
            )
            if spying is not None:
                await spying
            replies_after = await server_reply_seconds(server.url)
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                # Sixteen customers at a time check what they saw against the store.
                lost = sum(
                    await asyncio.gather(*(count_lost(http, chats[n::16]) for n in range(16)))
                )
            drained_by = time.monotonic() + 60
            while time.monotonic() < drained_by and not (queue and queue[-1][1] == 0):
                await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*helpers)
            figures: dict[str, object] = {}
            slack_backlog: list[tuple[float, int]] = []
            if slack is not None:
                await asyncio.sleep(10)  # relays of the last claims still on their way
                handoffs = await run_handoffs(store_url)
                figures = slack_run.figures(slack, handoffs)
                if slack_run.not_shown:
                    figures["not_shown"] = await explain_not_shown(store_url, slack_run.not_shown)
                slack_backlog = backlog_in_slack(slack, slack_run, handoffs, surge_started)
            return Run(
                workers,
                slack_mode,
                chats,
                took,
                lost,
                queue,
                lags,
                generator_cpu=(cpu_after.ru_utime + cpu_after.ru_stime)
                - (cpu_before.ru_utime + cpu_before.ru_stime),
                machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
                worker_rss=[peak_rss(pid) for pid in pids],
                threads=threads,
                server_code=[server_code(pid) for pid in pids],
                cpu_by_who=cpu_by_who,
                services=services,
                loop_lags=loop_lags,
                server_p50=bucket_quantile(replies_before, replies_after, 0.5),
                server_p99=bucket_quantile(replies_before, replies_after, 0.99),
                postgres=postgres,
                slack=figures,
                slack_backlog=slack_backlog,
            )
        finally:
            server.stop()
            with contextlib.suppress(OSError):
                shutil.copy(server.log, OUT / f"serve-{time.strftime('%H%M%S')}-{workers}w.log")


# ---------------------------------------------------------------- report


def report(runs: list[Run], rate: float, normal: float, seconds: float) -> None:
    table = Table(
        title=f"Surge: {rate:g} conversations/s for {seconds:g} s ({SURGE}x a normal {normal:g}/s)"
    )
    columns = (
        "workers",
        "conversations",
        "escalated",
        "errors",
        "lost",
        "reply p50 ms",
        "reply p99 ms",
        "answered/s",
        "max queue",
        "peak RSS MB",
        "server CPU",
        "loadgen CPU",
        "machine busy",
        "arrival lag p99/max ms",
        "loadgen loop lag p99/max ms",
        "server reply p50/p99 ≤ s",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for run in runs:
        cores = os.cpu_count() or 1
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
            f"{sum(run.worker_rss) / 2**20:.0f}",
            # Shares of the whole machine (all its cores), over the surge.
            f"{run.worker_cpu / run.seconds / cores:.0%}",
            f"{run.generator_cpu / run.seconds / cores:.0%}",
            f"{run.machine_busy:.0%}",
            f"{percentile(run.lags, 0.99) * 1000:.0f}/{max(run.lags, default=0) * 1000:.0f}",
            f"{percentile(run.loop_lags, 0.99) * 1000:.0f}/"
            f"{max(run.loop_lags, default=0) * 1000:.0f}",
            f"{run.server_p50:g}/{run.server_p99:g}",
        )
    console.print(table)
    for run in runs:
        for error in sorted(set(run.errors))[:5]:
            console.print(f"  {run.workers} worker(s), error: {error}")
        for use in run.threads:
            others = ", ".join(
                f"{name} {cpu / run.seconds:.0%}"
                for name, cpu in sorted(use.others.items(), key=lambda kv: -kv[1])[:4]
            )
            console.print(
                f"  {run.workers} worker(s), pid {use.pid}: main thread "
                f"{use.main / run.seconds:.0%} of a core, waited for a core "
                f"{use.main_waited / run.seconds:.0%} of the time; {others}"
            )
        console.print(
            f"  {run.workers} worker(s), CPU during the surge (cores): "
            + ", ".join(
                f"{who} {cpu / run.seconds:.2f}"
                for who, cpu in run.cpu_by_who.items()
                if cpu / run.seconds >= 0.01
            )
        )
        console.print(
            f"  {run.workers} worker(s), PostgreSQL connections: at most "
            f"{run.postgres_peak()} open, {run.postgres_peak('active')} active"
        )
        console.print(
            f"  {run.workers} worker(s), per conversation: "
            + ", ".join(f"{key} {value:.1f}" for key, value in run.services.items())
        )
        console.print(
            f"  {run.workers} worker(s), question POST answered p50/p99: "
            f"{percentile(run.post_latencies, 0.5) * 1000:.0f}/"
            f"{percentile(run.post_latencies, 0.99) * 1000:.0f} ms (the reply pushed: "
            f"{percentile(run.latencies, 0.5) * 1000:.0f}/"
            f"{percentile(run.latencies, 0.99) * 1000:.0f} ms)"
        )
        console.print(
            f"  {run.workers} worker(s), reply p50/p99 by when customers arrived: "
            + ", ".join(
                f"{start}-{start + 10} s {p50 * 1000:.0f}/{p99 * 1000:.0f} ms"
                for start, p50, p99 in run.latency_by_arrival()
            )
        )
    slack_report([run for run in runs if run.slack])
    by_workers = {run.workers: run for run in runs}
    if 1 in by_workers and 2 in by_workers:
        one, two = by_workers[1], by_workers[2]
        p99_one, p99_two = percentile(one.latencies, 0.99), percentile(two.latencies, 0.99)
        console.print(
            f"2 workers / 1 worker: reply p99 {p99_two / p99_one:.2f}x, "
            f"p50 {percentile(two.latencies, 0.5) / percentile(one.latencies, 0.5):.2f}x, "
            f"throughput {two.throughput / one.throughput:.2f}x"
        )


def slack_report(runs: list[Run]) -> None:
    """The experts' side in Slack, per run."""
    if not runs:
        return
    table = Table(title="Experts in Slack (escalation -> visible, claimed; customer -> thread)")
    columns = (
        "workers",
        "Slack",
        "handoffs",
        "visible p50/p99 s",
        "never visible",
        "claimed",
        "claim p50/p99 s",
        "relayed",
        "relay p50/p99 s",
        "not relayed",
        "calls/handoff",
        "429s",
        "calls in a Retry-After",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for run in runs:
        f: dict[str, Any] = run.slack
        table.add_row(
            str(run.workers),
            run.slack_mode,
            str(f["handoffs"]),
            f"{f['visible_p50_s']:.1f}/{f['visible_p99_s']:.1f}",
            str(f["never_visible"]),
            str(f["claimed"]),
            f"{f['claim_p50_s']:.0f}/{f['claim_p99_s']:.0f}",
            str(f["relayed"]),
            f"{f['relay_p50_s']:.2f}/{f['relay_p99_s']:.2f}",
            str(f["relays_missing"]),
            f"{f['calls_per_handoff']:.2f}",
            str(f["rate_limited"]),
            str(f["violations"]),
        )
    console.print(table)
    for run in runs:
        calls = ", ".join(f"{method} {count}" for method, count in run.slack["calls"].items())
        console.print(f"  {run.workers} worker(s), Slack {run.slack_mode}: calls: {calls}")
        for missing in run.slack.get("not_shown", []):  # type: ignore[union-attr]
            console.print(f"  follow-up never shown in Slack: {missing}")


def plot(runs: list[Run], rate: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    for run in runs:
        name = f"{run.workers} worker(s)" + (f", Slack {run.slack_mode}" if run.slack else "")
        if run.queue:
            times, lengths = zip(*run.queue, strict=True)
            axes.plot(times, lengths, label=f"waiting for an expert, {name}")
        if run.slack_backlog:
            times, lengths = zip(*run.slack_backlog, strict=True)
            axes.plot(times, lengths, linestyle="--", label=f"not yet visible in Slack, {name}")
    axes.set_xlabel("seconds since the surge began")
    axes.set_ylabel("handoffs")
    axes.set_title(
        f"Handoff queue: {rate:g} conversations/s, experts claim {EXPERT_CLAIMS_PER_SECOND}/s"
    )
    axes.legend(loc="upper right", fontsize="small")
    OUT.mkdir(exist_ok=True)
    path = OUT / "surge_queue.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


SLACK_MODES = ("limited", "unlimited", "off")


def slack_modes(text: str) -> list[str]:
    modes = [part.strip() for part in text.split(",")]
    if not modes or any(mode not in SLACK_MODES for mode in modes):
        raise argparse.ArgumentTypeError(
            f"--slack takes {', '.join(SLACK_MODES)} (or several, comma-separated), not {text!r}"
        )
    return modes


def worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--workers takes counts like 2 or 1,2, not {text!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--workers takes counts of 1 or more, not {text!r}")
    return counts


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--normal-rate", type=float, default=NORMAL_RATE, help="conversations/s normally"
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=worker_counts, default=[2], help="e.g. 2, or 1,2")
    parser.add_argument("--profile", action="store_true", help="py-spy every worker")
    parser.add_argument(
        "--slack",
        type=slack_modes,
        default=["limited"],
        help="where experts work: limited (Slack's rate limits enforced), unlimited, off "
        "(the console API, no Slack); e.g. limited,unlimited",
    )
    parser.add_argument(
        "--redis-url",
        default=REDIS_URL,
        help="the workers' redis.url (e.g. with ?max_connections=N to try a larger pool)",
    )
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help=f"copy the plot to {DOCS_PLOT.relative_to(REPO)} if no run had errors or losses",
    )
    args = parser.parse_args()
    rate = args.normal_rate * SURGE
    OUT.mkdir(exist_ok=True)
    console.print(f"gigcx from {Path(gigcx.__file__).parent}; load: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="gigcx-surge-") as folder:
        scratch = Path(folder)
        with chroma_server(scratch / "chroma") as chroma_url:
            settings = load_settings(
                REPO / "examples" / "kestrel" / "gigcx.yaml", index={"url": chroma_url}
            )
            sync_knowledge(settings.knowledge.path, open_index(settings))
            runs = []
            for mode in args.slack:
                for workers in args.workers:
                    console.print(
                        f"[bold]{workers} worker(s), Slack {mode}[/]: {rate:g}/s for "
                        f"{args.seconds:g} s; load {os.getloadavg()}"
                    )
                    experts_in = slack_server(mode) if mode != "off" else contextlib.nullcontext()
                    with experts_in as slack:
                        run = await one_run(
                            workers,
                            rate,
                            args.seconds,
                            chroma_url,
                            scratch,
                            args.profile,
                            mode,
                            slack,
                            args.redis_url,
                        )
                    console.print(f"  server code (PYTHONPATH of each worker): {run.server_code}")
                    runs.append(run)
    report(runs, rate, args.normal_rate, args.seconds)
    record = OUT / f"surge-{time.strftime('%Y%m%d-%H%M%S')}.json"
    record.write_text(
        json.dumps(
            {
                "rate": rate,
                "seconds": args.seconds,
                "load_after": os.getloadavg(),
                "runs": [run.summary() for run in runs],
            },
            indent=1,
        )
    )
    path = plot(runs, rate)
    console.print(f"Queue plot: {path}; figures: {record}")
    if args.update_docs:
        if all(not run.errors and run.lost == 0 for run in runs):
            shutil.copy(path, DOCS_PLOT)
            console.print(f"Copied to {DOCS_PLOT}")
        else:
            console.print(f"Not copied to {DOCS_PLOT}: a run had errors or lost messages")


if __name__ == "__main__":
    # uvloop, as the server runs: on asyncio's own loop the generator needed a whole core for
    # 51 arrivals a second, a core taken from the server it measures.
    uvloop.run(main())
