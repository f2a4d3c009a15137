"""1,000 concurrent WebSocket chats on one `gigcx serve` process (the embedded default:
SQLite, a local Chroma folder, the in-process event bus).

Every customer opens a conversation and its WebSocket first; once all are connected they
all ask their question at once (the example brand's cases, numbered so that no two
customers ask the same text: see loadgen.customer_question) and wait for the reply to be
pushed. Reported: chats, errors, messages lost (see loadgen.count_lost), reply latency
p50/p99 (question sent -> reply pushed), throughput (replies per second from the first
question to the last reply), the server's peak RSS, and the ceiling it is measured against:
how many queries a second the embedding model embeds when batched, measured in the same run
on the same machine (before the server starts, in a process of its own, on the same
questions), and the ratio of the two. Also the CPU time the server and the load generator
used while answering, per reply, beside the CPU a query took the model alone.

With --profile, the server's CPU time is split by thread (from /proc), and py-spy samples
the server while the questions are answered: a table says where each thread's samples
went, by kind of work (the README's profile). py-spy samples only the thread holding the
interpreter lock, so the table shows Python's own work, not torch's or SQLite's C code
(which the CPU table counts). The raw samples are kept in
benchmarks/out/websocket_profile.txt (for a flame graph: flamegraph.pl).

Run: .venv/bin/python benchmarks/websocket_chats.py [--chats 1000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvloop
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.loadgen import count_lost, customer_question, percentile, questions, run_chat  # noqa: E402
from benchmarks.procfs import cpu_seconds, peak_rss, thread_times  # noqa: E402
from gigcx.config import load_settings  # noqa: E402
from gigcx.knowledge import open_index, sync_knowledge  # noqa: E402
from tests.helpers.processes import ServerProcess  # noqa: E402

console = Console(width=120)
OUT = REPO / "benchmarks" / "out"
CLIENTS = 32
TARGET_RATIO = 0.5  # issue 17: replies/s at least half the raw embedding throughput

# Kinds of work a sample is counted under: the first of these found walking from the
# innermost frame outwards names it (a frame's text is "function (file:line)").
KINDS: tuple[tuple[str, str], ...] = (
    ("logging", "logging/"),
    ("embedding model (torch)", "torch/"),
    ("embedding model (torch)", "sentence_transformers/"),
    ("retrieval and decision", "gigcx/knowledge/"),
    ("retrieval and decision", "gigcx/bot/decision"),
    ("retrieval and decision", "gigcx/bot/signals"),
    ("retrieval and decision", "gigcx/bot/answerability"),
    ("retrieval and decision", "gigcx/bot/staff_model"),
    ("store (SQLAlchemy, aiosqlite)", "sqlalchemy/"),
    ("store (SQLAlchemy, aiosqlite)", "aiosqlite/"),
    ("store (SQLAlchemy, aiosqlite)", "gigcx/store/"),
    ("events and WebSocket pushes", "gigcx/events/"),
    ("events and WebSocket pushes", "websockets/"),
    ("events and WebSocket pushes", "gigcx/connectors/web/websocket"),
    ("HTTP (uvicorn, Starlette, FastAPI)", "uvicorn/"),
    ("HTTP (uvicorn, Starlette, FastAPI)", "starlette/"),
    ("HTTP (uvicorn, Starlette, FastAPI)", "fastapi/"),
    ("turn around the bot (front line)", "gigcx/"),
)

# Run in a process of its own, so the load generator does not keep the model in memory.
RAW_EMBEDDING = """
import sys, time
from gigcx.knowledge.embeddings import load_local_model
texts = [line for line in sys.stdin.read().splitlines() if line]
model = load_local_model()
model.encode(texts[:64], batch_size=64)  # warm up
started, cpu = time.perf_counter(), time.process_time()
model.encode(texts, batch_size=64, normalize_embeddings=True)
print(len(texts) / (time.perf_counter() - started), (time.process_time() - cpu) / len(texts))
"""


def raw_embedding_throughput(
    asked: list[tuple[str, bool]], count: int = 2048
) -> tuple[float, float]:
    """Queries a second the local model embeds in batches of 64 (the ceiling of a turn), and
    the CPU seconds each query took."""
    texts = [customer_question(asked, n) for n in range(count)]  # what the customers ask
    result = subprocess.run(
        [sys.executable, "-c", RAW_EMBEDDING],
        input="\n".join(texts),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    rate, cpu = result.stdout.strip().splitlines()[-1].split()
    return float(rate), float(cpu)


def start_profiler(pid: int, raw: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the thread of `pid` that holds the interpreter lock (100 a second)
    until stopped. (Without --gil it counts a thread waiting in C, such as the event loop in
    epoll or an idle aiosqlite thread, as busy.)"""
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid)]
    command += ["-r", "100", "-f", "raw", "--threads", "--nonblocking", "--gil", "-o", str(raw)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _thread_group(thread: str, stack: str) -> str:
    """Which of the server's kinds of thread a sample was taken on."""
    if thread == "MainThread":
        return "event loop (main thread)"
    if thread.startswith("gigcx-knowledge"):
        return "bot turns (gigcx-knowledge threads)"
    if "_connection_worker" in stack:
        return "SQLite connections (aiosqlite threads)"
    return "other threads"


def profile_table(raw: Path) -> Table:
    """Samples per thread group and, for each, the share of each kind of work."""
    by_thread: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1].rstrip(")")
        group = _thread_group(thread, stack)
        kind = next(
            (name for frame in reversed(frames[1:]) for name, part in KINDS if part in frame),
            "event loop internals (uvloop, sockets, C code)",
        )
        by_thread[group][kind] += int(count)
    table = Table(title="Who held the interpreter lock while answering (py-spy samples)")
    table.add_column("threads")
    table.add_column("samples", justify="right")
    table.add_column("work")
    table.add_column("share", justify="right")
    for group, kinds in sorted(by_thread.items(), key=lambda item: -item[1].total()):
        total = kinds.total()
        for n, (kind, samples) in enumerate(kinds.most_common(6)):
            first = n == 0
            share = f"{samples / total:.0%}"
            table.add_row(group if first else "", str(total) if first else "", kind, share)
    return table


