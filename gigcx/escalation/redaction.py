"""Masking personal data (e-mail addresses, card numbers, IBANs, phone numbers) in text that
leaves the conversation for people: the handover packet and everything posted to Slack.

Phone numbers are found by Google's libphonenumber (`phonenumbers`) in international format and
in the national formats of the brand's regions; IBANs are confirmed by their checksum
(`python-stdnum`), card numbers by the Luhn checksum. A bare run of digits that is no valid
number stays: it is more often an order number than a phone number.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import phonenumbers
from stdnum import iban

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# 13 to 19 digits, grouped by any separators people type; confirmed by the Luhn checksum.
CARD = re.compile(r"(?<![\d+])(?:\d[ .\-_/]*){12,18}\d(?!\d)")
# Two letters, two check digits, then 11 to 30 letters and digits, maybe grouped; confirmed by
# the checksum. No word boundary before it: "ibanGB29NWBK..." is still an IBAN.
IBAN = re.compile(r"[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]){11,30}", re.IGNORECASE)
# Characters that do not show but split what a pattern sees ("john@exa\u200bmple.com"), and
# the controls that reverse how text reads.
INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
SPACES = re.compile(r"[^\S\n]+")
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
            # A valid number, or one written the way people write phone numbers (with a
            # country code or a trunk prefix: "07700 900123", which no carrier has yet).
            written_as_phone = raw.lstrip().startswith(("+", "0", "(")) and len(digits) >= 9
            glued = match.start > 0 and text[match.start - 1].isalnum()
            if glued and not raw.lstrip().startswith(("+", "0")):
                continue  # the tail of a reference such as "VC23-118842"
            if phonenumbers.is_valid_number(match.number) or written_as_phone:
                spans.add((match.start, match.end))
    return sorted(spans)


def redact(text: str, regions: Sequence[str] = DEFAULT_REGIONS) -> str:
    """`text` with e-mail addresses, card numbers, IBANs and phone numbers replaced by labels
    (phone numbers in international format, and in the national formats of `regions`).

    The text is normalised first (see `normalise`), so look-alike and invisible characters
    cannot hide a number or an address from the patterns."""
    text = normalise(text)
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


def normalise(text: str) -> str:
    """`text` in compatibility form (full-width at signs and digits become plain ones), without
    invisible characters or reading-order controls, with runs of spaces as one space."""
    text = unicodedata.normalize("NFKC", text)
    text = INVISIBLE.sub("", text)
    return SPACES.sub(" ", text)
