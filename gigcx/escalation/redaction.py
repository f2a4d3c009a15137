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
# 13 to 19 digits, grouped by whatever people type between them (a space or two, a dot, a
# dash of any kind, a comma, a line break, ...); confirmed by the Luhn checksum. After a "+" it
# takes 16 or more digits: a phone number has at most 15.
_GAP = r"(?:[.,:*/_\-\u00b7\u2010-\u2015\u2022\u2212]| {1,2}|\n)?"
# Never inside a code of letters and digits ("e83418fb1fa147538272022511e875bc").
CARD = re.compile(
    rf"(?<![\dA-Za-z])(?:(?<=\+)(?:\d{_GAP}){{15,18}}\d|(?<!\+)(?:\d{_GAP}){{12,18}}\d)"
    r"(?![\dA-Za-z])"
)
# Two letters, two check digits, then 11 to 30 letters and digits, maybe grouped; confirmed by
# the checksum. No word boundary before it: "ibanGB29NWBK..." is still an IBAN.
IBAN = re.compile(r"[A-Z]{2}\d{2}(?:[ ._-]?[A-Z0-9]){11,30}", re.IGNORECASE)
# Marks that show nothing on their own but split what a pattern sees ("john@exa\u034fmple.com"):
# the combining grapheme joiner and variation selectors (format characters go by category).
HIDDEN_MARKS = re.compile("[\u034f\u180b-\u180f\ufe00-\ufe0f\U000e0100-\U000e01ef]")
SPACES = re.compile(r"[^\S\n]+")
FULL_STOPS = str.maketrans({"\u3002": ".", "\uff61": "."})
# Separators people put between the digits of a phone number that libphonenumber does not read;
# replaced one for one by "-" (same length) only to find the numbers.
ODD_SEPARATORS = re.compile(r"(?<=\d)[\u00b7\u2022\u2027\u2219\u30fb_*~:|](?=\d)")
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
                if found[end - 1] not in " ._-"
                and iban.is_valid(re.sub(r"[ ._-]", "", found[:end]))
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
    probe = ODD_SEPARATORS.sub("-", text)
    spans = {
        (match.start, match.end)
        for region in regions
        for match in phonenumbers.PhoneNumberMatcher(
            probe, region, leniency=phonenumbers.Leniency.POSSIBLE
        )
        if _is_phone_number(probe, match)
    }
    return sorted(spans)


def _is_phone_number(text: str, match: phonenumbers.PhoneNumberMatch) -> bool:
    """Whether a number libphonenumber found in `text` is a phone number, not a date or a
    reference: valid, or written the way people write phone numbers (with a country code or a
    trunk prefix: "07700 900123", which no carrier has yet)."""
    raw = match.raw_string.strip()
    digits = re.sub(r"\D", "", raw)
    if DATE.match(raw) or len(digits) < 7:
        return False  # a date, or a dated reference ("2024-11-23/0042")
    if text[match.end : match.end + 1].isalnum():
        return False  # the head of a code ("3767257b5e04...")
    before = text[max(0, match.start - 2) : match.start]
    if len(before) == 2 and before[0].isalnum() and before[1] in "-/#" and raw[0] != "+":
        return False  # after a word and a dash or slash: a reference ("ORD-2024-000123")
    valid = phonenumbers.is_valid_number(match.number)
    long_and_valid = valid and len(digits) >= 10
    if raw.isdigit() and raw[0] != "0" and not long_and_valid:
        return False  # a plain run of digits: more often an order number
    # Only a lower-case word runs into a phone number ("tel07700...", "phone+44..."); a code's
    # letters are capitals or mixed with digits ("E39398952249", "4a0d0481511832").
    glued_to = _word_before(text, match.start)
    if glued_to and not (
        glued_to.isalpha() and glued_to.islower() and (raw[0] in "+0" or long_and_valid)
    ):
        return False
    return valid or (raw[0] in "+0(" and len(digits) >= 9)


def _word_before(text: str, position: int) -> str:
    """The letters and digits that run up to `position` (a word the match is glued to)."""
    start = position
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    return text[start:position]


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
    text = unicodedata.normalize("NFKC", text).translate(FULL_STOPS)
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    text = HIDDEN_MARKS.sub("", text)
    return SPACES.sub(" ", text)
