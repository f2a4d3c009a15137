"""Sync a knowledge folder into the index: only what changed is embedded.

A file whose content hash is already in the index costs a read and a hash, nothing more.
A file that fails to parse is reported and left as it was in the index: a bad edit never
removes the last good version. The one exception: a failed file that says `audience: internal`
somewhere loses any public version, so a file meant to be internal is never left public.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gigcx.knowledge.documents import (
    ChunkingOptions,
    KnowledgeDocument,
    KnowledgeFileError,
    content_hash,
    parse_document,
    read_raw,
    scan_folder,
)
from gigcx.knowledge.embeddings import EmbeddingError
from gigcx.knowledge.index import KnowledgeIndex

# Chunks embedded and written together: large enough to keep the model's batches full.
WRITE_BATCH_CHUNKS = 2048

ProgressCallback = Callable[[int, int], None]


class KnowledgeFolderMissing(Exception):
    """The knowledge folder to sync does not exist."""


@dataclass
class SyncReport:
    """What a sync did (or, with dry_run, would do)."""

    folder: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[KnowledgeFileError] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_total: int = 0
    dry_run: bool = False
    rebuilt: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "rebuilt": self.rebuilt,
            "counts": {
                "added": len(self.added),
                "changed": len(self.changed),
                "removed": len(self.removed),
                "unchanged": len(self.unchanged),
                "failed": len(self.failed),
            },
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "failed": [
                {"path": error.path, "line": error.line, "error": error.message}
                for error in self.failed
            ],
            "chunks_embedded": self.chunks_embedded,
            "chunks_total": self.chunks_total,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Plan:
    to_write: list[KnowledgeDocument] = field(default_factory=list)
    leftovers: list[tuple[str, str]] = field(default_factory=list)  # (path, hash to keep)
    # Failed files that say they are internal: any public version of them is withdrawn.
    withdraw: list[str] = field(default_factory=list)


def sync_knowledge(
    folder: Path,
    index: KnowledgeIndex,
    options: ChunkingOptions | None = None,
    *,
    dry_run: bool = False,
    rebuild: bool = False,
    on_progress: ProgressCallback | None = None,
) -> SyncReport:
    """Bring the index in line with the files in `folder` and say what changed."""
    started = time.perf_counter()
    options = options or ChunkingOptions()
    if not folder.is_dir():
        raise KnowledgeFolderMissing(f"knowledge folder not found: {folder}")
    report = SyncReport(folder=str(folder), dry_run=dry_run, rebuilt=rebuild)
    if rebuild and not dry_run:
        index.reset()
    indexed = {} if rebuild else index.file_versions()

    plan = _Plan()
    present: set[str] = set()
    for entry in scan_folder(folder):
        present.add(entry.path)
        if entry.error is not None:
            report.failed.append(entry.error)
            continue
        try:
            raw = read_raw(folder, entry.path)
            file_hash = content_hash(raw, options)
            stored = indexed.get(entry.path, set())
            if file_hash in stored:
                report.unchanged.append(entry.path)
                if len(stored) > 1:
                    plan.leftovers.append((entry.path, file_hash))
                continue
            document = parse_document(entry.path, raw, options, file_hash)
        except KnowledgeFileError as error:
            report.failed.append(error)
            if error.says_internal:
                plan.withdraw.append(entry.path)
            continue
        (report.changed if entry.path in indexed else report.added).append(entry.path)
        plan.to_write.append(document)

    report.removed = sorted(set(indexed) - present)
    total_chunks = sum(len(doc.chunks) for doc in plan.to_write)
    if dry_run:
        report.chunks_embedded = total_chunks
        report.seconds = time.perf_counter() - started
        return report

    if on_progress:
        on_progress(0, total_chunks)
    for batch in _batches(plan.to_write, WRITE_BATCH_CHUNKS):
        texts = [chunk.embed_text for doc in batch for chunk in doc.chunks]
        try:
            vectors = index.embedder.embed_documents(texts)
            index.write_documents(batch, vectors)
        except EmbeddingError as error:
            _unmark(report, batch)
            report.failed.extend(KnowledgeFileError(doc.path, str(error)) for doc in batch)
            continue
        report.chunks_embedded += len(texts)
        if on_progress:
            on_progress(report.chunks_embedded, total_chunks)
    for path, keep in plan.leftovers:
        index.keep_only_version(path, keep)
    index.remove_files(report.removed)
    index.remove_files(index.public_files(plan.withdraw))
    report.chunks_total = index.count()
    report.seconds = time.perf_counter() - started
    return report


def _batches(documents: list[KnowledgeDocument], size: int) -> Iterator[list[KnowledgeDocument]]:
    """Groups of whole files with about `size` chunks each (a file is never split)."""
    batch: list[KnowledgeDocument] = []
    count = 0
    for document in documents:
        batch.append(document)
        count += len(document.chunks)
        if count >= size:
            yield batch
            batch, count = [], 0
    if batch:
        yield batch


def _unmark(report: SyncReport, batch: list[KnowledgeDocument]) -> None:
    paths = {doc.path for doc in batch}
    report.added = [p for p in report.added if p not in paths]
    report.changed = [p for p in report.changed if p not in paths]
