"""The everyday commands start light: `gigcx --help`, `experts list`, `ledger export` and a
sync that finds nothing changed never load the embedding model, and only the sync opens Chroma.

Each command runs in a fresh interpreter (as `python -m gigcx` does) that, when the command
is done, writes down every module it had imported.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gigcx.knowledge import KnowledgeIndex, sync_knowledge
from gigcx.knowledge.documents import ChunkingOptions

REPO = Path(__file__).resolve().parent.parent

# Runs gigcx exactly as `python -m gigcx ARGS` would, then records sys.modules.
PROBE = """
import json, runpy, sys

record, *args = sys.argv[1:]
sys.argv = ["gigcx", *args]
code = 0
try:
    runpy.run_module("gigcx", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    code = stop.code
with open(record, "w") as out:
    json.dump({"exit": code, "modules": sorted(sys.modules)}, out)
"""

THE_MODEL = {"torch", "sentence_transformers", "transformers"}
# What only a command that embeds, splits files, searches or serves needs.
HEAVY = THE_MODEL | {
    "langchain_core",
    "langchain_text_splitters",
    "langchain_openai",
    "bm25s",
    "scipy",
    "uvicorn",
    "jinja2",
}


def run_gigcx(tmp_path: Path, cwd: Path, *args: str) -> tuple[str, set[str]]:
    """Run `gigcx ARGS` in a fresh interpreter; its output and the top-level packages it
    had imported when it finished."""
    record = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGCX_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(record), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found: dict[str, Any] = json.loads(record.read_text())
    assert found["exit"] in (0, None), result.stdout + result.stderr
    return result.stdout, {name.split(".")[0] for name in found["modules"]}


@pytest.fixture
def synced_dir(brand_dir: Path, index: KnowledgeIndex, options: ChunkingOptions) -> Path:
    """A copy of the example brand with its knowledge synced (its store still empty)."""
    report = sync_knowledge(brand_dir / "knowledge", index, options)
    assert report.ok and report.chunks_embedded
    return brand_dir


def test_help_lists_the_commands_without_loading_anything_heavy(tmp_path: Path) -> None:
    output, loaded = run_gigcx(tmp_path, tmp_path, "--help")
    assert "knowledge" in output and "experts" in output
    assert loaded & (HEAVY | {"chromadb", "sqlalchemy"}) == set()


def test_experts_and_the_ledger_leave_the_model_and_the_index_alone(
    synced_dir: Path, tmp_path: Path
) -> None:
    output, loaded = run_gigcx(tmp_path, synced_dir, "experts", "sync", "-c", "gigcx.yaml")
    assert "added: 3" in output
    assert loaded & (HEAVY | {"chromadb"}) == set()

    output, loaded = run_gigcx(tmp_path, synced_dir, "experts", "list", "-c", "gigcx.yaml")
    assert "3 experts" in output and "Alex Moreau" in output
    assert loaded & (HEAVY | {"chromadb"}) == set()

    output, loaded = run_gigcx(
        tmp_path, synced_dir, "ledger", "export", "--month", "2026-11", "-c", "gigcx.yaml"
    )
    assert next(csv.reader(io.StringIO(output))) == ["expert", "resolutions", "payout", "currency"]
    assert loaded & (HEAVY | {"chromadb"}) == set()


def test_an_unchanged_sync_finds_it_from_the_hashes_and_loads_no_model(
    synced_dir: Path, tmp_path: Path
) -> None:
    output, loaded = run_gigcx(
        tmp_path, synced_dir, "knowledge", "sync", "-c", "gigcx.yaml", "--json"
    )
    report = json.loads(output)
    assert report["chunks_embedded"] == 0
    assert report["counts"]["unchanged"] == 21 and not report["counts"]["added"]
    assert report["calibration"] is None  # nothing changed: the kept check still holds
    assert "chromadb" in loaded  # it did read the index
    assert loaded & HEAVY == set()

    # One file edited: that file alone is embedded, and the answer check runs again.
    page = synced_dir / "knowledge" / "general" / "warranty.md"
    page.write_text(page.read_text() + "\nThe warranty also covers the charging case.\n")
    output, loaded = run_gigcx(
        tmp_path, synced_dir, "knowledge", "sync", "-c", "gigcx.yaml", "--json"
    )
    report = json.loads(output)
    assert report["changed"] == ["general/warranty.md"]
    assert report["chunks_embedded"] > 0 and report["calibration"] is not None
    assert THE_MODEL & loaded
