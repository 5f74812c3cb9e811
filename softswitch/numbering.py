"""Japanese phone numbers in national format, the one form the rest of softswitch uses.

A national number is 10 or 11 digits: a trunk prefix 0, then a digit other than 0
(a leading 00 is a carrier or international prefix, not a subscriber), e.g. 09012345678.
Written forms such as '+81 90-1234-5678', '81-90-1234-5678', '090-1234-5678' and
'+81 (0)90 1234 5678' all normalise to it; full-width digits and hyphens are accepted too.
"""

import re
import unicodedata

COUNTRY_CODE = "81"

_NATIONAL_NUMBER = re.compile(r"0[1-9][0-9]{8,9}")
# Separators people write between digit groups.
_SEPARATORS = re.compile(r"[\s\-.()]")


def is_national_number(text: str) -> bool:
    """True if `text` already is a national number: 10 or 11 digits, '0' then not '0'."""
    return _NATIONAL_NUMBER.fullmatch(text) is not None


def normalise_number(text: str) -> str:
    """The national form of a written phone number; ValueError says why it is not one."""
    if is_national_number(text):
        return text  # as phones register and dial: already national, nothing to rewrite
    written = unicodedata.normalize("NFKC", text).strip()
    if not written:
        raise ValueError("not a phone number: it is empty")
    international = written.startswith("+")
    digits = _SEPARATORS.sub("", written.removeprefix("+"))
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(
            f"not a phone number: {text!r} (only digits, '+', spaces, '-', '.' and "
            "parentheses are allowed)"
        )
    if international and not digits.startswith(COUNTRY_CODE):
        raise ValueError(f"not a Japanese phone number: {text!r} (country code is not +81)")
    if digits.startswith(COUNTRY_CODE):  # no national number starts with 8
        # '+81 (0)90…' keeps the trunk 0 after the country code; drop it before adding it back.
        digits = "0" + digits.removeprefix(COUNTRY_CODE).removeprefix("0")
    if not digits.startswith("0"):
        raise ValueError(
            f"not a phone number: {text!r} (a national number starts with 0, e.g. 09012345678)"
        )
    if len(digits) not in (10, 11):
        size = "too short" if len(digits) < 10 else "too long"
        raise ValueError(
            f"not a phone number: {text!r} is {size} ({len(digits)} digits in national form; "
            "Japanese numbers have 10 or 11)"
        )
    if not is_national_number(digits):
        raise ValueError(f"not a subscriber number: {text!r} (00 is a carrier prefix)")
    return digits
