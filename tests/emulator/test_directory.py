"""The emulator's directory and signing keys, directly (no servers)."""

from __future__ import annotations

import uuid

import pytest

from tools.kvemu.directory import Directory, ResourceNotFound
from tools.kvemu.tokens import SigningKey, TokenIssuer, resource_of


@pytest.mark.parametrize(
    ("resource", "app_id"),
    [
        ("https://vault.azure.net", "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"),
        ("https://VAULT.azure.net/", "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"),
        ("https://management.azure.com/", "797f4846-ba00-4fd7-ba43-dac1f8f63013"),
        ("https://management.core.windows.net/", "797f4846-ba00-4fd7-ba43-dac1f8f63013"),
        ("797f4846-ba00-4fd7-ba43-dac1f8f63013", "797f4846-ba00-4fd7-ba43-dac1f8f63013"),
        ("https://managedhsm.azure.net", "589d5083-6f11-4d30-a62a-a4b316a14abf"),
        ("https://storage.azure.com/", "e406a681-f3d4-42a8-90b6-c2b029497af1"),
        ("https://myaccount.blob.core.windows.net", "e406a681-f3d4-42a8-90b6-c2b029497af1"),
        ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000"),
    ],
)
def test_first_party_resources_get_v1_tokens(resource: str, app_id: str) -> None:
    found = Directory().resolve(resource)
    assert (found.app_id, found.version, found.first_party) == (app_id, 1, True)


@pytest.mark.parametrize(
    "resource",
    ["", "https://vault.azure.cn", "https://management.azure.com.evil", "api://unregistered"],
)
def test_anything_else_is_not_found(resource: str) -> None:
    with pytest.raises(ResourceNotFound):
        Directory().resolve(resource)


def test_registered_app_version_and_lookups() -> None:
    directory = Directory()
    v2 = directory.register_app(identifier_uris=["api://kms"], access_token_version=2)
    v1 = directory.register_app(identifier_uris=["api://legacy/"], access_token_version=1)
    default = directory.register_app(identifier_uris=[])
    assert directory.resolve("api://kms/").version == 2
    assert directory.resolve(v2.client_id.upper()).app == v2
    assert directory.resolve("api://legacy").app == v1 and v1.token_version == 1
    assert directory.resolve(default.client_id).version == 1  # null: v1.0, as in Entra
    with pytest.raises(ValueError, match="identifierUris"):
        directory.register_app(identifier_uris=["API://KMS"])
    # re-registering the same client id replaces it (its own URIs are no conflict)
    again = directory.register_app(client_id=v2.client_id, identifier_uris=["api://kms"])
    assert directory.resolve("api://kms").version == 1 and again.object_id == v2.object_id


def test_roles_and_groups_claims() -> None:
    directory = Directory()
    with_groups = directory.register_app(
        identifier_uris=["api://a"], app_roles=["R1", "R2"], group_membership_claims="All"
    )
    without = directory.register_app(identifier_uris=["api://b"], app_roles=["R1"])
    principal, other = str(uuid.uuid4()), str(uuid.uuid4())
    group = str(uuid.uuid4())
    directory.assign_app_role("api://a", principal, "R2")
    directory.assign_app_role(with_groups.client_id, principal, with_groups.app_roles[0].id)
    directory.add_group_members(group, [principal])
    assert directory.claims_for(directory.resolve("api://a"), principal) == {
        "roles": ["R1", "R2"],
        "groups": [group],
    }
    assert directory.claims_for(directory.resolve("api://b"), principal) == {}
    assert directory.claims_for(directory.resolve("api://a"), other) == {}
    assert directory.claims_for(directory.resolve("https://vault.azure.net"), principal) == {}
    with pytest.raises(ValueError, match="no app role"):
        directory.assign_app_role(without.client_id, principal, "R2")
    with pytest.raises(ValueError, match="group_id"):
        directory.add_group_members("not-a-guid", [principal])


def test_a_key_keeps_its_kid_across_restarts() -> None:
    key = SigningKey.generate()
    again = SigningKey.from_pem(key.private_pem())
    assert again.kid == key.kid and again.certificate_der == key.certificate_der
    assert key.kid != SigningKey.generate().kid


def test_issuer_state_round_trip_keeps_next_and_previous() -> None:
    issuer = TokenIssuer("tenant")
    first = issuer.current.kid
    issuer.rotate()
    upcoming = issuer.prepare_next().kid
    restored = TokenIssuer("tenant")
    restored.load_state(issuer.to_state())
    assert [k.kid for k in restored.published()] == [issuer.current.kid, upcoming, first]


def test_resource_of_keeps_what_was_sent() -> None:
    assert resource_of("https://management.azure.com//.default") == "https://management.azure.com/"
    assert resource_of("https://vault.azure.net/.default") == "https://vault.azure.net"
    assert resource_of("api://kms") == "api://kms"
