"""`gigcx plugins`: the answerers and channels installed (gigcx's own and other packages'),
whether the brand's settings use them, and the settings each one reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from rich.markup import escape
from rich.table import Table

from gigcx.cli.common import ConfigOption, JsonOption, fail, out


@dataclass(frozen=True)
class PluginRow:
    name: str
    kind: str  # "answerer", "customer channel" or "expert channel"
    package: str
    version: str
    entry_point: str
    enabled: bool
    settings: list[str]  # the settings it reads, as paths in gigcx.yaml
    description: str = ""
    problem: str = ""  # why it cannot be used (it fails to load, or its settings are bad)


def plugins(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the installed answerers and channels: kind, package, whether this brand's
    settings use them (--config), and the settings they read."""
    from gigcx.config import ANSWERERS_GROUP, CHANNELS_GROUP, ConfigError, Settings, load_settings

    refused: ConfigError | None = None
    try:
        settings = load_settings(config)
    except ConfigError as error:
        # The listing is where a user finds the right name for a refused setting: it still
        # comes, against the defaults, and the command fails after it.
        refused = error
        try:
            settings = Settings()
        except Exception:
            raise fail(str(error)) from None
    rows = [
        _row(settings, group, where, entry)
        for group in (ANSWERERS_GROUP, CHANNELS_GROUP)
        for where, entry in _installed(group)
    ]
    if as_json:
        out.print_json(json.dumps({"plugins": [asdict(row) for row in rows]}))
    else:
        _print_table(settings.source if refused is None else "defaults", rows)
    if refused is not None:
        raise fail(f"{refused}\n(the list above is against the default settings)")


def _print_table(source: str, rows: list[PluginRow]) -> None:
    table = Table(title=f"Plugins ({source})")
    for column in ("name", "kind", "package", "enabled", "settings"):
        table.add_column(column)
    for row in rows:
        enabled = "[red]broken[/]" if row.problem else ("yes" if row.enabled else "no")
        settings_text = ", ".join(row.settings) or "none"
        detail = f"{row.description}\n" if row.description else ""
        if row.problem:
            detail += f"[red]{escape(row.problem)}[/]"
        table.add_row(
            escape(row.name),
            row.kind,
            escape(f"{row.package} {row.version}"),
            enabled,
            escape(settings_text) + (f"\n{detail.rstrip()}" if detail else ""),
        )
    out.print(table)


def _installed(group: str) -> list[Any]:
    from gigcx.plugins import installed

    return installed(group)


def _row(settings: Any, group: str, where: Any, entry: Any) -> PluginRow:
    from gigcx.config import ANSWERERS_GROUP, ConfigError
    from gigcx.plugins import load, plugin_settings

    answerer = group == ANSWERERS_GROUP
    base = {
        "name": where.name,
        "package": where.package,
        "version": where.version,
        "entry_point": f"{where.group}: {where.name} = {where.target}",
    }
    try:
        plugin = load(entry)
    except ConfigError as error:
        kind = "answerer" if answerer else "channel"
        return PluginRow(kind=kind, enabled=False, settings=[], problem=str(error), **base)
    kind = "answerer" if answerer else f"{getattr(plugin, 'kind', 'expert')} channel"
    problem = ""
    try:
        enabled = settings.bot.mode == where.name if answerer else bool(plugin.enabled(settings))
        if enabled or where.name in settings.plugins:
            plugin_settings(settings, plugin)
    except ConfigError as error:
        enabled, problem = False, str(error)
    except Exception as error:  # a plugin's own bug: shown, not a traceback
        enabled, problem = False, f"{type(error).__name__}: {error}"
    return PluginRow(
        kind=kind,
        enabled=enabled,
        settings=_settings_fields(plugin),
        description=str(getattr(plugin, "description", "") or ""),
        problem=problem,
        **base,
    )


def _settings_fields(plugin: Any) -> list[str]:
    """`plugins.<name>.<field>` for each field of the plugin's settings model."""
    model = plugin.settings_model
    if model is None:
        section = getattr(plugin, "settings_section", None)
        return [f"{section} (gigcx's own section)"] if section else []
    return [f"plugins.{plugin.name}.{field}" for field in model.model_fields]
