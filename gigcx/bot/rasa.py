"""`bot.mode: rasa`: a Rasa assistant answers; gigcx hands over what Rasa cannot.

Each customer message goes to the Rasa server's REST channel (`POST /webhooks/rest/webhook`,
sender = the conversation id); Rasa's text replies become the bot's reply, its buttons the
reply's quick replies. The conversation's tracker (`GET /conversations/{id}/tracker`, Rasa's
HTTP API: start Rasa with `--enable-api`) says which intent Rasa read and which actions it ran.
gigcx hands the conversation to a person, with its usual packet and routes, when

- Rasa's custom action `action_gigcx_handoff` (the `gigcx-rasa` package, integrations/rasa)
  sent its custom payload `{"gigcx_handoff": {"reason", "route", "slots", "note"}}`;
- Rasa read a handoff intent (`bot.rasa.handoff_intents`, `human_handoff` by default);
- Rasa fell back (`bot.rasa.fallback_intents` / `fallback_actions`);
- Rasa said nothing at all;
- Rasa is down, slow (`bot.rasa.timeout_seconds`) or answers with an error: reason
  `bot_unavailable`, with the cause in the log.

The expert's packet gets what Rasa knew: the intent and its confidence, the active form and
the filled slots (masked like the rest of the packet).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from gigcx.bot.answerer import (
    AnswererContext,
    AnswererUnavailable,
    CustomerMessage,
    Escalation,
    QuickReply,
    Reply,
)
from gigcx.bot.decision import Decision
from gigcx.config import RasaSettings

log = logging.getLogger(__name__)

# The custom payload `action_gigcx_handoff` sends (integrations/rasa/gigcx_rasa/actions.py).
HANDOFF_KEY = "gigcx_handoff"
# Rasa's own bookkeeping slots: never worth an expert's time.
_RASA_SLOTS = frozenset(
    {
        "requested_slot",
        "session_started_metadata",
        "gigcx_handoff_reason",
        "gigcx_handoff_route",
        "gigcx_handoff_note",
    }
)
_REASON = re.compile(r"[^a-z0-9_]+")
FACT_CHARS = 300
MAX_FACTS = 20


class RasaAnswerer:
    """Answers through a Rasa server (see the module docstring)."""

    def __init__(self, settings: RasaSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.client = client or httpx.AsyncClient(timeout=settings.timeout_seconds)
        token = settings.token.get_secret_value() if settings.token else None
        self._auth = {"token": token} if token else {}

    async def answer(self, message: CustomerMessage) -> Reply | Escalation:
        sent = _payload_for(message)
        responses = await self._call(
            "POST",
            "/webhooks/rest/webhook",
            json={"sender": message.conversation_id, "message": sent},
        )
        if not isinstance(responses, list):
            raise AnswererUnavailable(f"Rasa at {self.settings.url} answered {responses!r}")
        tracker = await self._call(
            "GET",
            f"/conversations/{quote(message.conversation_id, safe='')}/tracker",
            params={"include_events": "AFTER_RESTART"},
        )
        if not isinstance(tracker, dict):
            raise AnswererUnavailable(f"Rasa at {self.settings.url}: no tracker ({tracker!r})")
        return self._outcome(message.text, responses, tracker)

    async def check(self) -> list[str]:
        """For /readyz: Rasa answers, has a model, and its REST channel is on."""
        try:
            status = await self._call("GET", "/status")
            await self._call("GET", "/webhooks/rest/")
        except AnswererUnavailable as error:
            return [str(error)]
        if not isinstance(status, dict) or not status.get("model_file"):
            return [f"Rasa at {self.settings.url} has no trained model loaded"]
        return []

    async def close(self) -> None:
        await self.client.aclose()

    # ------------------------------------------------------------------ the call

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.settings.url + path
        params = {**kwargs.pop("params", {}), **self._auth}
        try:
            response = await self.client.request(
                method, url, params=params, timeout=self.settings.timeout_seconds, **kwargs
            )
        except httpx.TimeoutException:
            raise AnswererUnavailable(
                f"Rasa at {self.settings.url} did not answer {method} {path} within "
                f"{self.settings.timeout_seconds:g} s"
            ) from None
        except httpx.HTTPError as error:
            raise AnswererUnavailable(
                f"Rasa at {self.settings.url} cannot be reached ({type(error).__name__}: "
                f"{error or 'no detail'})"
            ) from None
        if response.status_code == 401 or response.status_code == 403:
            raise AnswererUnavailable(
                f"Rasa at {self.settings.url} refused {method} {path} ({response.status_code}): "
                "is bot.rasa.token the server's --auth-token?"
            )
        if response.status_code == 404 and path.startswith("/conversations"):
            raise AnswererUnavailable(
                f"Rasa at {self.settings.url} has no HTTP API: start it with --enable-api"
            )
        if response.status_code == 404 and path.startswith("/webhooks/rest"):
            raise AnswererUnavailable(
                f"Rasa at {self.settings.url} has no REST channel: add `rest:` to its "
                "credentials.yml"
            )
        if response.status_code >= 400:
            raise AnswererUnavailable(
                f"Rasa at {self.settings.url} answered {method} {path} with "
                f"{response.status_code}: {response.text[:200]}"
            )
        try:
            return response.json()
        except ValueError:
            raise AnswererUnavailable(
                f"Rasa at {self.settings.url} answered {method} {path} with something not JSON"
            ) from None

    # ------------------------------------------------------------------ the outcome

    def _outcome(
        self, text: str, responses: list[Any], tracker: dict[str, Any]
    ) -> Reply | Escalation:
        latest = tracker.get("latest_message") or {}
        intent = latest.get("intent") or {}
        intent_name = str(intent.get("name") or "")
        confidence = _number(intent.get("confidence"))
        actions = _actions_of_last_turn(tracker.get("events") or [])
        facts = _facts(intent_name, confidence, tracker)
        tags = (f"rasa_intent:{intent_name}",) if intent_name else ()

        handoff = next(
            (
                item["custom"][HANDOFF_KEY]
                for item in responses
                if isinstance(item, dict)
                and isinstance(item.get("custom"), dict)
                and HANDOFF_KEY in item["custom"]
            ),
            None,
        )
        if handoff is not None:
            return _handoff_escalation(handoff, facts, tags, text, confidence)
        decision = Decision(action="escalate", query=text, confidence=confidence)
        if intent_name in self.settings.handoff_intents:
            return Escalation("human_requested", tags=tags, decision=decision, facts=facts)
        # An unrecognised message inside a form is often the answer the form asked for (a
        # problem description): while a form is still active, Rasa's own reply goes out.
        in_form = bool((tracker.get("active_loop") or {}).get("name"))
        fell_back = set(actions) & set(self.settings.fallback_actions)
        if fell_back or (intent_name in self.settings.fallback_intents and not in_form):
            return Escalation("rasa_fallback", tags=tags, decision=decision, facts=facts)

        texts: list[str] = []
        buttons: list[QuickReply] = []
        for item in responses:
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("text"), str) and item["text"].strip():
                texts.append(item["text"].strip())
            if isinstance(item.get("image"), str) and item["image"].strip():
                texts.append(item["image"].strip())
            for button in item.get("buttons") or []:
                if isinstance(button, dict) and str(button.get("title") or "").strip():
                    payload = button.get("payload")
                    buttons.append(
                        QuickReply(str(button["title"]).strip(), str(payload) if payload else None)
                    )
        if not texts:
            return Escalation("rasa_no_reply", tags=tags, decision=decision, facts=facts)
        return Reply(
            "\n\n".join(texts),
            quick_replies=buttons,
            decision=Decision(action="answer", query=text, confidence=confidence),
            meta={"answered_by": "rasa", "rasa": {"intent": intent_name, "actions": actions}},
        )


def _payload_for(message: CustomerMessage) -> str:
    """What to send Rasa: a button's payload when the customer clicked (or typed) the title
    of a button under the bot's last reply, else their text. A customer's own text never
    starts with `/`: Rasa would read `/restart` or `/inform{"slot": ...}` as an intent and
    entities given directly, so a customer could set slots or skip the assistant's checks."""
    said = message.text.strip().casefold()
    for turn in reversed(message.history):
        if turn.author == "customer":
            break
        if turn.author != "bot":
            continue
        for button in turn.quick_replies:
            if str(button.get("title", "")).strip().casefold() == said:
                return str(button.get("payload") or message.text)
        break
    return message.text.strip().lstrip("/").strip() or message.text


