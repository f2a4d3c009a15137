"""Plugins as a brand installs them: the example package in examples/plugins (installed by
`make install`) adds the `opening_hours` answerer and the `handoff_webhook` channel through
their entry points, with settings of their own in gigcx.yaml."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from typer.testing import CliRunner

from gigcx.app import GigCX, start
from gigcx.bot.answerer import AnswererUnavailable, CustomerMessage, Escalation, Reply
from gigcx.cli import app
from gigcx.config import ConfigError, Settings, load_settings
from gigcx.connectors.web import create_app
from gigcx.plugins import PluginError, load
from tests.helpers.live_server import live_server
from tests.helpers.local_server import JSONHandler, LocalServer

KEY = "kestrel-demo-widget-key"
HOURS = {day: "09:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")} | {"sat": "10:00-14:00"}
runner = CliRunner()


def with_plugins(settings: Settings, mode: str | None = None, **sections: Any) -> Settings:
    bot = settings.bot.model_copy(update={"mode": mode or settings.bot.mode})
    return settings.model_copy(update={"bot": bot, "plugins": sections})


def write_config(brand_dir: Path, text: str) -> Path:
    config = brand_dir / "gigcx.yaml"
    config.write_text(config.read_text() + text)
    return config


async def chat(client: httpx.AsyncClient, *texts: str) -> list[dict[str, Any]]:
    created = await client.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})
    assert created.status_code == 201, created.text
    body = created.json()
    auth = {"Authorization": f"Bearer {body['token']}"}
    turns = []
    for text in texts:
        turn = await client.post(
            f"/v1/conversations/{body['conversation_id']}/messages",
            json={"text": text},
            headers=auth,
        )
        assert turn.status_code == 201, turn.text
        turns.append(turn.json())
    return turns


def test_gigcx_plugins_lists_the_installed_answerers_and_channels(brand_dir: Path) -> None:
    config = write_config(
        brand_dir,
        "\nbot:\n  mode: opening_hours\nplugins:\n  opening_hours:\n    timezone: Europe/Berlin\n",
    )
    listed = runner.invoke(app, ["plugins", "--config", str(config), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.output)["plugins"]}
    assert {"quote", "llm", "slack", "opening_hours", "handoff_webhook"} <= set(rows)
    hours = rows["opening_hours"]
    assert (hours["kind"], hours["package"], hours["enabled"]) == (
        "answerer",
        "gigcx-example-plugins",
        True,
    )
    assert "plugins.opening_hours.timezone" in hours["settings"]
    assert rows["quote"]["enabled"] is False  # bot.mode names another answerer
    webhook = rows["handoff_webhook"]
    assert (webhook["kind"], webhook["enabled"]) == ("expert channel", False)
    assert rows["slack"]["package"] == "gigcx" and rows["slack"]["kind"] == "expert channel"

    table = runner.invoke(app, ["plugins", "--config", str(config)])
    assert table.exit_code == 0, table.output
    assert "gigcx-example-plugins" in table.output and "opening_hours" in table.output


async def test_a_customer_is_answered_by_the_example_answerer_over_the_api(
    brand_settings: Settings,
) -> None:
    settings = with_plugins(
        brand_settings, "opening_hours", opening_hours={"timezone": "UTC", "hours": HOURS}
    )
    runtime = await start(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(settings, runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            hours, pairing = await chat(
                client, "are you open on saturday?", "how do I pair my X2 with my phone?"
            )
        [reply] = hours["replies"]
        assert "Saturday 10:00-14:00" in reply["text"] and "Sunday closed" in reply["text"]
        assert hours["state"] == "bot"
        # Anything else goes on to gigcx's own quote answerer, which the plugin wraps.
        [quoted] = pairing["replies"]
        assert quoted["citations"][0]["path"] == "x2/pairing.md"
    finally:
        await runtime.close()


async def test_the_example_answerer_hands_other_questions_to_a_person(
    brand_settings: Settings,
) -> None:
    settings = with_plugins(
        brand_settings,
        "opening_hours",
        opening_hours={"hours": HOURS, "otherwise": "escalate"},
    )
    runtime = await start(settings)
    try:
        conversation = await runtime.front_line.start_conversation()
        turn = await runtime.front_line.handle_customer_message(
            conversation.id, "how do I pair my X2 with my phone?"
        )
        assert turn.state == "waiting"
        assert turn.decision is not None and turn.decision.reason == "not_about_opening_hours"
        handoff = await runtime.store.get_handoff(turn.handoff_id or "")
        assert handoff.route == "expert" and handoff.tags == ["topic:store"]
    finally:
        await runtime.close()


async def test_an_answerer_whose_backend_is_down_hands_over_with_bot_unavailable(
    gigcx_runtime: GigCX, caplog: Any
) -> None:
    """What a Rasa-style answerer does when its server does not answer."""
    asked: list[CustomerMessage] = []

    class DownBot:
        async def answer(self, message: CustomerMessage) -> Reply | Escalation:
            asked.append(message)
            raise AnswererUnavailable("rasa at http://127.0.0.1:5005 refused the connection")

    gigcx_runtime.front_line.answerer = DownBot()
    conversation = await gigcx_runtime.front_line.start_conversation()
    turn = await gigcx_runtime.front_line.handle_customer_message(conversation.id, "hello?")
    assert turn.state == "waiting"
    assert turn.decision is not None and turn.decision.reason == "bot_unavailable"
    assert turn.replies[0].text.startswith("Sorry, I can't answer that right now.")
    assert "refused the connection" in caplog.text
    assert asked[0].conversation_id == conversation.id and asked[0].text == "hello?"


class Receiver(JSONHandler):
    """The brand's on-call tool: keeps what it was posted, with the signature header."""

    posts: ClassVar[list[tuple[dict[str, Any], str]]] = []
    raw: ClassVar[bytes] = b""

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.posts.append((json.loads(raw), self.headers.get("X-Gigcx-Signature", "")))
        Receiver.raw = raw
        self.send_json(200, {"ok": True})


