"""Durations as Vault's token store parses and prints them: the expected values and texts
are OpenBao 2.7.2's answers to the same input."""

import pytest

from shared import durations
from shared.errors import InvalidRequest

MAX = 768 * 3600

# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("", 0),
        ("0s", 0),
        ("0", 0),
        ("-0", 0),
        ("90", 90),
        ("00090", 90),
        ("1h0m0s", 3600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        (".5h", 1800),
        ("5.s", 5),
        ("+5m", 300),
        ("3000ms", 3),
        ("1500ms", 1),
        ("1us", 1),  # positive stays positive (Vault keeps 1µs; its TTLs are whole seconds)
        ("2d", 172800),
        ("-1d", -86400),
        ("-5m", -300),
        ("20m0s", 1200),
    ],
)
def test_durations_parse_as_vault_parses_them(text, seconds):
    assert durations.parse_seconds(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus", 'time: invalid duration "bogus"'),
        ("90.5", 'time: missing unit in duration "90.5"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("1e3", 'time: unknown unit "e" in duration "1e3"'),
        ("1H", 'time: unknown unit "H" in duration "1H"'),
        (" 1h ", 'time: invalid duration " 1h "'),
        ("1h ", 'time: unknown unit "h " in duration "1h "'),
        ("1h-5m", 'time: unknown unit "h-" in duration "1h-5m"'),
        ("1d12h", 'time: unknown unit "d" in duration "1d12h"'),
        ("1.5d", 'strconv.ParseInt: parsing "1.5": invalid syntax'),
        ("d", 'strconv.ParseInt: parsing "": invalid syntax'),
        ("-", 'time: invalid duration "-"'),
        ("h", 'time: invalid duration "h"'),
        ("999999999999999h", 'time: invalid duration "999999999999999h"'),
        ("99999999999999999999", 'time: invalid duration "99999999999999999999"'),
        (
            "9223372037",
            "multiplication of durations resulted in overflow, one operand may be too large",
        ),
    ],
)
def test_bad_durations_are_refused_with_gos_texts(text, message):
    with pytest.raises(InvalidRequest) as refused:
        durations.parse_seconds(text)
    assert refused.value.messages == [message]


def test_a_long_bad_duration_is_not_repeated_whole():
    with pytest.raises(InvalidRequest) as refused:
        durations.parse_seconds("x" * 500)
    assert len(refused.value.messages[0]) < 120


@pytest.mark.parametrize(
    ("seconds", "go", "human"),
    [
        (0, "0s", "0s"),
        (3600, "1h0m0s", "1h"),
        (1200, "20m0s", "20m"),
        (5400, "1h30m0s", "1h30m"),
        (3630, "1h0m30s", "1h30s"),
        (59, "59s", "59s"),
        (MAX, "768h0m0s", "768h"),
        (9223372036, "2562047h47m16s", "2562047h47m16s"),
    ],
)
def test_durations_print_as_go_and_vaults_warnings_print_them(seconds, go, human):
    assert durations.go_string(seconds) == go
    assert durations.human(seconds) == human
