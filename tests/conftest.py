"""Shared fixtures: the example brand's knowledge copied to a temp folder, a temp index."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gigcx.config import Settings, load_settings
from gigcx.knowledge import KnowledgeIndex, open_index
from gigcx.knowledge.documents import ChunkingOptions

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_BRAND = REPO / "examples" / "kestrel"


@pytest.fixture
def brand_dir(tmp_path: Path) -> Path:
    """A copy of the example brand (config + knowledge) that a test may edit freely."""
    target = tmp_path / "kestrel"
    shutil.copytree(EXAMPLE_BRAND, target, ignore=shutil.ignore_patterns(".gigcx"))
    return target


@pytest.fixture
def settings(brand_dir: Path) -> Settings:
    return load_settings(brand_dir / "gigcx.yaml")


@pytest.fixture
def knowledge_dir(settings: Settings) -> Path:
    return settings.knowledge.path


@pytest.fixture
def index(settings: Settings) -> KnowledgeIndex:
    return open_index(settings)


@pytest.fixture
def options(settings: Settings) -> ChunkingOptions:
    return ChunkingOptions(settings.knowledge.chunk_size, settings.knowledge.chunk_overlap)
