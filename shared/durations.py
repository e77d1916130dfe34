"""Durations as Vault's token store parses and prints them (Go's ``time`` package, through
``parseutil.ParseDurationSecond``), so the texts of its errors and warnings match the server's.

Pure functions: ``parse_seconds("1h0m0s") == 3600``; ``human(3600) == "1h"``.
"""

from __future__ import annotations

from shared.errors import InvalidRequest

# Go's time.Duration is an int64 of nanoseconds: nothing longer parses.
_MAX_NANOS = (1 << 63) - 1
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_SHOWN = 64  # at most this much of a value is repeated in an error


def _quote(text: str) -> str:
    shown = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
    return '"' + shown.encode("unicode_escape").decode().replace('"', '\\"') + '"'


def _invalid(original: str) -> InvalidRequest:
    return InvalidRequest(f"time: invalid duration {_quote(original)}")


def parse_go(text: str) -> int:
    """Go's ``time.ParseDuration``: nanoseconds, or InvalidRequest with Go's error text."""
    original, rest = text, text
    negative = False
    if rest[:1] in ("-", "+"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0
    if rest == "":
        raise _invalid(original)
    total = 0
    while rest:
        if not (rest[0] == "." or (rest[0].isascii() and rest[0].isdigit())):
            raise _invalid(original)
        i = 0
        while i < len(rest) and rest[i].isascii() and rest[i].isdigit():
            i += 1
        whole, rest, had_whole = int(rest[:i] or "0"), rest[i:], i > 0
        if whole > _MAX_NANOS:
            raise _invalid(original)
        fraction, scale, had_fraction = 0, 1, False
        if rest[:1] == ".":
            rest = rest[1:]
            i = 0
            while i < len(rest) and rest[i].isascii() and rest[i].isdigit():
                if scale < 10**18:  # Go stops accumulating once it would overflow
                    fraction, scale = fraction * 10 + int(rest[i]), scale * 10
                i += 1
            rest, had_fraction = rest[i:], i > 0
        if not had_whole and not had_fraction:
            raise _invalid(original)
        i = 0
        while i < len(rest) and not (rest[i] == "." or (rest[i].isascii() and rest[i].isdigit())):
            i += 1
        if i == 0:
            raise InvalidRequest(f"time: missing unit in duration {_quote(original)}")
        unit_name, rest = rest[:i], rest[i:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise InvalidRequest(
                f"time: unknown unit {_quote(unit_name)} in duration {_quote(original)}"
            )
        value = whole * unit + (fraction * unit) // scale
        total += value
        if whole > _MAX_NANOS // unit or total > _MAX_NANOS + (1 if negative else 0):
            raise _invalid(original)
    return -total if negative else total


def _go_int(text: str) -> int | None:
    """Go's ``strconv.ParseInt(text, 10, 64)``, None where it fails."""
    body = text[1:] if text[:1] in ("-", "+") else text
    if not body or not (body.isascii() and body.isdigit()):
        return None
    value = int(text)
    return value if -_MAX_NANOS - 1 <= value <= _MAX_NANOS else None


def parse_seconds(text: str) -> int:
    """``parseutil.ParseDurationSecond`` for a string: ``""`` is 0; ``"90"`` is seconds;
    ``"2d"`` is days; anything else a Go duration (``"1h0m0s"``, ``"90m"``). Whole seconds
    (Vault's integer TTLs), truncated, but never 0 for a positive duration."""
    if text == "":
        return 0
    if text.endswith("d"):
        days = _go_int(text[:-1])
        if days is None:
            raise InvalidRequest(f"strconv.ParseInt: parsing {_quote(text[:-1])}: invalid syntax")
        return _checked(days * 86400)
    plain = _go_int(text)
    if plain is not None:
        if abs(plain) > _MAX_NANOS // 1_000_000_000:
            raise InvalidRequest(
                "multiplication of durations resulted in overflow, one operand may be too large"
            )
        return plain
    nanos = parse_go(text)
    seconds = abs(nanos) // 1_000_000_000 or (1 if nanos else 0)
    return -seconds if nanos < 0 else seconds


def _checked(seconds: int) -> int:
    if abs(seconds) > _MAX_NANOS // 1_000_000_000:
        raise InvalidRequest(
            "multiplication of durations resulted in overflow, one operand may be too large"
        )
    return seconds


def go_string(seconds: int) -> str:
    """Go's ``Duration.String()`` for whole seconds: ``"1h0m0s"``, ``"20m0s"``, ``"0s"``."""
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def human(seconds: int) -> str:
    """Vault's ``humanDuration``, as its TTL warnings print one: ``"1h"``, ``"20m"``,
    ``"1h30s"``, ``"0s"``."""
    if seconds == 0:
        return "0s"
    text = go_string(seconds)
    if text.endswith("m0s"):
        text = text[:-2]
    at = text.find("h0m")
    if at > 0:
        text = text[: at + 1] + text[at + 3 :]
    return text
