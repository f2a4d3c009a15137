"""Plugins: answerers and channels found through entry points, with their own settings.

A package registers an answerer in the `gigcx.answerers` group and a channel in the
`gigcx.channels` group of its pyproject.toml; gigcx's own (quote, llm, slack, console) are
registered the same way. `bot.mode` picks the answerer; a channel says itself whether the
brand's settings turn it on. A plugin with a settings model reads `plugins: {<name>: ...}` in
gigcx.yaml, checked by that model with the same field-level errors as gigcx's own settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ValidationError

from gigcx.bot.answerer import Answerer, AnswererContext, AnswererPlugin
from gigcx.config import (
    ANSWERERS_GROUP,
    CHANNELS_GROUP,
    ConfigError,
    Settings,
    installed_plugin_names,
    plugin_settings_error,
)

if TYPE_CHECKING:
    import redis.asyncio as redis
    from fastapi import APIRouter

    from gigcx.bot.frontline import FrontLine
    from gigcx.escalation import Escalations
    from gigcx.events import EventBus
    from gigcx.knowledge import KnowledgeIndex
    from gigcx.store import ConversationStore

ChannelKind = Literal["customer", "expert"]


class Runtime(Protocol):
    """What a channel is given of the running brand: `gigcx.app.GigCX` is one. A channel
    reads settings (its own section), stores and reads through `store`, tells and listens
    through `bus`, and acts on handoffs through `escalations` and on turns through
    `front_line`, as the built-in channels do."""

    settings: Settings
    store: ConversationStore
    bus: EventBus
    index: KnowledgeIndex
    escalations: Escalations
    front_line: FrontLine
    redis: redis.Redis | None

    @property
    def redis_prefix(self) -> str: ...


@runtime_checkable
class Channel(Protocol):
    """A running channel of one brand: what it consumes from the store's outbox (one row per
    change whose kind is in `outbox_kinds`; empty for none), the HTTP endpoints the web server
    mounts (`router`, or None), and its life: `start` once the runtime is up (start background
    work there), `stop` before it closes, `check` for what an admin must fix (empty: fine)."""

    outbox_kinds: frozenset[str]
    router: APIRouter | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check(self) -> list[str]: ...


class ChannelPlugin(Protocol):
    """What a `gigcx.channels` entry point names. `kind`: "customer" (customers reach the
    brand through it: the widget, e-mail) or "expert" (experts and staff work handoffs in it:
    Slack, the console). `settings_model` reads `plugins.<name>` (None: it has none, or
    reads gigcx's own section). `outbox_kinds` is known before the channel is created: the
    store is opened with it."""

    name: str
    kind: ChannelKind
    settings_model: type[BaseModel] | None
    outbox_kinds: frozenset[str]

    def enabled(self, settings: Settings) -> bool: ...

    def create(self, runtime: Runtime, plugin_settings: Any) -> Channel: ...


class PluginError(ConfigError):
    """A plugin that cannot be used (it fails to import, or is not a plugin); the message
    names the entry point and the package it comes from."""


@dataclass(frozen=True)
class Installed:
    """One entry point of a plugin group, and the package that declares it."""

    group: str
    name: str
    target: str  # "module:attribute"
    package: str
    version: str

    @classmethod
    def of(cls, entry: EntryPoint) -> Installed:
        dist = entry.dist
        package = dist.metadata["Name"] if dist is not None else "(unknown package)"
        version = dist.version if dist is not None else "?"
        return cls(entry.group, entry.name, entry.value, package, version)


@dataclass(frozen=True)
class EnabledChannel:
    """A channel the brand's settings turn on, with its checked settings."""

    plugin: ChannelPlugin
    settings: Any
    installed: Installed

    @property
    def name(self) -> str:
        return self.installed.name


def installed(group: str) -> list[tuple[Installed, EntryPoint]]:
    """The plugins registered in `group`, in `installed_plugin_names` order; none imported."""
    found = {entry.name: entry for entry in entry_points(group=group)}
    return [(Installed.of(found[n]), found[n]) for n in installed_plugin_names(group)]


def load(entry: EntryPoint) -> Any:
    """The object an entry point names; a PluginError naming it and its package if it fails."""
    where = Installed.of(entry)
    try:
        plugin = entry.load()
    except Exception as error:
        raise PluginError(
            f"the plugin {where.name!r} ({where.group} entry point {where.name} = {where.target}, "
            f"from the package {where.package} {where.version}) failed to load: "
            f"{type(error).__name__}: {error}. Reinstall or upgrade that package, or uninstall it."
        ) from error
    missing = [a for a in ("name", "settings_model", "create") if not hasattr(plugin, a)]
    if missing:
        raise PluginError(
            f"{where.group} entry point {where.name} = {where.target} (from the package "
            f"{where.package} {where.version}) is not a gigcx plugin: it has no "
            f"{', '.join(missing)}"
        )
    return plugin


def plugin_settings(settings: Settings, plugin: Any) -> Any:
    """The plugin's settings: `plugins.<name>` checked by its settings model (its defaults
    when the section is absent); None for a plugin without a model."""
    model: type[BaseModel] | None = plugin.settings_model
    section = settings.plugins.get(plugin.name)
    if model is None:
        if section:
            raise ConfigError(
                f"{settings.source}: invalid configuration\n  plugins.{plugin.name}: the "
                f"{plugin.name} plugin takes no settings here (see `gigcx plugins`)"
            )
        return None
    try:
        return model.model_validate(section or {})
    except ValidationError as error:
        raise plugin_settings_error(settings.source, plugin.name, error) from None


def _find(group: str, name: str) -> tuple[Installed, EntryPoint] | None:
    return next(((i, e) for i, e in installed(group) if i.name == name), None)


def check_settings(settings: Settings) -> None:
    """Load the plugins these settings may use and check their settings, so that a plugin
    that fails to import or a bad `plugins.<name>` setting stops a command at its start
    with a message, not a server in the middle of starting with a traceback.

    gigcx's own plugins are not loaded here (they are heavy to import, and their settings
    are gigcx's own sections, already checked): the CLI's light commands stay light.
    """
    for group in (ANSWERERS_GROUP, CHANNELS_GROUP):
        for where, entry in installed(group):
            if where.package == "gigcx":
                continue
            named = where.name in settings.plugins or (
                group == ANSWERERS_GROUP and where.name == settings.bot.mode
            )
            if group == ANSWERERS_GROUP and not named:
                continue  # an answerer only runs when bot.mode names it
            plugin = load(entry)
            if named or plugin.enabled(settings):
                plugin_settings(settings, plugin)


def create_answerer(settings: Settings, context: AnswererContext) -> Answerer:
    """The answerer `bot.mode` names, created with its settings."""
    found = _find(ANSWERERS_GROUP, settings.bot.mode)
    if found is None:  # installed when the settings were read, uninstalled since
        raise ConfigError(
            f"{settings.source}: bot.mode: no installed answerer is named "
            f"{settings.bot.mode!r} (`gigcx plugins` lists them)"
        )
    plugin: AnswererPlugin = load(found[1])
    answerer = plugin.create(context, plugin_settings(settings, plugin))
    if not isinstance(answerer, Answerer):
        raise PluginError(
            f"the answerer {found[0].name!r} (from {found[0].package}) made "
            f"{type(answerer).__name__}, which has no `async answer(message)`"
        )
    return answerer


def enabled_channels(settings: Settings) -> list[EnabledChannel]:
    """The channels the brand's settings turn on, each with its checked settings."""
    enabled = []
    for where, entry in installed(CHANNELS_GROUP):
        plugin: ChannelPlugin = load(entry)
        if plugin.enabled(settings):
            enabled.append(EnabledChannel(plugin, plugin_settings(settings, plugin), where))
    return enabled


def outbox_consumers(channels: Sequence[EnabledChannel]) -> dict[str, frozenset[str]]:
    """The store's outbox consumers: each enabled channel that consumes some kinds."""
    return {
        channel.name: frozenset(channel.plugin.outbox_kinds)
        for channel in channels
        if channel.plugin.outbox_kinds
    }
