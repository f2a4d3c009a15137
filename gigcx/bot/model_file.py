"""Reading a trained model the bot ships as JSON (answerability, staff topics): a missing,
unreadable, outdated or incomplete file is refused with the command that rebuilds it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

Model = TypeVar("Model")


def read_model_file(
    path: Path,
    what: str,
    rebuild: str,
    error: type[Exception],
    version: int,
    same_features: Callable[[dict[str, Any]], bool],
    build: Callable[[dict[str, Any]], Model],
) -> Model:
    """The model `build` makes of the file's JSON, or `error` naming the file and `rebuild`.

    The file must say it was trained for features `version`, and `same_features` must accept it.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"the {what} {path} is missing; rebuild it with `{rebuild}`") from None
    except (OSError, ValueError) as problem:
        raise error(
            f"cannot read the {what} {path} ({problem}); rebuild it with `{rebuild}`"
        ) from None
    found = data.get("features_version") if isinstance(data, dict) else None
    if found != version or not same_features(data):
        raise error(
            f"the {what} {path} was trained for features version {found}, this gigcx computes "
            f"version {version}; rebuild it with `{rebuild}`"
        )
    try:
        return build(data)
    except (KeyError, TypeError, ValueError) as problem:
        raise error(
            f"the {what} {path} is incomplete ({problem}); rebuild it with `{rebuild}`"
        ) from None
