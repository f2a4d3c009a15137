"""CLI start: how long four everyday commands take as commands, start to finish (issue 17).

Builds a brand beside a 1,000-file knowledge folder (knowledge_bench's CLINC150 generator):
kestrel's gigcx.yaml pointed at that folder, a SQLite store with kestrel's experts and a month
of paid resolutions, the folder synced once. Then it runs, as fresh processes
(`python -m gigcx` with this checkout first on PYTHONPATH; the installed `gigcx` script may
run another checkout), each of

    gigcx --help
    gigcx experts list
    gigcx ledger export --month YYYY-MM
    gigcx knowledge sync          (nothing changed since the last sync)

N times, and prints min and median wall time against the target (1.5 s each).

Run: .venv/bin/python benchmarks/cli_start.py [--files 1000] [--runs 7] [--dir DIR]
With --dir the brand is kept in DIR and reused by the next run (the first sync embeds
about 10,000 chunks: minutes). Writes benchmarks/out/cli_start.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from knowledge_bench import build_corpus  # noqa: E402

from gigcx.config import load_settings  # noqa: E402
from gigcx.store import create_engine, upgrade_database  # noqa: E402
from gigcx.store.models import Conversation, Handoff, LedgerEntry  # noqa: E402

KESTREL = REPO / "examples" / "kestrel"
TARGET_SECONDS = 1.5
RESOLUTIONS = 300

console = Console()


def build_brand(root: Path, files: int) -> Path:
    """Kestrel's config and experts beside a generated knowledge folder; return the config."""
    build_corpus(root / "knowledge", files)
    config = yaml.safe_load((KESTREL / "gigcx.yaml").read_text())
    config["knowledge"]["path"] = "knowledge"
    config["index"] = {"path": ".gigcx/index"}
    config["store"] = {"url": "sqlite:///.gigcx/gigcx.db"}
    shutil.copy(KESTREL / "experts.yaml", root / "experts.yaml")
    path = root / "gigcx.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def add_month_of_resolutions(config: Path, month_start: datetime) -> None:
    """RESOLUTIONS paid resolutions spread over the month, as the ledger holds them."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    settings = load_settings(config)
    roster = yaml.safe_load(settings.escalation.experts_file.read_text())
    experts = [entry.get("id") or entry["slack_user_id"] for entry in roster]
    engine = create_engine(settings.store)
    rng = random.Random(7)
    try:
        await upgrade_database(engine)
        async with async_sessionmaker(engine).begin() as session:
            for _ in range(RESOLUTIONS):
                claimed = month_start + timedelta(seconds=rng.uniform(0, 27 * 86400))
                resolved = claimed + timedelta(seconds=rng.uniform(60, 1800))
                conversation = Conversation(
                    id=uuid.uuid4().hex, brand=settings.brand, customer_id="bench"
                )
                handoff = Handoff(
                    id=uuid.uuid4().hex,
                    conversation_id=conversation.id,
                    reason="expert_needed",
                    route="expert",
                    state="resolved",
                    assignee=rng.choice(experts),
                    claim_deadline=claimed,
                    created_at=claimed,
                    claimed_at=claimed,
                    closed_at=resolved,
                )
                session.add_all([conversation, handoff])
                await session.flush()
                session.add(
                    LedgerEntry(
                        brand=settings.brand,
                        expert=handoff.assignee,
                        conversation_id=conversation.id,
                        handoff_id=handoff.id,
                        claimed_at=claimed,
                        resolved_at=resolved,
                        handle_seconds=int((resolved - claimed).total_seconds()),
                        csat=rng.choice([None, 3, 4, 5]),
                        payout=Decimal("4.00"),
                        currency="EUR",
                    )
                )
    finally:
        await engine.dispose()


def gigcx(root: Path, *args: str) -> tuple[float, str]:
    """Run `gigcx ARGS` from this checkout in `root`; its wall time and its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGCX_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "gigcx", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"gigcx {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return seconds, result.stdout


def prepare(root: Path, files: int, month_start: datetime) -> None:
    if (root / "gigcx.yaml").exists():
        console.print(f"Reusing the brand in {root}")
        return
    root.mkdir(parents=True, exist_ok=True)
    config = build_brand(root, files)
    gigcx(root, "experts", "sync", "-c", "gigcx.yaml")
    asyncio.run(add_month_of_resolutions(config, month_start))
    console.print(f"First sync of {files} files (embeds every chunk)...")
    seconds, output = gigcx(root, "knowledge", "sync", "-c", "gigcx.yaml", "--json")
    report = json.loads(output)
    console.print(
        f"  {report['chunks_embedded']} chunks embedded in {seconds:.1f} s (whole command)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dir", type=Path, help="Keep the brand here and reuse it next time.")
    args = parser.parse_args()

    this_month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month_start = (this_month - timedelta(days=1)).replace(day=1)  # the last whole month
    month = month_start.strftime("%Y-%m")
    commands = {
        "gigcx --help": ["--help"],
        "gigcx experts list": ["experts", "list", "-c", "gigcx.yaml"],
        f"gigcx ledger export --month {month}": [
            *("ledger", "export", "--month", month, "-c", "gigcx.yaml"),
        ],
        "gigcx knowledge sync (unchanged)": [
            *("knowledge", "sync", "-c", "gigcx.yaml", "--json"),
        ],
    }
    with tempfile.TemporaryDirectory(prefix="gigcx-cli-start-") as scratch:
        root = (args.dir or Path(scratch) / "brand").resolve()
        prepare(root, args.files, month_start)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so a slow moment is shared by all four
            for name, command in commands.items():
                seconds, output = gigcx(root, *command)
                if command[0] == "knowledge":
                    report = json.loads(output)
                    if report["chunks_embedded"] or report["calibration"] is not None:
                        raise SystemExit(f"the re-sync was not unchanged: {report['counts']}")
                times[name].append(seconds)

    table = Table(title=f"CLI start: {args.runs} runs each, {args.files} knowledge files")
    for column in ("command", "min s", "median s", "target s", "met?"):
        table.add_column(column, justify="left" if column == "command" else "right")
    figures = {}
    for name, runs in times.items():
        low, middle = min(runs), statistics.median(runs)
        figures[name] = {"min_s": round(low, 3), "median_s": round(middle, 3), "runs": runs}
        met = "[green]yes[/]" if middle <= TARGET_SECONDS else "[red]no[/]"
        table.add_row(name, f"{low:.2f}", f"{middle:.2f}", f"{TARGET_SECONDS:.1f}", met)
    console.print(table)
    out = REPO / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "cli_start.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
