"""Shared fixtures: the example brand's knowledge copied to a temp folder, a temp index, a
fresh store, a started runtime, a browser, and a server whose experts work in a local Slack."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from gigcx.app import GigCX, start
from gigcx.config import Settings, StoreSettings, load_settings
from gigcx.escalation.roster import sync_experts
from gigcx.knowledge import KnowledgeIndex, open_index, sync_knowledge
from gigcx.knowledge.documents import ChunkingOptions
from gigcx.store import ConversationStore, create_engine, upgrade_database
from tests.helpers.live_server import LiveServer, live_server
from tests.helpers.processes import postgres_database
from tests.helpers.slack_requests import SECRET
from tests.helpers.slack_server import SlackAPIServer

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


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'gigcx.db'}"
        return
    async with postgres_database() as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[ConversationStore]:
    engine = create_engine(StoreSettings(url=store_url))
    await upgrade_database(engine)
    yield ConversationStore(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
def synced_brand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example brand with its knowledge synced once per test session (do not edit it)."""
    target = tmp_path_factory.mktemp("synced") / "kestrel"
    shutil.copytree(EXAMPLE_BRAND, target, ignore=shutil.ignore_patterns(".gigcx"))
    brand_settings = load_settings(target / "gigcx.yaml")
    sync_knowledge(brand_settings.knowledge.path, open_index(brand_settings))
    return target


@pytest.fixture
def brand_settings(synced_brand: Path, tmp_path: Path) -> Settings:
    """The synced example brand's settings with a fresh SQLite store of this test's own."""
    return load_settings(
        synced_brand / "gigcx.yaml", store={"url": f"sqlite:///{tmp_path / 'gigcx.db'}"}
    )


@pytest.fixture
async def gigcx_runtime(brand_settings: Settings) -> AsyncIterator[GigCX]:
    runtime = await start(brand_settings)
    yield runtime
    await runtime.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (no browser is ever downloaded)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        yield browser
        await browser.close()


@pytest.fixture
async def slack() -> AsyncIterator[SlackAPIServer]:
    """A local stand-in for Slack's Web API that records what gigcx posts."""
    with SlackAPIServer() as server:
        yield server


@pytest.fixture
async def server(brand_settings: Settings, slack: SlackAPIServer) -> AsyncIterator[LiveServer]:
    """The synced example brand served on a free port, its experts (examples/kestrel/
    experts.yaml) in Slack through `slack`. Test files that serve otherwise define their own."""
    settings = brand_settings.model_copy(update={"slack": slack.settings(SECRET)})
    async with live_server(settings) as live:
        await sync_experts(live.runtime.store, "kestrel", settings.escalation.experts_file)
        yield live
