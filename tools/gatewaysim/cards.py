"""Test cards of the simulated gateway: the card table, Luhn and expiry checks, masking.

Pure functions over strings and ints. It must never log, print or keep a
card number or CVC: callers get back a masked number, a card profile and a
scripted outcome, which is all the rest of the simulator may store.
"""
import re
from typing import NamedTuple

# Scripted outcomes of an order paid with a token.
SUCCESS = "SUCCESS"
REFUSED = "REFUSED"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
ERROR = "ERROR"

# paymentStatusReason of a FAILED order, per outcome.
DECLINE_REASONS = {
    REFUSED: "Refused by the card issuer",
    INSUFFICIENT_FUNDS: "Insufficient funds",
}


class CardProfile(NamedTuple):
    """What the gateway reveals about a card (the ObfuscatedCard fields)."""

    card_type: str
    scheme_type: str
    scheme_name: str
    issuer: str
    country: str
    card_class: str
    product_noncontactless: str
    product_contactless: str
    prepaid: str  # a string on the wire: "true", "false" or "unknown"


PROFILES = {
    "VISA_CREDIT": CardProfile(
        "VISA_CREDIT", "consumer", "VISA CREDIT", "NATWEST", "GB", "credit",
        "Visa Credit Personal", "CL Visa Credit Pers", "false"),
    "MASTERCARD_CREDIT": CardProfile(
        "MASTERCARD_CREDIT", "consumer", "MCI CREDIT", "LLOYDS BANK PLC", "GB", "credit",
        "MasterCard Credit Personal", "CL MasterCard Credit Pers", "false"),
    "MASTERCARD_DEBIT": CardProfile(
        "MASTERCARD_DEBIT", "consumer", "MCI DEBIT", "BARCLAYS BANK PLC", "GB", "debit",
        "Debit MasterCard", "CL Debit MasterCard", "false"),
    "MAESTRO": CardProfile(
        "MAESTRO", "consumer", "MAESTRO", "HSBC BANK PLC", "GB", "debit",
        "Maestro", "CL Maestro", "false"),
    "AMEX": CardProfile(
        "AMEX", "consumer", "AMEX", "AMERICAN EXPRESS", "GB", "credit",
        "American Express", "CL American Express", "false"),
}

# Every number the test environment accepts, with its profile and outcome.
# All are Luhn-valid; any other Luhn-valid number is "not accepted for Test
# transactions". Amex 34343434343434 is the card of the reference Go sample.
TEST_CARDS = {
    "4444333322221111": ("VISA_CREDIT", SUCCESS),
    "5555555555554444": ("MASTERCARD_CREDIT", SUCCESS),
    "5163613613613613": ("MASTERCARD_DEBIT", SUCCESS),
    "6759649826438453": ("MAESTRO", SUCCESS),
    "343434343434343": ("AMEX", SUCCESS),
    "34343434343434": ("AMEX", SUCCESS),
    "4000000000000002": ("VISA_CREDIT", REFUSED),
    "4000000000009995": ("VISA_CREDIT", INSUFFICIENT_FUNDS),
    "4000000000000119": ("VISA_CREDIT", ERROR),
}

# Cardholder names that script the outcome of any succeeding test card
# (compared case-insensitively, surrounding spaces ignored).
NAME_OUTCOMES = {
    "REFUSED": REFUSED,
    "INSUFFICIENT_FUNDS": INSUFFICIENT_FUNDS,
    "ERROR": ERROR,
}

# A standalone run of 12-19 digits (not part of a key, uuid or longer word).
_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z_-])[0-9]{12,19}(?![0-9A-Za-z_-])")


def luhn_valid(number):
    """True if the digit string `number` passes the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def is_expired(expiry_month, expiry_year, now_year, now_month):
    """True if a card valid through expiry_month/expiry_year has expired by now_month/now_year."""
    return (expiry_year, expiry_month) < (now_year, now_month)


def mask_pan(number):
    """Mask for logs and the ledger: first six and last four digits, e.g. 444433******1111."""
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def masked_card_number(number):
    """The API's maskedCardNumber, as the real gateway writes it: '**** **** **** 1111'."""
    return "**** **** **** " + number[-4:]


def scrub_card_numbers(text):
    """Replace every run of 12-19 digits in `text` by its mask (belt and braces for logs)."""
    return _DIGIT_RUN.sub(lambda match: mask_pan(match.group(0)), text)


def classify(number, name):
    """(profile name, outcome) for an accepted test card, or None if the test gateway refuses it.

    A card with a scripted failure keeps it whatever the name; a succeeding
    card takes the outcome scripted by a magic cardholder name, if any.
    """
    entry = TEST_CARDS.get(number)
    if entry is None:
        return None
    profile, outcome = entry
    if outcome == SUCCESS:
        outcome = NAME_OUTCOMES.get(name.strip().upper(), SUCCESS)
    return profile, outcome
