"""Vault's field parsing and envelopes, as the CLI, hvac and Terraform send them."""

import json

import pytest

from shared import vaultapi
from shared.errors import InvalidRequest, PayloadTooLarge
from shared.vaultapi import ApiRequest


def req(method="GET", body=b"", query=None, headers=None):
    return ApiRequest(method, query or {}, headers or {}, body)


@pytest.mark.parametrize("body", [b"", b"null", b"  null  ", b"{}"])
def test_empty_and_null_bodies_are_empty_objects(body):
    assert vaultapi.parse_body(req("PUT", body), 1024) == {}


def test_json_object_body_without_content_type():
    assert vaultapi.parse_body(req("PUT", b'{"type":"rsa-2048"}'), 1024) == {"type": "rsa-2048"}


def test_form_body():
    request = req(
        "POST",
        b"type=rsa-2048&deletion_allowed=true",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert vaultapi.parse_body(request, 1024) == {"type": "rsa-2048", "deletion_allowed": "true"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "got an array"),
        (b'"x"', "got a string"),
    ],
)
def test_malformed_bodies_are_400(body, says):
    with pytest.raises(InvalidRequest, match=says):
        vaultapi.parse_body(req("PUT", body), 1024)


def test_body_limit_is_413():
    with pytest.raises(PayloadTooLarge, match="limit 10"):
        vaultapi.parse_body(req("PUT", b"x" * 11), 10)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("True", True),
        ("1", True),
        ("t", True),
        ("false", False),
        ("0", False),
    ],
)
def test_list_query_parses_like_go(value, expected):
    assert vaultapi.is_list(req("GET", query={"list": value})) is expected


def test_list_verb_and_bad_list_value():
    assert vaultapi.is_list(req("LIST"))
    assert not vaultapi.is_list(req("POST", query={"list": "true"}))
    with pytest.raises(InvalidRequest, match="list"):
        vaultapi.is_list(req("GET", query={"list": "yes"}))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (2, 2),
        ("2", 2),
        (" 3 ", 3),
        ("", 0),
        (True, 1),
        (4.0, 4),
    ],
)
def test_weak_int(raw, expected):
    assert vaultapi.weak_int(raw, "n") == expected


@pytest.mark.parametrize("raw", ["two", 2.5, [1], {"a": 1}, None])
def test_weak_int_rejects_and_names_the_field(raw):
    with pytest.raises(InvalidRequest, match="min_enabled_version must be an integer"):
        vaultapi.weak_int(raw, "min_enabled_version")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        ("true", True),
        ("1", True),
        ("false", False),
        ("", False),
        (0, False),
    ],
)
def test_weak_bool(raw, expected):
    assert vaultapi.weak_bool(raw, "b") is expected


def test_weak_bool_rejects():
    with pytest.raises(InvalidRequest, match="deletion_allowed must be true or false"):
        vaultapi.weak_bool("maybe", "deletion_allowed")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("encrypt,decrypt", ["encrypt", "decrypt"]),
        (" encrypt , decrypt ", ["encrypt", "decrypt"]),
        (["encrypt", "decrypt"], ["encrypt", "decrypt"]),
        (["encrypt,decrypt", "sign"], ["encrypt", "decrypt", "sign"]),
        ("", []),
    ],
)
def test_comma_list(raw, expected):
    assert vaultapi.comma_list(raw, "purpose") == expected


@pytest.mark.parametrize(
    "raw",
    [
        {"client_id": "a", "tenant_id": "t"},
        ["client_id=a", "tenant_id=t"],
    ],
)
def test_kv_pairs_object_and_list(raw):
    assert vaultapi.kv_pairs(raw, "credentials") == {"client_id": "a", "tenant_id": "t"}


def test_kv_pairs_single_string_and_value_with_equals():
    assert vaultapi.kv_pairs("client_secret=a=b", "credentials") == {"client_secret": "a=b"}


def test_kv_pairs_error_never_echoes_a_value():
    with pytest.raises(InvalidRequest) as info:
        vaultapi.kv_pairs(["s3cr3t-without-equals"], "credentials")
    assert "s3cr3t" not in str(info.value)
    assert "credentials" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("24h", 86400),
        ("30d", 2592000),
        ("1h30m", 5400),
        (3600, 3600),
        ("7200", 7200),
        ("0", 0),
    ],
)
def test_durations(raw, seconds):
    assert vaultapi.duration_seconds(raw, "auto_rotate_period") == seconds


@pytest.mark.parametrize("raw", ["soon", "1x", "h", True, "5h junk"])
def test_bad_durations(raw):
    with pytest.raises(InvalidRequest, match="auto_rotate_period"):
        vaultapi.duration_seconds(raw, "auto_rotate_period")


