"""What every `gigcx` command shares: the consoles, the --config option, exit codes and
turning a user's mistake into one clear line on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gigcx.config import ConfigError, Settings, load_settings
from gigcx.knowledge import KnowledgeIndex, KnowledgeIndexError, open_index

out = Console()
err = Console(stderr=True)

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
    try:
        settings = load_settings(config)
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
    try:
        return open_index(settings)
    except KnowledgeIndexError as error:
        raise fail(str(error)) from None
