"""Masking personal data (e-mail addresses, card numbers, IBANs, phone numbers) in text that
leaves the conversation for people: the handover packet and everything posted to Slack.

Phone numbers are found by Google's libphonenumber (`phonenumbers`) in international format and
in the national formats of the brand's regions; IBANs are confirmed by their checksum
(`python-stdnum`), card numbers by the Luhn checksum. A bare run of digits that is no valid
number stays: it is more often an order number than a phone number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import phonenumbers
from stdnum import iban

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# 13 to 19 digits, optionally grouped by spaces or dashes; confirmed by the Luhn checksum.
CARD = re.compile(r"(?<![\d+])(?:\d[ -]?){12,18}\d(?!\d)")
# Two letters, two check digits, then 11 to 30 letters and digits, maybe in groups of four.
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", re.IGNORECASE)
DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
DEFAULT_REGIONS = ("US", "GB", "DE", "FR")


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


def _mask_ibans(text: str) -> str:
    """`text` with every valid IBAN masked. The pattern may run on into the next words ("DE89
    3704 0044 0532 0130 00 and FR14 ..."), so the longest valid IBAN at each candidate start is
    taken, and the search goes on right after it."""
    pieces = []
    position = 0
    while (candidate := IBAN.search(text, position)) is not None:
        found = candidate.group()
        length = next(
            (
                end
                for end in range(len(found), 14, -1)
                if found[end - 1] != " " and iban.is_valid(found[:end])
            ),
            0,
        )
        if length:
            pieces.append(text[position : candidate.start()] + "[IBAN]")
            position = candidate.start() + length
        else:
            pieces.append(text[position : candidate.start() + 1])
            position = candidate.start() + 1
    pieces.append(text[position:])
    return "".join(pieces)


def _phone_spans(text: str, regions: Sequence[str]) -> list[tuple[int, int]]:
    spans: set[tuple[int, int]] = set()
    for region in regions:
        matcher = phonenumbers.PhoneNumberMatcher(
            text, region, leniency=phonenumbers.Leniency.POSSIBLE
        )
        for match in matcher:
            raw = match.raw_string
            digits = re.sub(r"\D", "", raw)
            if DATE.fullmatch(raw.strip()) or len(digits) < 7:
                continue
            if match.start > 0 and text[match.start - 1].isalnum():
                continue  # the tail of a reference such as "VC23-118842"
            # A valid number, or one written the way people write phone numbers (with a
            # country code or a trunk prefix: "07700 900123", which no carrier has yet).
            written_as_phone = raw.lstrip().startswith(("+", "0", "(")) and len(digits) >= 9
            if phonenumbers.is_valid_number(match.number) or written_as_phone:
                spans.add((match.start, match.end))
    return sorted(spans)


def redact(text: str, regions: Sequence[str] = DEFAULT_REGIONS) -> str:
    """`text` with e-mail addresses, card numbers, IBANs and phone numbers replaced by labels
    (phone numbers in international format, and in the national formats of `regions`)."""
    text = EMAIL.sub("[e-mail]", text)
    text = CARD.sub(_card, text)
    text = _mask_ibans(text)
    pieces = []
    last = 0
    for start, end in _phone_spans(text, regions):
        if start < last:
            continue  # overlaps a number already masked
        pieces.append(text[last:start])
        pieces.append("[phone number]")
        last = end
    pieces.append(text[last:])
    return "".join(pieces)
