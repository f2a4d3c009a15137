"""Knowledge: brand-owned Markdown/FAQ files -> chunks -> a Chroma vector index; search.

The public calls are `sync_knowledge` (files -> index) and `KnowledgeIndex.search`
(question -> passages); the CLI and the bot use exactly these.
"""

from gigcx.knowledge.documents import ChunkingOptions, KnowledgeFileError
from gigcx.knowledge.index import (
    IndexModelMismatch,
    IndexNotBuilt,
    IndexUnavailable,
    KnowledgeIndex,
    KnowledgeIndexError,
    SearchHit,
    open_index,
)
from gigcx.knowledge.sync import KnowledgeFolderMissing, SyncReport, sync_knowledge

__all__ = [
    "ChunkingOptions",
    "IndexModelMismatch",
    "IndexNotBuilt",
    "IndexUnavailable",
    "KnowledgeFileError",
    "KnowledgeFolderMissing",
    "KnowledgeIndex",
    "KnowledgeIndexError",
    "SearchHit",
    "SyncReport",
    "open_index",
    "sync_knowledge",
]