def thread_groups(pid: int) -> dict[int, str]:
    """Each Python thread's group (see _thread_group), by OS thread id, from py-spy's dump;
    a thread Python does not know (torch's OpenMP pool) is not in it."""
    command = [str(Path(sys.executable).parent / "py-spy"), "dump", "--pid", str(pid), "--json"]
    dumped = json.loads(subprocess.run(command, capture_output=True, check=True).stdout)
    return {
        thread["os_thread_id"]: _thread_group(
            thread["thread_name"] or "", ";".join(f["name"] for f in thread["frames"])
        )
        for thread in dumped
    }


def cpu_table(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    groups: dict[int, str],
) -> Table:
    """CPU seconds per thread group between two readings of thread_times."""
    spent: collections.Counter[str] = collections.Counter()
    for tid, (_, seconds) in after.items():
        group = groups.get(tid, "native threads (torch's OpenMP pool)")
        spent[group] += seconds - before.get(tid, ("", 0.0))[1]
    table = Table(title="The server's CPU time while answering, by thread (from /proc)")
    table.add_column("threads")
    table.add_column("CPU s", justify="right")
    table.add_column("share", justify="right")
    for group, seconds in spent.most_common():
        table.add_row(group, f"{seconds:.1f}", f"{seconds / spent.total():.0%}")
    return table


