"""`gigcx knowledge sync --watch`: a saved edit is searchable moments later."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from gigcx.knowledge import KnowledgeIndex, SyncReport, sync_knowledge
from gigcx.knowledge.documents import ChunkingOptions
from gigcx.knowledge.watch import watch_knowledge


def test_an_edit_is_synced_while_watching(
    knowledge_dir: Path, index: KnowledgeIndex, options: ChunkingOptions
) -> None:
    sync_knowledge(knowledge_dir, index, options)
    reports: queue.Queue[SyncReport] = queue.Queue()
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_knowledge, args=(knowledge_dir, index, options, reports.put, stop), daemon=True
    )
    watcher.start()
    try:
        time.sleep(0.5)  # let the watcher start listening
        (knowledge_dir / "gift-cards.md").write_text("# Gift cards\n\nGift cards never expire.\n")
        report = reports.get(timeout=30)
        while "gift-cards.md" not in report.added:
            report = reports.get(timeout=30)
        assert index.search("do gift cards expire", 1)[0].path == "gift-cards.md"
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert not watcher.is_alive()