def test_envelope_shape_and_content_type():
    response = vaultapi.ok({"a": 1}, ["w"])
    body = json.loads(response.body)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert set(body) == {
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    }
    assert body["data"] == {"a": 1} and body["warnings"] == ["w"]


def test_empty_listing_is_404_with_empty_errors():
    response = vaultapi.listing([])
    assert response.status == 404 and json.loads(response.body) == {"errors": []}
    assert json.loads(vaultapi.listing(["b", "a"]).body)["data"] == {"keys": ["a", "b"]}


def test_write_without_warnings_is_204_and_with_warnings_200():
    assert vaultapi.written().status == 204 and vaultapi.written().body == b""
    response = vaultapi.written(["careful"])
    assert response.status == 200 and json.loads(response.body)["warnings"] == ["careful"]


def test_unknown_fields_become_one_warning():
    data = vaultapi.FieldData(
        {"type": "x", "zzz": 1, "aaa": 2}, [vaultapi.Field("type", vaultapi.weak_str)]
    )
    assert data.warnings == ["Endpoint ignored these unrecognized parameters: [aaa zzz]"]


def test_token_from_either_header():
    assert req(headers={"x-vault-token": "a"}).token == "a"
    assert req(headers={"authorization": "Bearer b"}).token == "b"
    assert req(headers={"authorization": "Basic c"}).token is None


@pytest.mark.parametrize("value", [10**400, -(10**400), 10**309, 2**63, 1e300, "9" * 70])
def test_durations_of_any_size_are_refused_cleanly(value):
    with pytest.raises(vaultapi.InvalidRequest) as info:
        vaultapi.duration_seconds(value, "auto_rotate_period")
    assert str(value)[:12] not in str(info.value)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b'{"a": NaN}', "numbers must be finite"),
        (b'{"a": 1e999}', "numbers must be finite"),
        (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "nested more than 32 levels"),
        (b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}", "nested more than 32 levels"),
    ],
)
def test_bodies_are_refused_with_the_right_reason(body, says):
    with pytest.raises(vaultapi.InvalidRequest, match=says):
        vaultapi.parse_body(vaultapi.ApiRequest("POST", body=body), 1 << 21)


def test_a_bare_secret_in_kv_pairs_is_never_shown():
    with pytest.raises(vaultapi.InvalidRequest) as info:
        vaultapi.kv_pairs(["c2VjcmV0"], "credentials")
    assert "c2VjcmV0" not in str(info.value)
    with pytest.raises(vaultapi.InvalidRequest) as info:
        vaultapi.kv_pairs({"client_secret": ["c2VjcmV0"]}, "credentials")
    assert "c2VjcmV0" not in str(info.value) and "credentials.client_secret" in str(info.value)


# -- declared field options: default, allowed, minimum, required ------------------------------

PURPOSES = ("encrypt", "decrypt", "sign", "verify", "wrap", "unwrap")
# kms/:name/key/:key_name's fields, declared with the options (as shared/api/kms.py can).
PURPOSE = vaultapi.Field(
    "purpose",
    vaultapi.comma_list,
    "comma list of encrypt, decrypt, sign, verify, wrap, unwrap",
    required=True,
    allowed=PURPOSES,
    takes="a comma list of encrypt, decrypt, sign, verify, wrap, unwrap",
)
PROTECTION = vaultapi.Field(
    "protection", vaultapi.weak_str, "hsm or software", default="hsm", allowed=("hsm", "software")
)
EXPIRATION = vaultapi.Field(
    "expiration_period",
    vaultapi.duration_seconds,
    default=0,
    minimum=0,
    takes="a positive duration, or 0 for none",
)
DISTRIBUTION = [PURPOSE, PROTECTION, EXPIRATION]


def fields(raw, declared=DISTRIBUTION):
    return vaultapi.FieldData(raw, declared)


@pytest.mark.parametrize("raw", [{}, {"protection": None, "expiration_period": None}])
def test_an_absent_or_null_field_gets_its_declared_default(raw):
    data = fields(raw)
    assert data.get("protection") == "hsm" and data.get("expiration_period") == 0
    assert not data.has("protection")


def test_a_field_without_a_declared_default_is_none_and_a_callers_default_wins():
    data = fields({}, [vaultapi.Field("n", vaultapi.weak_int), PROTECTION])
    assert data.get("n") is None
    assert data.get("protection", "software") == "software"


