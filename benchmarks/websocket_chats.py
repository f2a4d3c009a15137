"""1,000 concurrent WebSocket chats on one `gigcx serve` process (the embedded default:
SQLite, a local Chroma folder, the in-process event bus).

Every customer opens a conversation and its WebSocket first; once all are connected they
all ask their question at once (questions from the example brand's cases) and wait for the
reply to be pushed. Reported: chats, errors, messages lost (see loadgen.count_lost), reply
latency p50/p99 (question sent -> reply pushed), and throughput (replies per second from the
first question to the last reply).

Run: .venv/bin/python benchmarks/websocket_chats.py [--chats 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.loadgen import count_lost, percentile, questions, run_chat  # noqa: E402
from gigcx.config import load_settings  # noqa: E402
from gigcx.knowledge import open_index, sync_knowledge  # noqa: E402
from tests.helpers.processes import ServerProcess  # noqa: E402

console = Console()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gigcx-ws-") as folder:
        brand = Path(folder) / "kestrel"
        shutil.copytree(
            REPO / "examples" / "kestrel", brand, ignore=shutil.ignore_patterns(".gigcx")
        )
        settings = load_settings(brand / "gigcx.yaml")
        sync_knowledge(settings.knowledge.path, open_index(settings))
        env = {"GIGCX_WEB__MESSAGES_PER_MINUTE_PER_IP": "1000000"}  # one client address
        server = ServerProcess(brand / "gigcx.yaml", env, Path(folder) / "serve.log").start()
        try:
            await server.ready()
            asked = questions()
            together = asyncio.Barrier(args.chats + 1)
            limits = httpx.Limits(max_connections=args.chats, max_keepalive_connections=args.chats)
            ws_base = server.url.replace("http://", "ws://")
            async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
                tasks = [
                    asyncio.create_task(
                        run_chat(http, ws_base, asked[n % len(asked)][0], 120, together)
                    )
                    for n in range(args.chats)
                ]
                await together.wait()  # everyone connected
                started = time.perf_counter()
                chats = await asyncio.gather(*tasks)
                took = time.perf_counter() - started
                lost = await count_lost(http, chats)
        finally:
            server.stop()
    latencies = [c.reply_latency for c in chats if c.reply_latency is not None]
    errors = [c.error for c in chats if c.error]
    table = Table(title=f"{args.chats} concurrent WebSocket chats, one process")
    for column in ("chats", "replied", "errors", "lost", "p50 ms", "p99 ms", "replies/s"):
        table.add_column(column, justify="right")
    table.add_row(
        str(len(chats)),
        str(len(latencies)),
        str(len(errors)),
        str(lost),
        f"{percentile(latencies, 0.5) * 1000:.0f}",
        f"{percentile(latencies, 0.99) * 1000:.0f}",
        f"{len(latencies) / took:.1f}",
    )
    console.print(table)
    for error in sorted(set(errors))[:5]:
        console.print(f"error: {error}")


if __name__ == "__main__":
    asyncio.run(main())
