"""Terraform's ``vault_jwt_auth_backend`` request sequence, replayed over real HTTP against
OpenBao and the local stack (the GoClient and the provider's configure from
test_terraform_flows.py), with the state each side leaves compared.

From hashicorp/terraform-provider-vault ``vault/resource_jwt_auth_backend.go`` (create:
EnableAuthWithOptions, then the update: config write and, as the tune block changed, a tune;
read: GetAuth, the config, the tune), ``vault/auth_mount.go`` (authMountTune:
Sys().TuneMount("auth/<path>") = POST sys/mounts/auth/<path>/tune; authMountTuneGet:
Sys().MountConfig = GET sys/mounts/auth/<path>/tune), ``vault/structures.go``
(expandAuthMethodTune: every list of the block sent, an empty one as [""];
flattenAuthMethodTune, mergeAuthMethodTune) and ``util/mountutil`` (a read of a method that is
gone: "No auth engine at" removes it from the state).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.test_terraform_flows import GoClient, ResponseError, terraform_run

pytestmark = pytest.mark.xdist_group("openbao")

LISTS = (
    "audit_non_hmac_request_keys",
    "audit_non_hmac_response_keys",
    "passthrough_request_headers",
    "allowed_response_headers",
)


def _pubkey() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


PUBKEY = _pubkey()


def tune_input(block: dict[str, Any]) -> dict[str, Any]:
    """expandAuthMethodTune's api.MountConfigInput as the Go client marshals it: options null,
    the TTL strings always, omitempty on the rest, an empty list as [""]."""
    body: dict[str, Any] = {
        "options": None,
        "default_lease_ttl": block.get("default_lease_ttl", ""),
        "max_lease_ttl": block.get("max_lease_ttl", ""),
        "force_no_cache": False,
    }
    for name in LISTS:
        body[name] = list(block.get(name) or [""])
    for name in ("listing_visibility", "token_type"):
        if block.get(name):
            body[name] = block[name]
    return body


def flatten_tune(tune: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """flattenAuthMethodTune then mergeAuthMethodTune: the state's tune block."""
    state: dict[str, Any] = {
        "listing_visibility": tune.get("listing_visibility", ""),
        "token_type": tune.get("token_type", ""),
    }
    for name in LISTS:
        values = tune.get(name) or []
        if values and values[0] != "":
            state[name] = values
    if not block.get("token_type"):
        state["token_type"] = ""
    if not block.get("listing_visibility"):
        state["listing_visibility"] = ""
    state["default_lease_ttl"] = block.get("default_lease_ttl", "")
    state["max_lease_ttl"] = block.get("max_lease_ttl", "")
    return state


def create(client: GoClient, path: str, config: dict[str, Any]) -> None:
    client._checked(
        client.raw(
            "POST",
            f"sys/auth/{path}",
            {
                "type": "jwt",
                "description": config.get("description", ""),
                "config": {
                    "options": None,
                    "default_lease_ttl": "",
                    "max_lease_ttl": "",
                    "force_no_cache": False,
                },
                "local": False,
                "seal_wrap": False,
                "external_entropy_access": False,
                "options": None,
            },
        )
    )
    update(client, path, config, tune_changed=True)


def update(client: GoClient, path: str, config: dict[str, Any], *, tune_changed: bool) -> None:
    client.write(
        f"auth/{path}/config",
        {"jwt_validation_pubkeys": [PUBKEY], "bound_issuer": config["bound_issuer"]},
    )
    if tune_changed:
        client._checked(
            client.raw("POST", f"sys/mounts/auth/{path}/tune", tune_input(config["tune"]))
        )


def read(client: GoClient, path: str, config: dict[str, Any]) -> dict[str, Any] | None:
    try:
        mount = client._secret(client._checked(client.raw("GET", f"sys/auth/{path}")))
    except ResponseError as exc:
        if exc.status == 404 or any("No auth engine at" in e for e in exc.errors):
            return None
        raise
    assert mount is not None
    settings = client.read(f"auth/{path}/config")
    if settings is None:
        return None
    tune = client._secret(client._checked(client.raw("GET", f"sys/mounts/auth/{path}/tune")))
    assert tune is not None
    return {
        "type": mount["data"]["type"],
        "local": mount["data"]["local"],
        "description": mount["data"]["description"],
        "bound_issuer": settings["data"]["bound_issuer"],
        "tune": flatten_tune(tune["data"], config["tune"]),
        "raw_tune": tune["data"],
    }


def plan(config: dict[str, Any], state: dict[str, Any] | None) -> dict[str, Any]:
    """What terraform plan would change in the tune block (every key it configures)."""
    if state is None:
        return {"create": True}
    return {
        k: (state["tune"].get(k), v)
        for k, v in config["tune"].items()
        if state["tune"].get(k, [] if k in LISTS else "") != v
    }


def flow(url: str) -> list[Any]:
    path = f"tfjwt-{uuid.uuid4().hex[:8]}"
    try:
        return _flow(url, path)
    finally:  # the stacks are shared: leave no method behind (listed "unauth" meanwhile)
        GoClient(url, "root").raw("DELETE", f"sys/auth/{path}")


def _flow(url: str, path: str) -> list[Any]:
    config: dict[str, Any] = {
        "bound_issuer": "https://issuer.example",
        "description": "ci",
        "tune": {
            "default_lease_ttl": "1h",
            "max_lease_ttl": "2h",
            "token_type": "default-service",
            "listing_visibility": "",
            "audit_non_hmac_request_keys": [],
            "audit_non_hmac_response_keys": [],
            "passthrough_request_headers": [],
            "allowed_response_headers": [],
        },
    }
    client = terraform_run(url)
    create(client, path, config)
    created = read(client, path, config)
    steps: list[Any] = [created, plan(config, created)]
    changed = {
        **config,
        "tune": {
            **config["tune"],
            "max_lease_ttl": "4h",
            "token_type": "batch",
            "listing_visibility": "unauth",
            "passthrough_request_headers": ["X-Team"],
        },
    }
    client = terraform_run(url)
    update(client, path, changed, tune_changed=True)
    updated = read(client, path, changed)
    steps += [updated, plan(changed, updated)]
    bad = {**changed, "tune": {**changed["tune"], "default_lease_ttl": "5h"}}
    with pytest.raises(ResponseError) as caught:
        update(client, path, bad, tune_changed=True)
    steps.append((caught.value.status, caught.value.errors))
    steps.append(read(client, path, changed))  # the refused tune changed nothing
    client._checked(client.raw("DELETE", f"sys/auth/{path}"))
    steps.append(read(client, path, changed))
    return steps


def test_vault_jwt_auth_backend_flow_leaves_the_state_openbao_leaves(
    openbao: Any, funchost: Any
) -> None:
    expected = flow(openbao.url)
    got = flow(funchost.url)
    for i, (h, w) in enumerate(zip(got, expected, strict=True)):
        assert h == w, (i, json.dumps(h, sort_keys=True), json.dumps(w, sort_keys=True))
    created, no_change, updated, still_no_change = got[:4]
    assert no_change == {} and still_no_change == {}
    assert created["raw_tune"]["default_lease_ttl"] == 3600
    assert updated["raw_tune"]["token_type"] == "batch"
    assert updated["tune"]["passthrough_request_headers"] == ["X-Team"]
    assert got[-1] is None  # destroyed: a refresh drops it from the state