def test_a_sent_value_is_decoded_and_wins_over_the_default():
    data = fields({"protection": "software", "expiration_period": "90d"})
    assert data.get("protection") == "software" and data.get("expiration_period") == 90 * 86400


@pytest.mark.parametrize("value", ["fast-and-secret", "HSM", ""])
def test_a_value_not_allowed_names_the_field_and_the_allowed_values_not_the_value(value):
    with pytest.raises(InvalidRequest) as info:
        fields({"protection": value}).get("protection")
    assert str(info.value) == "invalid protection: allowed are hsm, software"  # nothing sent


@pytest.mark.parametrize(
    "raw",
    ["sign,s3cr3t-purpose", ["sign", "s3cr3t-purpose"], ["encrypt,decrypt", "s3cr3t-purpose"]],
)
def test_allowed_is_checked_on_each_item_of_a_list(raw):
    with pytest.raises(InvalidRequest) as info:
        fields({"purpose": raw}).get("purpose")
    assert str(info.value) == f"invalid purpose: allowed are {', '.join(PURPOSES)}"
    assert "s3cr3t" not in str(info.value)
    assert fields({"purpose": ["sign", "verify"]}).get("purpose") == ["sign", "verify"]


@pytest.mark.parametrize("raw", [{}, {"purpose": None}])
def test_a_required_field_not_sent_names_the_field_and_what_it_takes(raw):
    with pytest.raises(InvalidRequest) as info:
        fields(raw).get("purpose")
    assert str(info.value) == (
        "purpose is required: a comma list of encrypt, decrypt, sign, verify, wrap, unwrap"
    )


def test_required_says_the_allowed_values_or_the_description_when_it_has_no_takes():
    allowed = vaultapi.Field("mode", vaultapi.weak_str, required=True, allowed=("a", "b"))
    described = vaultapi.Field("type", vaultapi.weak_str, "secrets engine type", required=True)
    bare = vaultapi.Field("x", vaultapi.weak_str, required=True)
    data = fields({}, [allowed, described, bare])
    with pytest.raises(InvalidRequest, match=r"^mode is required: allowed are a, b$"):
        data.get("mode")
    with pytest.raises(InvalidRequest, match=r"^type is required: secrets engine type$"):
        data.get("type")
    with pytest.raises(InvalidRequest, match=r"^x is required$"):
        data.get("x")


def test_required_is_only_about_being_sent_an_empty_value_is_the_checks_business():
    # "" is sent: the decoder and the checks decide (an empty comma list is an empty list).
    assert fields({"purpose": ""}).get("purpose") == []


def test_a_required_field_is_demanded_only_when_asked_for():
    data = fields({"protection": "hsm"})  # e.g. a delete, whose handler reads no field
    assert data.warnings == [] and data.get("protection") == "hsm"
    data.validate()  # validate checks what was sent, not what is missing


@pytest.mark.parametrize(("value", "seconds"), [(0, 0), ("0", 0), ("", 0), (3600, 3600)])
def test_minimum_takes_the_least_value(value, seconds):
    assert fields({"expiration_period": value}).get("expiration_period") == seconds


def test_below_the_minimum_says_what_the_field_takes_not_the_value():
    with pytest.raises(InvalidRequest) as info:
        fields({"expiration_period": -987654}).get("expiration_period")
    assert str(info.value) == "expiration_period must be a positive duration, or 0 for none"
    assert "987654" not in str(info.value)
    plain = vaultapi.Field("n", vaultapi.weak_int, minimum=1)
    with pytest.raises(InvalidRequest, match=r"^n must be at least 1$"):
        fields({"n": "0"}, [plain]).get("n")


def test_validate_checks_every_sent_field_in_declaration_order():
    data = fields({"expiration_period": -1, "protection": "x", "colour": "red"})
    with pytest.raises(InvalidRequest, match="invalid protection"):
        data.validate()  # protection is declared before expiration_period
    fields({"protection": "software", "colour": "red"}).validate()  # unknown fields only warn


def test_a_required_field_cannot_declare_a_default():
    with pytest.raises(ValueError, match="required"):
        vaultapi.Field("purpose", vaultapi.comma_list, required=True, default=["sign"])


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        vaultapi.Field("protection", vaultapi.weak_str, "desc", "hsm")  # type: ignore[misc]


def test_an_accepted_field_takes_any_value_and_is_never_decoded():
    data = fields({"replica_regions": {"a": [1]}}, [vaultapi.Field("r", vaultapi.accepted)])
    assert data.warnings  # replica_regions is not declared here
    data = fields({"r": {"a": [1]}}, [vaultapi.Field("r", vaultapi.accepted)])
    data.validate()
    assert data.get("r") == {"a": [1]}
