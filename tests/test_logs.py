"""The redaction every log line goes through: personnummer out, identifiers operators need kept."""

from __future__ import annotations

import pytest

from adapter.logs import REDACTED, scrub


@pytest.mark.parametrize("text", ["191212121212", "19121212-1212", "121212-1212", "1212121212", "121212+1212",
                                  "20010101-2380", "198112739803"])  # the last: a samordningsnummer (day 73)
def test_personnummer_and_samordningsnummer_are_redacted(text: str) -> None:
    assert scrub(f"patient {text} referred") == f"patient {REDACTED} referred"


@pytest.mark.parametrize("text", ["SE2321000255-SML1R1", "correlation 9f3e1234567890ab", "ts 20261201204512"])
def test_hsa_ids_and_other_long_numbers_that_are_no_date_are_kept(text: str) -> None:
    assert scrub(text) == text


def test_sensitive_keys_are_dropped_whatever_they_hold() -> None:
    assert scrub({"name": "Tolvan", "nested": [{"address": "Storgatan 1"}], "status": "active"}) == \
        {"name": REDACTED, "nested": [{"address": REDACTED}], "status": "active"}