def _actions_of_last_turn(events: Sequence[Any]) -> list[str]:
    """The actions Rasa ran after the newest `user` event, in order."""
    actions: list[str] = []
    for event in reversed(events):
        if not isinstance(event, dict):
            continue
        if event.get("event") == "user":
            break
        if event.get("event") == "action" and event.get("name") != "action_listen":
            actions.append(str(event.get("name")))
    return actions[::-1]


def _facts(intent: str, confidence: float, tracker: Mapping[str, Any]) -> dict[str, str]:
    facts: dict[str, str] = {}
    if intent:
        facts["Rasa intent"] = f"{intent} ({confidence:.2f})"
    loop = tracker.get("active_loop") or {}
    if isinstance(loop, dict) and loop.get("name"):
        facts["Rasa form"] = str(loop["name"])
    for name, value in sorted((tracker.get("slots") or {}).items()):
        if name in _RASA_SLOTS or value is None or value == [] or value == "":
            continue
        facts[f"slot {name}"] = _text(value)
    return dict(list(facts.items())[:MAX_FACTS])


def _handoff_escalation(
    handoff: Any,
    facts: dict[str, str],
    tags: tuple[str, ...],
    text: str,
    confidence: float,
) -> Escalation:
    """The escalation `action_gigcx_handoff` asked for: its reason, route and slots."""
    handoff = handoff if isinstance(handoff, dict) else {}
    reason = _REASON.sub("_", str(handoff.get("reason") or "").strip().lower()).strip("_")
    route = handoff.get("route")
    facts = dict(facts)
    if handoff.get("note"):
        facts["Rasa note"] = _text(handoff["note"])
    for name, value in sorted((handoff.get("slots") or {}).items()):
        if value is not None and name not in _RASA_SLOTS:
            facts[f"slot {name}"] = _text(value)
    return Escalation(
        reason[:32] or "rasa_handoff",
        route=str(route) if route in ("expert", "staff") else None,
        tags=tags,
        decision=Decision(action="escalate", query=text, confidence=confidence),
        facts=dict(list(facts.items())[:MAX_FACTS]),
    )


def _text(value: Any) -> str:
    if isinstance(value, list):
        value = ", ".join(str(item) for item in value)
    flat = " ".join(str(value).split())
    return flat if len(flat) <= FACT_CHARS else flat[: FACT_CHARS - 3] + "..."


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class _RasaPlugin:
    name = "rasa"
    description = "a Rasa 3 assistant answers through its REST channel; gigcx hands over"
    settings_model = None
    settings_section = "bot.rasa"

    def create(self, context: AnswererContext, plugin_settings: Any) -> RasaAnswerer:
        return RasaAnswerer(context.settings.bot.rasa)


# The object the `gigcx.answerers` entry point `rasa` names.
plugin = _RasaPlugin()
