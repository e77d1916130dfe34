"""Response wrapping, pure: X-Vault-Wrap-TTL as Vault parses it, and which answers are wrapped.
The differential test (tests/integration/test_wrapping_oracle.py) checks the same values
against OpenBao over HTTP."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import wrapping
from shared.errors import InvalidRequest
from shared.names import MAX_DURATION
from shared.vaultapi import envelope

PREFIX = "error parsing X-Vault-Wrap-TTL header: "


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (None, 0),
        ("", 0),
        ("0", 0),
        ("0s", 0),
        ("5", 5),
        ("5m", 300),
        ("1h30m", 5400),
        ("2h", 7200),
        ("30d", 2592000),
        ("1.5s", 1),  # truncated, as Vault's whole-second TTLs
        ("61.5s", 61),
        ("500ms", 1),  # never 0 for a positive duration (OpenBao: 0, a token that is dead)
        (" 5m ", 300),  # as Go's net/http hands header values over
    ],
)
def test_wrap_ttls_vault_takes(raw, seconds):
    assert wrapping.parse_ttl(raw) == seconds


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("abc", 'time: invalid duration "abc"'),
        ("1.5", 'time: missing unit in duration "1.5"'),
        ("1e3", 'time: unknown unit "e" in duration "1e3"'),
        ("5M", 'time: unknown unit "M" in duration "5M"'),
        ("-5", "requested wrap ttl cannot be negative"),
        ("-1h", "requested wrap ttl cannot be negative"),
        (
            "9999999999999",
            "multiplication of durations resulted in overflow, one operand may be too large",
        ),
    ],
)
def test_bad_wrap_ttls_are_refused_with_vaults_text(raw, message):
    with pytest.raises(InvalidRequest) as refused:
        wrapping.parse_ttl(raw)
    assert refused.value.status == 400
    assert refused.value.messages == [PREFIX + message]


def test_a_wrap_ttl_past_what_any_expiry_holds_is_refused():
    assert wrapping.parse_ttl(str(MAX_DURATION)) == MAX_DURATION
    with pytest.raises(InvalidRequest) as refused:
        wrapping.parse_ttl(str(MAX_DURATION + 1))
    assert refused.value.messages[0].startswith(PREFIX + "requested wrap ttl must be at most")


def test_the_header_is_read_in_lower_case():
    assert wrapping.requested_ttl({"x-vault-wrap-ttl": "2m"}) == 120
    assert wrapping.requested_ttl({}) == 0


def test_only_an_unwrapped_envelope_is_wrapped():
    assert wrapping.is_envelope(envelope({"a": 1}))
    assert wrapping.is_envelope(envelope(None))
    already = envelope(None)
    already["wrap_info"] = {"token": "x"}
    assert not wrapping.is_envelope(already)
    assert not wrapping.is_envelope({"initialized": True, "sealed": False})  # sys/health
    assert not wrapping.is_envelope({"errors": []})
    assert not wrapping.is_envelope([1, 2])


def test_the_wrapping_envelope_carries_only_wrap_info_and_warnings():
    body = wrapping.wrapping_envelope({"token": "t", "ttl": 5}, ["careful"])
    assert body == {
        "request_id": "",
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": None,
        "wrap_info": {"token": "t", "ttl": 5},
        "warnings": ["careful"],
        "auth": None,
    }
    assert wrapping.wrapping_envelope({}, [])["warnings"] is None


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_any_header_value_is_a_ttl_in_range_or_a_400(raw):
    try:
        seconds = wrapping.parse_ttl(raw)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.messages[0].startswith(PREFIX)
    else:
        assert 0 <= seconds <= MAX_DURATION
