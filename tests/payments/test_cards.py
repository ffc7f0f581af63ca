"""Card and check numbers: Luhn, masks (PCI DSS 3.4.1, by length), per-door policies, PINs, brands."""
from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from payments import cards
from payments.errors import InvalidCardNumber, InvalidCheckNumber, InvalidPin
from payments.states import CardBrand


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` Luhn-valid (computed independently of cards.py)."""
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:  # these are doubled once the check digit is appended
            digit = digit * 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return str((10 - total % 10) % 10)


# --- Luhn -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pan",
    ["4242424242424242", "5555555555554444", "4000000000000002", "4000000000009995", "4000000000000069",
     "4000000000000119", "79927398713", "0000000000000000", "378282246310005"],
)
def test_known_luhn_valid_numbers(pan: str) -> None:
    assert cards.luhn_valid(pan)


@pytest.mark.parametrize("pan", ["4242424242424241", "79927398710", "1234567812345678", "5555555555554440"])
def test_known_luhn_invalid_numbers(pan: str) -> None:
    assert not cards.luhn_valid(pan)


bodies = st.text(alphabet="0123456789", min_size=11, max_size=18)


@given(bodies)
def test_a_correct_check_digit_passes(body: str) -> None:
    assert cards.luhn_valid(body + luhn_check_digit(body))


@given(bodies, st.data())
def test_changing_any_one_digit_fails(body: str, data: st.DataObject) -> None:
    pan = body + luhn_check_digit(body)
    position = data.draw(st.integers(min_value=0, max_value=len(pan) - 1))
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != pan[position]]))
    changed = pan[:position] + replacement + pan[position + 1:]
    assert not cards.luhn_valid(changed)


@given(bodies)
def test_exactly_one_check_digit_is_valid(body: str) -> None:
    assert [d for d in "0123456789" if cards.luhn_valid(body + d)] == [luhn_check_digit(body)]


# --- Masks --------------------------------------------------------------------------


def test_mask_pan_keeps_first_six_and_last_four_from_15_digits() -> None:
    assert cards.mask_pan("4242424242424242") == "424242******4242"
    assert cards.mask_pan("4000000000000002") == "400000******0002"
    assert cards.mask_pan("378282246310005") == "378282*****0005"
    assert cards.mask_pan("4242424242424242424") == "424242*********2424"


def test_mask_pan_keeps_the_last_four_only_below_15_digits() -> None:
    assert cards.mask_pan("12345678901234") == "**********1234"
    assert cards.mask_pan("1234567890123") == "*********0123"
    assert cards.mask_pan("123456789015") == "********9015"
    assert cards.mask_pan("1234567890") == "******7890"
    assert cards.mask_pan("123456789") == "*********"
    assert cards.mask_pan("") == ""


def revealed_digits_ok(original: str, masked: str) -> bool:
    """Every digit shown is the original's digit at the same place among its first 6
    (only for 15 or more characters) or last 4 (for 10 or more) characters."""
    head = 6 if len(original) >= 15 else 0
    tail = 4 if len(original) >= 10 else 0
    if sum(c.isdigit() for c in masked) > head + tail:
        return False
    for index, char in enumerate(masked):
        if char == "*":
            continue
        if index < head:
            if original[index] != char:
                return False
        else:
            from_end = len(masked) - index
            if from_end > 4 or original[-from_end] != char:
                return False
    return True


@given(st.text(alphabet="0123456789", min_size=0, max_size=40))
def test_mask_pan_never_reveals_more_than_pci_allows_for_the_length(pan: str) -> None:
    masked = cards.mask_pan(pan)
    assert len(masked) == len(pan)
    assert revealed_digits_ok(pan, masked)
    if len(pan) < 10:
        assert set(masked) <= {"*"}
    elif len(pan) < 15:
        assert set(masked[:-4]) <= {"*"} and masked[-4:] == pan[-4:]
    else:
        assert masked[:6] == pan[:6] and masked[-4:] == pan[-4:]


@given(st.one_of(st.text(max_size=80), st.integers(), st.text(alphabet="0123456789x -", max_size=80)))
@example("x" * 20 + "4000123456789010")  # a PAN past the 32-character echo limit
@example("4242424242424242" + "0" * 30)
@example(4242424242424242)
def test_mask_untrusted_never_reveals_more_than_6_and_4(raw: object) -> None:
    text = raw if isinstance(raw, str) else str(raw)
    masked = cards.mask_untrusted(raw)
    assert len(masked) <= 32
    assert set(masked) <= set("0123456789*")
    assert revealed_digits_ok(text, masked)
    if len(text) < 10:
        assert set(masked) <= {"*"}


def test_mask_untrusted_examples() -> None:
    assert cards.mask_untrusted("4242424242424242") == "424242******4242"
    assert cards.mask_untrusted("42424242424242x2") == "424242******42*2"
    assert cards.mask_untrusted("4242") == "****"
    assert cards.mask_untrusted("424242424242") == "********4242"  # 12 characters: the last four only
    assert cards.mask_untrusted(None) == "****"
    # A long value: its own last four, never four digits from its middle.
    masked = cards.mask_untrusted("x" * 20 + "4111111111111112")
    assert masked.endswith("1112") and len(masked) == 32 and masked.count("1") == 3


# --- Validation per door policy -------------------------------------------------------


def test_terminal_policy_is_exactly_16_digits_with_luhn() -> None:
    assert cards.card_validate("4242424242424242", cards.TERMINAL_PAN) == "4242424242424242"
    # The default banned card is Luhn-valid: it reaches the ban check.
    assert cards.card_validate("0000000000000000", cards.TERMINAL_PAN) == "0000000000000000"
    for bad in ("4242424242424241", "424242424242424", "42424242424242424", "", "4242 4242 4242 4242",
                "424242424242424a",
                "４２４２４２４２４２４２４２４２", "4242424242424242\n"):
        with pytest.raises(InvalidCardNumber):
            cards.card_validate(bad, cards.TERMINAL_PAN)


@pytest.mark.parametrize("raw", [4242424242424242, None, ["4242424242424242"], b"4242424242424242", 4.2])
def test_card_number_must_be_a_string(raw: object) -> None:
    with pytest.raises(InvalidCardNumber):
        cards.card_validate(raw, cards.ESIPAY_PAN)


def test_esipay_policy_is_10_to_19_digits_with_luhn() -> None:
    for ok in ("4111222230", "1234567890123456785", "123456789015"):
        assert cards.card_validate(ok, cards.ESIPAY_PAN) == ok
    for bad in ("123456789", "12345678901234567890", "1234567890", "4242424242424241", "4111222233"):
        with pytest.raises(InvalidCardNumber):
            cards.card_validate(bad, cards.ESIPAY_PAN)


def test_luhn_policy_is_12_to_19_digits_with_check_digit() -> None:
    assert cards.card_validate("4242424242424242", cards.LUHN_PAN) == "4242424242424242"
    assert cards.card_validate("378282246310005", cards.LUHN_PAN) == "378282246310005"
    for bad in ("4242424242424241", "79927398713", "1" * 20):
        with pytest.raises(InvalidCardNumber):
            cards.card_validate(bad, cards.LUHN_PAN)


def test_invalid_card_number_message_is_masked() -> None:
    with pytest.raises(InvalidCardNumber) as info:
        cards.card_validate("42424242424242429", cards.TERMINAL_PAN)
    assert info.value.message == "Invalid card number 424242*******2429"
    assert "42424242424242429" not in str(info.value)


@given(st.text(alphabet="0123456789", min_size=0, max_size=25))
def test_card_validate_property(pan: str) -> None:
    policy = cards.TERMINAL_PAN
    if len(pan) == 16 and pan[-1] == luhn_check_digit(pan[:-1]):
        assert cards.card_validate(pan, policy) == pan
    else:
        with pytest.raises(InvalidCardNumber) as info:
            cards.card_validate(pan, policy)
        assert not re.search(r"\d{11,}", info.value.message)


# --- Card facts, BIN prefixes ----------------------------------------------------------


def test_card_facts_hold_no_card_number() -> None:
    facts = cards.card_facts("4242424242424242")
    assert facts.bin == "424242" and facts.last4 == "4242" and facts.masked == "424242******4242"
    assert re.fullmatch(r"[0-9a-f]{64}", facts.fingerprint)
    assert "4242424242424242" not in facts.fingerprint
    assert facts.fingerprint == cards.card_facts("4242424242424242").fingerprint
    assert facts.fingerprint != cards.card_facts("4242424242424259").fingerprint
    # Card and PIN fingerprints live in separate namespaces.
    assert cards.pin_fingerprint("4242") != cards.card_facts("4242").fingerprint


def test_fingerprint_is_keyed_by_master_key(settings) -> None:  # type: ignore[no-untyped-def]
    before = cards.card_facts("4242424242424242").fingerprint
    settings.PAYMENTS_MASTER_KEY = "another-master-key"
    assert cards.card_facts("4242424242424242").fingerprint != before


def test_bin_prefixes() -> None:
    assert cards.bin_prefixes("4242424242424242") == ["424242", "4242424", "42424242"]
    assert cards.bin_prefixes("1234567") == ["123456", "1234567"]


# --- Checks and PINs -------------------------------------------------------------------


def test_check_validate() -> None:
    assert cards.check_validate("12345678ABC") == "12345678ABC"
    assert cards.check_validate("12345678abc") == "12345678ABC"
    for bad in ("1234567890", "123456789012", "12345678AB-", "12345678AB ", "", None, 12345678901,
                "12345678ABé", "12345678AB\n"):
        with pytest.raises(InvalidCheckNumber):
            cards.check_validate(bad)


@given(st.text(max_size=14))
def test_check_validate_property(text: str) -> None:
    if re.fullmatch(r"[A-Za-z0-9]{11}", text):
        assert cards.check_validate(text) == text.upper()
    else:
        with pytest.raises(InvalidCheckNumber):
            cards.check_validate(text)


def test_pin_validate() -> None:
    assert cards.pin_validate("0123") == "0123"
    for bad in ("123", "12345", "12a4", "", None, 1234, "١٢٣٤", "1234\n"):
        with pytest.raises(InvalidPin) as info:
            cards.pin_validate(bad)
        assert info.value.message == "Invalid pin"


@given(st.text(max_size=6))
def test_pin_validate_property(text: str) -> None:
    assume(not re.fullmatch(r"[0-9]{4}", text))
    with pytest.raises(InvalidPin):
        cards.pin_validate(text)


# --- Brands ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pan", "brand"),
    [
        ("4242424242424242", CardBrand.VISA),
        ("4000000000000002", CardBrand.VISA),
        ("4222222222222", CardBrand.VISA),  # 13 digits
        ("4242424242424242428", CardBrand.VISA),  # 19 digits
        ("5555555555554444", CardBrand.MASTER),
        ("5105105105105100", CardBrand.MASTER),
        ("2221000000000009", CardBrand.MASTER),  # the 2-series, both ends
        ("2720990000000007", CardBrand.MASTER),
        ("4026000000000002", CardBrand.ELECTRON),
        ("4175000000000001", CardBrand.ELECTRON),
        ("4917300800000000", CardBrand.ELECTRON),
        ("4508000000000009", CardBrand.ELECTRON),
        ("378282246310005", CardBrand.AMEX),
        ("371449635398431", CardBrand.AMEX),
        ("3411111111111110"[:15], CardBrand.AMEX),
        ("5000000000000009", ""),
        ("5600000000000003", ""),
        ("2220990000000002", ""),
        ("2721000000000004", ""),
        ("6011111111111117", ""),  # Discover: a network the gateway does not know
        ("0000000000000000", ""),
        ("4111222230", ""),  # a 10-digit number is of no network, whatever its prefix
        ("555555555555442", ""),  # Mastercard's prefix, not its length
        ("3782822463100052", ""),  # Amex's prefix, 16 digits
    ],
)
def test_card_brand(pan: str, brand: str) -> None:
    assert cards.card_brand(pan) == brand


@pytest.mark.parametrize(
    ("claimed", "pan", "matches"),
    [
        ("VISA", "4242424242424242", True),
        ("ELECTRON", "4242424242424242", True),  # VISA and ELECTRON are both Visa
        ("VISA", "4026000000000002", True),
        ("ELECTRON", "4026000000000002", True),
        ("MASTER", "4242424242424242", False),
        ("VISA", "5555555555554444", False),
        ("ELECTRON", "2221000000000009", False),
        ("MASTER", "2221000000000009", True),
        ("VISA", "0000000000000000", True),  # no known network: no contradiction
        ("MASTER", "9999999999999995", True),
        ("VISA", "378282246310005", False),
    ],
)
def test_network_matches(claimed: str, pan: str, matches: bool) -> None:
    assert cards.network_matches(claimed, pan) is matches


@given(st.text(alphabet="0123456789", min_size=12, max_size=19))
def test_every_brand_is_of_its_bin_range(pan: str) -> None:
    brand = cards.card_brand(pan)
    if brand in (CardBrand.VISA, CardBrand.ELECTRON):
        assert pan[0] == "4"
    elif brand == CardBrand.MASTER:
        assert 51 <= int(pan[:2]) <= 55 or 2221 <= int(pan[:4]) <= 2720
        assert len(pan) == 16
    elif brand == CardBrand.AMEX:
        assert pan[:2] in ("34", "37") and len(pan) == 15
    else:
        assert brand == ""


# --- What is kept of a card: never enough to rebuild it ---------------------------------


def test_card_facts_keep_only_what_the_mask_shows() -> None:
    short = cards.card_facts("4111222230")
    assert (short.bin, short.last4, short.masked) == ("", "2230", "******2230") and short.fingerprint
    twelve = cards.card_facts("123456789015")
    assert (twelve.bin, twelve.last4, twelve.masked) == ("", "9015", "********9015")
    full = cards.card_facts("4242424242424242")
    assert (full.bin, full.last4) == ("424242", "4242")
    amex = cards.card_facts("378282246310005")
    assert (amex.bin, amex.last4) == ("378282", "0005")
