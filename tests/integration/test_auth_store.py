"""Auth methods in Table Storage (Azurite): secrets sealed and rows tamper-evident, a disable
that died finished by the next one (or the cleanup), a login racing a disable taking its
token back."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
import uuid
from dataclasses import replace
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared import service as service_module
from shared import settings as settings_module
from shared.api import auth as auth_api
from shared.api import handle
from shared.api.auth import (
    AZURE_CONFIG_FIELDS,
    JWT_CONFIG_FIELDS,
    JWT_LOGIN_FIELDS,
    JWT_ROLE_FIELDS,
)
from shared.audit import Broker, Sink
from shared.errors import PermissionDenied, RowTampered
from shared.store import AUTH_PARTITION
from shared.vaultapi import ApiRequest, FieldData
from tests.fixtures.funchost import build_service, engine_settings

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


@pytest.fixture(scope="module")
def service(azurite: Any) -> Any:
    return build_service(azurite, f"auth{os.getpid()}")


def jwt_method(service: Any, path: str) -> Any:
    service.auth.enable(path, "jwt")
    mount = service.auth.mount(path)
    service.auth.write_config(
        mount, FieldData({"jwt_validation_pubkeys": [PEM]}, JWT_CONFIG_FIELDS)
    )
    role = {"role_type": "jwt", "user_claim": "sub", "bound_audiences": "a"}
    service.auth.write_role(mount, "r", FieldData(role, JWT_ROLE_FIELDS))
    return mount


def login(service: Any, mount: Any) -> str:
    now = int(time.time())
    signed = pyjwt.encode(
        {"aud": "a", "sub": "s", "iss": "https://issuer.test", "iat": now, "exp": now + 60},
        KEY,
        algorithm="RS256",
    )
    token, _ = service.auth.login(
        mount, FieldData({"role": "r", "jwt": signed}, JWT_LOGIN_FIELDS), ""
    )
    return str(token.id)


def test_client_secrets_are_sealed_and_rows_tamper_evident(service: Any) -> None:
    service.auth.enable("sealed", "azure")
    mount = service.auth.mount("sealed")
    body = {"tenant_id": "t", "resource": "r", "client_id": "c", "client_secret": "hush-hush-123"}
    service.auth.write_config(mount, FieldData(body, AZURE_CONFIG_FIELDS))
    raw = service.store.table.get_entity(AUTH_PARTITION, f"config:{mount.uuid}")
    assert "cred_ct" in raw
    assert not any(
        b"hush-hush" in (v if isinstance(v, bytes) else str(v).encode()) for v in raw.values()
    )
    assert "client_secret" not in service.auth.render_config(mount)
    # An update that leaves the secret out keeps it (the plugin merges its config).
    service.auth.write_config(mount, FieldData({"resource": "r2"}, AZURE_CONFIG_FIELDS))
    item = service.store.get_auth_item(mount.uuid)
    assert service.auth._open(mount, item) == {"client_secret": "hush-hush-123"}
    raw["json"] = json.dumps({**json.loads(raw["json"]), "tenant_id": "attacker"})
    service.store.table.upsert_entity(raw)
    with pytest.raises(RowTampered):
        service.auth.config(mount)


def test_a_disable_that_died_is_finished(service: Any) -> None:
    mount = jwt_method(service, "halfway")
    token = login(service, mount)
    marked = service.store.update_auth_mount(
        replace(mount, state="disabling", changed=mount.created - dt.timedelta(hours=1))
    )
    with pytest.raises(PermissionDenied):  # no login while it is being disabled
        service.auth.mount("halfway")
    assert service.tokens.check(token).id == token  # not revoked yet: the disable died
    assert service.auth.settle(older_than=300) == [
        "auth method halfway/: a disable that did not finish was finished"
    ]
    with pytest.raises(PermissionDenied):
        service.tokens.check(token)
    assert service.store.get_auth_mount("halfway") is None
    assert service.store.get_auth_item(marked.uuid) is None
    assert service.store.auth_tokens(marked.uuid) == []
    service.auth.disable("halfway")  # nothing there: no error


def test_a_login_that_races_a_disable_takes_its_token_back(service: Any) -> None:
    mount = jwt_method(service, "racing")
    filed: list[str] = []
    with pytest.raises(PermissionDenied):
        service.tokens.login(
            path="auth/racing/login",
            policies=[],
            no_default_policy=False,
            display="racing-s",
            meta={"role": "r"},
            internal={"mount_uuid": mount.uuid, "mount": "racing", "role": "r"},
            ttl=60,
            max_ttl=0,
            explicit_max_ttl=0,
            period=0,
            num_uses=0,
            bound_cidrs=[],
            entity_id="e",
            file_under=filed.append,
            still_valid=lambda: False,  # the method was disabled while the token was written
        )
    [salted] = filed
    assert service.store.get_token(salted) is None


def test_a_token_that_ends_leaves_its_methods_index(service: Any) -> None:
    mount = jwt_method(service, "index")
    first, second = login(service, mount), login(service, mount)
    assert len(service.store.auth_tokens(mount.uuid)) == 2
    service.tokens.revoke(first)
    [left] = service.store.auth_tokens(mount.uuid)
    assert left == service.tokens.salted(second)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=800)  # past its TTL (768h default)
    assert service.tokens.tidy(now=later)["revoked"] >= 1
    assert service.store.auth_tokens(mount.uuid) == []


class Recording(Sink):
    inline = True

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, line: bytes) -> None:
        self.lines.append(line)


def test_a_login_is_audited_without_the_jwt_or_the_token_in_clear(azurite: Any) -> None:
    devices = json.dumps([{"path": "rec", "type": "log"}])
    settings = settings_module.load(
        engine_settings(azurite, f"al{uuid.uuid4().hex[:8]}", KEYMGMT_AUDIT_DEVICES=devices)
    )
    built = service_module.build(settings)
    sink = Recording()
    engine = dataclasses.replace(built, audit=Broker(settings, built.store, sinks={"rec": sink}))
    mount = jwt_method(engine, "audited")
    signed = pyjwt.encode(
        {
            "aud": "a",
            "sub": "s",
            "iss": "https://issuer.test",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        KEY,
        algorithm="RS256",
    )
    request = ApiRequest(
        "POST",
        headers={"content-type": "application/json"},
        body=json.dumps({"role": "r", "jwt": signed}).encode(),
        remote_address="192.0.2.7",
    )
    answer = handle(auth_api.LOGIN, request, {"mount": mount.path}, lambda: engine)
    assert answer.status == 200, answer.body
    issued = json.loads(answer.body)["auth"]["client_token"]
    entries = [json.loads(line) for line in sink.lines]
    assert [e["type"] for e in entries] == ["request", "response"]
    assert entries[0]["request"]["path"] == f"auth/{mount.path}/login"
    assert entries[0]["request"]["remote_address"] == "192.0.2.7"
    for entry in entries:  # the method's own mount, as Vault records it
        assert entry["request"]["mount_point"] == f"auth/{mount.path}/"
        assert entry["request"]["mount_type"] == "jwt"
        assert entry["request"]["mount_accessor"] == mount.accessor
        assert entry["request"]["mount_class"] == "auth"
    text = b"".join(sink.lines).decode()
    assert signed not in text and issued not in text
    assert entries[1]["response"]["auth"]["client_token"].startswith("hmac-sha256:")
