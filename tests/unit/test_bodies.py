"""What a request's Content-Length declares."""

from __future__ import annotations

import pytest

from swarm_oauth.bodies import declared_length


@pytest.mark.parametrize(
    ("value", "length"),
    [
        ("0", 0),
        ("8192", 8192),
        ("9" * 18, int("9" * 18)),
        (None, None),
        ("", None),
        ("-1", None),
        (" 1", None),
        ("²", None),  # a digit to str.isdigit, not to int()
        ("\u0661", None),  # Arabic-Indic 1, which int() reads
        ("9" * 5000, None),  # more digits than int() reads
    ],
)
def test_only_a_plain_number_is_a_declared_length(value, length):
    assert declared_length(value) == length