async def test_the_example_channel_is_mounted_started_and_stopped(
    brand_settings: Settings,
) -> None:
    settings = with_plugins(
        brand_settings, handoff_webhook={"url": "http://127.0.0.1:9/hook", "poll_seconds": 0.2}
    )
    async with live_server(settings) as server:
        assert [c.name for c in server.runtime.channels] == ["handoff_webhook"]
        channel = server.app.state.channels["handoff_webhook"]
        async with httpx.AsyncClient(base_url=server.url) as client:
            status = (await client.get("/plugins/handoff_webhook/status")).json()
            assert status["running"] is True
            # The web server mounted no channel the settings leave off.
            assert (await client.post("/slack/events", json={})).status_code == 404
    assert channel._task is not None and channel._task.done(), "stopped with the server"


async def test_the_example_channel_posts_a_signed_handoff_from_the_outbox(
    brand_settings: Settings,
) -> None:
    Receiver.posts = []
    with LocalServer(Receiver) as receiver:
        url = receiver.base_url.removesuffix("/v1") + "/hook"
        webhook = {"url": url, "secret": "s3cret", "poll_seconds": 0.1}
        async with live_server(with_plugins(brand_settings, handoff_webhook=webhook)) as server:
            async with httpx.AsyncClient(base_url=server.url) as client:
                await chat(client, "I want to talk to a person")
            for _ in range(100):
                if Receiver.posts:
                    break
                await asyncio.sleep(0.1)
    [(post, signature)] = Receiver.posts
    assert (post["change"], post["state"], post["reason"]) == (
        "requested",
        "waiting",
        "human_requested",
    )
    expected = hmac.new(b"s3cret", Receiver.raw, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"


def test_a_bad_plugin_setting_names_the_file_and_the_field(brand_dir: Path) -> None:
    config = write_config(
        brand_dir,
        "\nbot:\n  mode: opening_hours\nplugins:\n  opening_hours:\n"
        "    timezone: Mars/Olympus\n    hours: {sat: '10-14'}\n",
    )
    result = runner.invoke(app, ["ask", "--config", str(config), "-m", "hi"])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert str(config) in said
    assert "plugins.opening_hours.timezone: 'Mars/Olympus' is not a time zone" in said
    assert "plugins.opening_hours.hours: sat: '10-14' is not a span" in said


async def test_the_runtime_refuses_a_plugin_setting_its_model_refuses(
    brand_settings: Settings,
) -> None:
    settings = with_plugins(brand_settings, handoff_webhook={"url": "not a url"})
    with pytest.raises(ConfigError, match=r"plugins\.handoff_webhook\.url: "):
        await start(settings)


def test_an_unknown_answerer_or_plugin_lists_the_installed_ones(tmp_path: Path) -> None:
    config = tmp_path / "gigcx.yaml"
    config.write_text("brand: acme\nbot:\n  mode: dialogflow\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert str(config) in str(error.value)
    assert (
        "bot.mode: 'dialogflow' is not allowed; use one of: 'quote', 'llm', 'opening_hours' "
        "or 'rasa' "
        "(the installed answerers)" in str(error.value)
    )
    config.write_text("brand: acme\nplugins:\n  opening_hour: {}\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert (
        "no installed plugin is named 'opening_hour'; installed: 'handoff_webhook' or "
        "'opening_hours'" in str(error.value)
    ), "gigcx's own plugins read their own sections, so they are not offered here"

    # `gigcx plugins` is where the right name is found: it lists them, then fails.
    result = runner.invoke(app, ["plugins", "--config", str(config)])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "opening_hours" in said and "handoff_webhook" in said
    assert "no installed plugin is named 'opening_hour'" in said
    assert "the list above is against the default settings" in said


def test_a_plugin_that_fails_to_import_is_named_with_its_entry_point() -> None:
    broken = EntryPoint("broken", "gigcx_no_such_package.plugin:plugin", "gigcx.channels")
    with pytest.raises(PluginError) as error:
        load(broken)
    message = str(error.value)
    assert "'broken'" in message and "gigcx_no_such_package.plugin:plugin" in message
    assert "ModuleNotFoundError" in message and "Reinstall or upgrade" in message


def test_a_plugin_section_is_read_from_the_environment_too(
    brand_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIGCX_PLUGINS__OPENING_HOURS__TIMEZONE", "Europe/Berlin")
    settings = load_settings(brand_dir / "gigcx.yaml")
    assert settings.plugins == {"opening_hours": {"timezone": "Europe/Berlin"}}
