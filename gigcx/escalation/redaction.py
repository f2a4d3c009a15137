"""Masking personal data (e-mail addresses, phone and card numbers) in text for handovers."""

from __future__ import annotations

import re

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# 13 to 19 digits, optionally grouped by spaces or dashes; confirmed by the Luhn checksum.
CARD = re.compile(r"(?<![\d+])(?:\d[ -]?){12,18}\d(?!\d)")
# International (+...) or grouped numbers with 7 to 15 digits. A bare run of digits is left
# alone: it is more often an order number than a phone number.
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d[\d .-]{5,16}\d"
    r"|\(\d{2,4}\)[ .-]?\d{2,4}[ .-]?\d{2,6}"
    r"|\d{2,4}[ .-]\d{2,4}[ .-]\d{2,6}(?:[ .-]\d{2,4})?)(?!\d)"
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card number]" if _luhn_ok(digits) else match.group()


DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    if DATE.fullmatch(match.group()) or not 7 <= len(digits) <= 15:
        return match.group()
    return "[phone number]"


def redact(text: str) -> str:
    """`text` with e-mail addresses, card numbers and phone numbers replaced by labels."""
    text = EMAIL.sub("[e-mail]", text)
    text = CARD.sub(_card, text)
    return PHONE.sub(_phone, text)