def cpu_budget(ceiling: float, model_cpu: float, server_cpu: float, load_cpu: float) -> str:
    """What the target of 0.5x leaves the server, in CPU seconds a reply, from this run's
    figures: the machine's cores over 0.5x the ceiling's replies a second, less the model's
    own CPU a query and the load generator's a reply."""
    target = TARGET_RATIO * ceiling
    budget = (os.cpu_count() or 1) / target
    left = budget - model_cpu - load_cpu
    return (
        f"At {TARGET_RATIO}x ({target:.0f} replies/s) the {os.cpu_count()} cores have "
        f"{budget * 1000:.1f} ms of CPU a reply: the model alone takes {model_cpu * 1000:.1f}, "
        f"the load generator {load_cpu * 1000:.1f}, which leaves {left * 1000:.1f} ms for "
        f"everything else the server does; this run it used "
        f"{(server_cpu - model_cpu) * 1000:.1f} ms besides the model's"
    )


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gigcx-ws-") as folder:
        brand = Path(folder) / "kestrel"
        shutil.copytree(
            REPO / "examples" / "kestrel", brand, ignore=shutil.ignore_patterns(".gigcx")
        )
        settings = load_settings(brand / "gigcx.yaml")
        sync_knowledge(settings.knowledge.path, open_index(settings))
        asked = questions()
        ceiling, ceiling_cpu = raw_embedding_throughput(asked)
        env = {"GIGCX_WEB__MESSAGES_PER_MINUTE_PER_IP": "1000000"}  # one client address
        server = ServerProcess(brand / "gigcx.yaml", env, Path(folder) / "serve.log").start()
        try:
            await server.ready()
            together = asyncio.Barrier(args.chats + 1)
            ws_base = server.url.replace("http://", "ws://")
            async with contextlib.AsyncExitStack() as stack:
                # Customers share a few HTTP clients: one client's connection pool scans all
                # its connections for every request, which with 1,000 took most of the
                # load generator's time (on the same two cores as the server).
                per_client = -(-args.chats // CLIENTS)
                # Idle connections are dropped before the server's keep-alive (5 s) closes
                # them under a request.
                limits = httpx.Limits(
                    max_connections=per_client,
                    max_keepalive_connections=per_client,
                    keepalive_expiry=3.0,
                )
                clients = [
                    await stack.enter_async_context(
                        httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits)
                    )
                    for _ in range(CLIENTS)
                ]
                tasks = [
                    asyncio.create_task(
                        run_chat(
                            clients[n % CLIENTS],
                            ws_base,
                            customer_question(asked, n),
                            120,
                            together,
                        )
                    )
                    for n in range(args.chats)
                ]
                await together.wait()  # everyone connected
                raw = OUT / "websocket_profile.txt"
                if args.profile:
                    OUT.mkdir(parents=True, exist_ok=True)
                    profiler = start_profiler(server.process.pid, raw)
                    threads_before = thread_times(server.process.pid)
                started = time.perf_counter()
                server_cpu, load_cpu = cpu_seconds(server.process.pid), own_cpu_seconds()
                chats = await asyncio.gather(*tasks)
                took = time.perf_counter() - started
                server_cpu = cpu_seconds(server.process.pid) - server_cpu
                load_cpu = own_cpu_seconds() - load_cpu
                if args.profile:
                    threads = cpu_table(
                        threads_before,
                        thread_times(server.process.pid),
                        thread_groups(server.process.pid),
                    )
                    profiler.send_signal(signal.SIGINT)
                    profiler.wait(timeout=60)
                lost = await count_lost(clients[0], chats)
            rss = peak_rss(server.process.pid) / 2**20
        finally:
            server.stop()
    latencies = [c.reply_latency for c in chats if c.reply_latency is not None]
    errors = [c.error for c in chats if c.error]
    table = Table(title=f"{args.chats} concurrent WebSocket chats, one process")
    columns = ("chats", "replied", "errors", "lost", "p50 ms", "p99 ms", "replies/s")
    for column in (*columns, "raw embedding/s", "ratio", "peak RSS MB"):
        table.add_column(column, justify="right")
    replies_per_second = len(latencies) / took
    table.add_row(
        str(len(chats)),
        str(len(latencies)),
        str(len(errors)),
        str(lost),
        f"{percentile(latencies, 0.5) * 1000:.0f}",
        f"{percentile(latencies, 0.99) * 1000:.0f}",
        f"{replies_per_second:.1f}",
        f"{ceiling:.0f}",
        f"{replies_per_second / ceiling:.2f}x",
        f"{rss:.0f}",
    )
    console.print(table)
    replies = max(1, len(latencies))
    console.print(
        f"CPU while answering ({took:.1f} s, {os.cpu_count()} cores): server "
        f"{server_cpu:.1f} s ({server_cpu / replies * 1000:.1f} ms a reply), load generator "
        f"{load_cpu:.1f} s ({load_cpu / replies * 1000:.1f} ms a reply); the raw embedding "
        f"took {ceiling_cpu * 1000:.1f} ms of CPU a query"
    )
    console.print(cpu_budget(ceiling, ceiling_cpu, server_cpu / replies, load_cpu / replies))
    for error in sorted(set(errors))[:5]:
        console.print(f"error: {error}")
    if args.profile:
        console.print(threads)
        console.print(profile_table(OUT / "websocket_profile.txt"))


if __name__ == "__main__":
    uvloop.run(main())  # the load generator shares the server's cores: the lighter the better
