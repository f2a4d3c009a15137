"""What every `gigcx` command shares: the consoles, the --config option, exit codes and
turning a user's mistake into one clear line on stderr.

The CLI's modules import the heavy parts (the knowledge index, the bot, the web app) inside
the commands that use them, so `gigcx --help`, `gigcx experts list` or `gigcx ledger export`
never load chromadb, langchain, the embedding model or the web app, and an unchanged
`gigcx knowledge sync` loads chromadb but not the model (tests/test_cli_imports.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table

from gigcx.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from gigcx.knowledge import KnowledgeIndex

# Wide enough for any table row or passage a command prints; only used when piped.
PIPED_WIDTH = 100_000


class CommandConsole(Console):
    """A rich Console that wraps to the terminal's width, and does not wrap at all when the
    output is piped or redirected: rich would otherwise hard-wrap at 80 columns, cutting
    messages (and table rows) in the middle for `grep` and scripts."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if self.is_terminal:
            super().print(*objects, **kwargs)
            return
        blocks = [o for o in objects if isinstance(o, Table | Padding)]
        if not blocks:
            kwargs.setdefault("soft_wrap", True)
            super().print(*objects, **kwargs)
            return
        # A table or indented block at its natural width: one row, one line.
        wide = self.options.update_width(PIPED_WIDTH)
        natural = max(Measurement.get(self, wide, block).maximum for block in blocks)
        kept = self._width
        self.width = max(natural, 1)
        try:
            super().print(*objects, **kwargs)
        finally:
            self._width = kept


out = CommandConsole()
err = CommandConsole(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The brand's gigcx.yaml (default: $GIGCX_CONFIG, else ./gigcx.yaml).",
        dir_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object for machines.")]

EXIT_INPUT_PROBLEMS = 1
EXIT_CANNOT_RUN = 2


def fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(EXIT_CANNOT_RUN)


def settings_from(config: Path | None, knowledge_dir: Path | None = None) -> Settings:
    from gigcx.plugins import check_settings

    try:
        settings = load_settings(config)
        check_settings(settings)  # plugins that fail to load, their bad settings
    except ConfigError as error:
        raise fail(str(error)) from None
    if knowledge_dir is not None:
        settings = settings.model_copy(
            update={
                "knowledge": settings.knowledge.model_copy(update={"path": knowledge_dir.resolve()})
            }
        )
    return settings


def index_for(settings: Settings) -> KnowledgeIndex:
    from gigcx.knowledge import KnowledgeIndexError, open_index

    try:
        return open_index(settings)
    except KnowledgeIndexError as error:
        raise fail(str(error)) from None


def warn_empty_index() -> None:
    err.print(
        "[yellow]warning:[/] the knowledge index is empty, so the bot will escalate every "
        "question. Run `gigcx knowledge sync` first."
    )
