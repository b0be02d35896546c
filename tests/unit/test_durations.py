"""The one duration grammar of every option that takes one."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from swarm_oauth.cli.options import duration_setting
from swarm_oauth.durations import InvalidDuration, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90", 90),
        ("2.5", 2.5),
        ("45s", 45),
        ("10m", 600),
        ("12h", 43_200),
        ("30d", 2_592_000),
        ("1h30m", 5_400),
        ("1d12h", 129_600),
        (" 5M ", 300),
        ("0.5s", 0.5),
    ],
)
def test_durations_in_every_unit(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "s", "-5", "-5m", "5 m", "5w", "m5", "5m3", "1e3", "inf", "nan", "\u0661\u0660d", "²"],
)
def test_malformed_durations_are_refused_with_the_grammar(text):
    with pytest.raises(InvalidDuration, match="s, m, h or d"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["36501d", "99999999999999999999d", "3200000000"])
def test_a_duration_beyond_a_century_is_refused(text):
    # An instant that far ahead overflows the clock functions that show it (keys list).
    with pytest.raises(InvalidDuration, match="at most 100 years"):
        parse_duration(text)
    assert parse_duration("36500d") == 36500 * 86400


@given(st.integers(min_value=0, max_value=10**9))
def test_format_reads_back(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_picks_the_largest_exact_unit():
    assert [format_duration(s) for s in (0, 59, 600, 5_400, 2_592_000)] == [
        "0s",
        "59s",
        "10m",
        "90m",
        "30d",
    ]


def _command():
    @click.command()
    @duration_setting("--wait", env="TEST_WAIT", default=600, minimum=60, help="How long.")
    def command(wait: float) -> None:
        click.echo(repr(wait))

    return command


@pytest.mark.parametrize(
    ("args", "env", "output"),
    [
        ([], {}, "600.0"),
        (["--wait", "2h"], {}, "7200.0"),
        ([], {"SWARM_OAUTH_TEST_WAIT": "1m"}, "60.0"),
    ],
)
def test_a_duration_option_reads_flag_environment_and_default(args, env, output):
    result = CliRunner().invoke(_command(), args, env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == output


@pytest.mark.parametrize(
    ("value", "reason"), [("5s", "shorter than 1m"), ("ten", "not a duration")]
)
def test_a_duration_option_refuses_with_a_reason(value, reason):
    result = CliRunner().invoke(_command(), ["--wait", value])
    assert result.exit_code == 2
    assert reason in result.output


@pytest.mark.parametrize("text", ["1" * 10_000 + "x", "1h" * 5_000, " " * 100 + "10m"])
def test_text_longer_than_any_duration_is_refused_before_it_is_parsed(text):
    # A service's label may hold a megabyte: digits without a unit once cost the
    # pattern time quadratic in their length, with the whole registrar stalled meanwhile.
    with pytest.raises(InvalidDuration, match="longer than 64 characters"):
        parse_duration(text)
