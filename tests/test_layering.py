"""The house is one-way: connectors (and the CLI) -> app -> bot -> escalation -> store and
knowledge -> config -> the ground (events, metrics, validation). Every import in gigcx/ is
read from the source (at module level, inside functions, under TYPE_CHECKING); one that runs
from a lower room to a higher one, or sideways between two rooms of one floor where that is
not allowed below, fails with the file, the line and the arrow."""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gigcx"

# Module (or package) -> room; a module belongs to the room of its longest listed prefix.
ROOMS = {
    "gigcx.__main__": "cli",
    "gigcx.cli": "cli",
    "gigcx.connectors": "connectors",
    "gigcx.evaluation": "evaluation",  # runs cases through a started app: above app
    "gigcx.app": "app",
    "gigcx.plugins": "app",  # the seams app.start() builds answerers and channels through
    "gigcx.bot": "bot",
    "gigcx.insights": "insights",  # what brand teams read: reads escalation, store, knowledge
    "gigcx.escalation": "escalation",
    "gigcx.store": "store",
    "gigcx.knowledge": "knowledge",
    "gigcx.config": "config",
    "gigcx.default_patterns": "config",  # the defaults of config's pattern lists
    "gigcx.events": "events",
    "gigcx.metrics": "metrics",
    "gigcx.validation": "validation",
    "gigcx": "package",  # gigcx/__init__.py: the version, nothing else
}

# Top floor first. A room may import any room on a floor below its own.
FLOORS = [
    {"cli", "connectors"},
    {"evaluation"},
    {"app"},
    {"bot", "insights"},
    {"escalation"},
    {"store", "knowledge"},
    {"config"},
    {"events", "metrics", "validation", "package"},
]

# Arrows between two rooms of one floor that are allowed, and why; every other one fails.
SIDEWAYS = {
    ("cli", "connectors"): "`gigcx serve` runs the web app",
}


@dataclass(frozen=True)
class Arrow:
    path: Path
    line: int
    source: str  # importing module
    target: str  # imported module (or package)


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_in(root: Path) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imports_in(root: Path) -> list[Arrow]:
    """Every import of a module of `root`'s package by a module of it, wherever it stands."""
    known = modules_in(root)
    package = root.name
    arrows = []
    for source, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _imported(node, source, is_package, known):
                if target == package or target.startswith(package + "."):
                    arrows.append(Arrow(path, node.lineno, source, target))
    return arrows


def _imported(node: ast.AST, source: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = source.split(".")
            parent = parts if is_package else parts[:-1]
            parent = parent[: len(parent) - (node.level - 1)]
            base = ".".join([*parent, base] if base else parent)
        # `from gigcx import events` imports the module gigcx.events, not the package.
        return [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
            for alias in node.names
        ]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and getattr(node.func, "attr", getattr(node.func, "id", None))
        in ("import_module", "__import__")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return [node.args[0].value]
    return []


def room_of(module: str) -> str | None:
    prefix = module
    while prefix:
        if prefix in ROOMS:
            return ROOMS[prefix]
        prefix = prefix.rpartition(".")[0]
    return None


def floor_of(room: str) -> int:
    return next(number for number, rooms in enumerate(FLOORS) if room in rooms)


def wrong_way(arrows: list[Arrow]) -> list[str]:
    """One line per arrow that runs up, or sideways where not allowed."""
    problems = []
    for arrow in arrows:
        source, target = room_of(arrow.source), room_of(arrow.target)
        if source is None or target is None or source == target:
            continue
        where = f"{arrow.path}:{arrow.line}: {arrow.source} ({source}) -> {arrow.target} ({target})"
        if floor_of(target) < floor_of(source):
            problems.append(f"{where} runs up: {target} stands above {source}")
        elif floor_of(target) == floor_of(source) and (source, target) not in SIDEWAYS:
            problems.append(f"{where} runs sideways on one floor, which is not allowed")
    return problems


def test_every_module_is_in_a_room_and_every_room_on_a_floor() -> None:
    roomless = [str(path) for module, path in modules_in(PACKAGE).items() if not room_of(module)]
    assert not roomless, f"add these to ROOMS in {__file__}: {roomless}"
    floored = set().union(*FLOORS)
    assert set(ROOMS.values()) <= floored, set(ROOMS.values()) - floored
    assert all(floor_of(a) == floor_of(b) for a, b in SIDEWAYS)


def test_imports_run_one_way_down_the_house() -> None:
    problems = wrong_way(imports_in(PACKAGE))
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_the_check_names_the_file_line_and_arrow_of_an_import_that_runs_up(
    tmp_path: Path,
) -> None:
    root = tmp_path / "gigcx"
    (root / "bot").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "app.py").write_text("from gigcx.bot import decision\n")
    (root / "bot" / "__init__.py").write_text("")
    (root / "bot" / "decision.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from gigcx.app import GigCX\n"
    )
    (root / "bot" / "calibration.py").write_text("def run():\n    from .. import app\n")
    problems = wrong_way(imports_in(root))
    assert problems == [
        f"{root / 'bot' / 'calibration.py'}:2: gigcx.bot.calibration (bot) -> gigcx.app (app) "
        "runs up: app stands above bot",
        f"{root / 'bot' / 'decision.py'}:4: gigcx.bot.decision (bot) -> gigcx.app (app) "
        "runs up: app stands above bot",
    ]


# Names that many packages share by design, each the same role in its own package.
SHARED_NAMES = {
    "__init__.py": "every package has one: the package's face",
}


def test_no_two_modules_share_a_name_in_different_packages() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        by_name[path.name].append(path.relative_to(PACKAGE.parent).as_posix())
    clashes = {
        name: paths
        for name, paths in by_name.items()
        if len(paths) > 1 and name not in SHARED_NAMES
    }
    assert not clashes, f"modules that share a name (rename one to say what it is): {clashes}"
