"""`action_gigcx_handoff`: a Rasa rule or story hands the conversation to gigcx's people.

The action sends one custom message, `{"gigcx_handoff": {...}}`, through Rasa's REST channel;
the gigcx server in front (`bot.mode: rasa`, gigcx/bot/rasa.py) reads it and opens a handoff
with the reason, the route and the slots in the expert's packet. Only `rasa_sdk` is imported
here, so the package installs in the action server's Python (3.8-3.10) without gigcx.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

HANDOFF_KEY = "gigcx_handoff"
REASON_SLOT = "gigcx_handoff_reason"
ROUTE_SLOT = "gigcx_handoff_route"
NOTE_SLOT = "gigcx_handoff_note"
DEFAULT_REASON = "rasa_handoff"
# Rasa's own bookkeeping, and this action's settings: never handed over as facts.
NOT_HANDED_OVER = frozenset(
    {"requested_slot", "session_started_metadata", REASON_SLOT, ROUTE_SLOT, NOTE_SLOT}
)


class ActionGigcxHandoff(Action):
    """Tell gigcx to hand this conversation to a person."""

    # None: every filled slot (but Rasa's own); a subclass may name the ones to send.
    slots_to_hand_over: Optional[Sequence[Text]] = None

    def name(self) -> Text:
        return "action_gigcx_handoff"

    def run(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: Dict[Text, Any],
    ) -> List[Dict[Text, Any]]:
        dispatcher.utter_message(json_message={HANDOFF_KEY: handoff_payload(tracker, self)})
        return []


def handoff_payload(tracker: Tracker, action: ActionGigcxHandoff) -> Dict[Text, Any]:
    """The payload gigcx reads: reason, route, note and the slots worth handing over."""
    slots = {
        name: value
        for name, value in tracker.current_slot_values().items()
        if name not in NOT_HANDED_OVER
        and value not in (None, "", [])
        and (action.slots_to_hand_over is None or name in action.slots_to_hand_over)
    }
    route = tracker.get_slot(ROUTE_SLOT)
    return {
        "reason": tracker.get_slot(REASON_SLOT) or DEFAULT_REASON,
        "route": route if route in ("expert", "staff") else None,
        "note": tracker.get_slot(NOTE_SLOT),
        "slots": slots,
        "intent": (tracker.latest_message or {}).get("intent", {}).get("name"),
    }
