"""The `opening_hours` answerer: "are you open?", "when do you close on saturday?" answered
from the store hours in its settings; every other message goes to gigcx's quote answerer
(or, with `otherwise: escalate`, to a person).

Select it with `bot.mode: opening_hours`; its settings live under `plugins: {opening_hours:
...}` in gigcx.yaml and are checked by `OpeningHoursSettings`.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gigcx.bot.answerer import (
    Answerer,
    AnswererContext,
    CustomerMessage,
    Escalation,
    Reply,
)
from gigcx.bot.answerers import QuoteAnswerer

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = dict(
    zip(
        DAYS,
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        strict=True,
    )
)
_SPAN = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
ABOUT_HOURS = re.compile(
    r"\b(open(ing)?|close[sd]?|closing|hours|business hours)\b", flags=re.IGNORECASE
)


class OpeningHoursSettings(BaseModel):
    """`plugins.opening_hours` in gigcx.yaml."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = Field("UTC", description="IANA time zone of the store, e.g. Europe/Berlin.")
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], str] = Field(
        default_factory=dict,
        description='Opening hours per day, "09:00-18:00"; a day left out is closed.',
    )
    otherwise: Literal["quote", "escalate"] = Field(
        "quote", description="Other messages: gigcx's quote answerer, or a person."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (use e.g. Europe/Berlin)") from None
        return value

    @field_validator("hours")
    @classmethod
    def _spans(cls, value: dict[str, str]) -> dict[str, str]:
        for day, span in value.items():
            match = _SPAN.match(span.strip())
            if match is None or not _opens_before_closing(*map(int, match.groups())):
                raise ValueError(f"{day}: {span!r} is not a span like 09:00-18:00")
        return value


def _opens_before_closing(h1: int, m1: int, h2: int, m2: int) -> bool:
    return h1 < 24 and h2 <= 24 and m1 < 60 and m2 < 60 and (h1, m1) < (h2, m2)


class OpeningHoursAnswerer:
    def __init__(self, settings: OpeningHoursSettings, otherwise: Answerer | None) -> None:
        self.settings = settings
        self.otherwise = otherwise
        self.clock = lambda: datetime.now(ZoneInfo(settings.timezone))

    async def answer(self, message: CustomerMessage) -> Reply | Escalation:
        if ABOUT_HOURS.search(message.text):
            return Reply(self._hours_text(), meta={"answered_by": "opening_hours"})
        if self.otherwise is None:
            return Escalation("not_about_opening_hours", tags=("topic:store",))
        return await self.otherwise.answer(message)

    async def check(self) -> list[str]:
        return [] if self.settings.hours else ["plugins.opening_hours.hours is empty"]

    def _hours_text(self) -> str:
        now = self.clock()
        today = DAYS[now.weekday()]
        span = self.settings.hours.get(today)
        if span is None:
            state = "We're closed today."
        else:
            opens, closes = (time.fromisoformat(part.zfill(5)) for part in span.split("-"))
            state = (
                f"We're open now, until {closes:%H:%M}."
                if opens <= now.time() < closes
                else f"We're closed right now; today's hours are {span}."
            )
        week = "; ".join(
            f"{DAY_NAMES[day]} {self.settings.hours.get(day, 'closed')}" for day in DAYS
        )
        return f"{state} Our hours ({self.settings.timezone}): {week}."


class OpeningHoursPlugin:
    """The object the `gigcx.answerers` entry point `opening_hours` names."""

    name = "opening_hours"
    description = "answers questions about the store's opening hours; the rest goes on"
    settings_model = OpeningHoursSettings

    def create(
        self, context: AnswererContext, plugin_settings: OpeningHoursSettings
    ) -> OpeningHoursAnswerer:
        quote = QuoteAnswerer(context) if plugin_settings.otherwise == "quote" else None
        return OpeningHoursAnswerer(plugin_settings, quote)


plugin = OpeningHoursPlugin()
