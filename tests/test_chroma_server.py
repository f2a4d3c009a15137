"""The knowledge index on a Chroma server (`chroma run`), chosen by configuration alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gigcx.cli import app
from tests.helpers.processes import chroma_server

runner = CliRunner()


@pytest.fixture
def chroma_url(tmp_path: Path) -> Iterator[str]:
    with chroma_server(tmp_path / "chroma-data") as url:
        yield url


def test_sync_and_search_against_a_chroma_server(
    brand_dir: Path, chroma_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIGCX_INDEX__URL", chroma_url)
    config = str(brand_dir / "gigcx.yaml")

    first = runner.invoke(app, ["knowledge", "sync", "-c", config, "--json"])
    second = runner.invoke(app, ["knowledge", "sync", "-c", config, "--json"])
    search = runner.invoke(
        app, ["knowledge", "search", "-c", config, "--json", "do you ship to canada"]
    )

    assert first.exit_code == 0 and '"added": 21' in first.output
    assert '"unchanged": 21' in second.output and '"chunks_embedded": 0' in second.output
    assert '"path": "general/shipping.md"' in search.output
    assert not (brand_dir / ".gigcx").exists(), "a server index must not write a local folder"
