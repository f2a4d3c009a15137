"""Live re-sync for brand teams editing knowledge files: every saved change is synced."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, watch

from gigcx.knowledge.documents import ChunkingOptions
from gigcx.knowledge.index import KnowledgeIndex
from gigcx.knowledge.sync import SyncReport, sync_knowledge


def watch_knowledge(
    folder: Path,
    index: KnowledgeIndex,
    options: ChunkingOptions,
    on_report: Callable[[SyncReport], None],
    stop_event: threading.Event | None = None,
) -> None:
    """Sync `folder` each time files in it change, until `stop_event` is set (or Ctrl-C)."""
    root = folder.resolve()

    def relevant(change: Change, path: str) -> bool:
        # Editors write swap and temp files next to the real one; hidden names are never knowledge.
        try:
            parts = Path(path).resolve().relative_to(root).parts
        except ValueError:
            return True
        return not any(part.startswith(".") for part in parts)

    for _changes in watch(folder, watch_filter=relevant, stop_event=stop_event, debounce=300):
        on_report(sync_knowledge(folder, index, options))
