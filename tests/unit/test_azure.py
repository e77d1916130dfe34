"""shared.azure (pure): clouds and their aliases, vault URLs, the credential precedence."""

from __future__ import annotations

import pytest

from shared.azure import build_credential, choose_credential, cloud, vault_scope, vault_url
from shared.errors import InvalidRequest
from shared.settings import Settings, StorageSettings

CLOUDS = {
    "AzurePublicCloud": ("login.microsoftonline.com", "vault.azure.net", "managedhsm.azure.net"),
    "AzureUSGovernmentCloud": (
        "login.microsoftonline.us",
        "vault.usgovcloudapi.net",
        "managedhsm.usgovcloudapi.net",
    ),
    "AzureChinaCloud": ("login.chinacloudapi.cn", "vault.azure.cn", "managedhsm.azure.cn"),
    "AzureGermanCloud": ("login.microsoftonline.de", "vault.microsoftazure.de", None),
}


def settings(**kw: object) -> Settings:
    return Settings(storage=StorageSettings(connection_string="UseDevelopmentStorage=true"), **kw)


# -- clouds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("AzurePublicCloud", "AzurePublicCloud"),
        ("azurepubliccloud", "AzurePublicCloud"),
        ("AZUREPUBLICCLOUD", "AzurePublicCloud"),
        ("AzureCloud", "AzurePublicCloud"),
        ("public", "AzurePublicCloud"),
        (" AzurePublicCloud ", "AzurePublicCloud"),
        ("AzureUSGovernmentCloud", "AzureUSGovernmentCloud"),
        ("azureusgovernmentcloud", "AzureUSGovernmentCloud"),
        ("AzureUSGovernment", "AzureUSGovernmentCloud"),
        ("usgovernment", "AzureUSGovernmentCloud"),
        ("AzureChinaCloud", "AzureChinaCloud"),
        ("azurechinacloud", "AzureChinaCloud"),
        ("AzureChina", "AzureChinaCloud"),
        ("china", "AzureChinaCloud"),
        ("AzureGermanCloud", "AzureGermanCloud"),
        ("AZUREGERMANCLOUD", "AzureGermanCloud"),
        ("AzureGermany", "AzureGermanCloud"),
        ("germany", "AzureGermanCloud"),
    ],
)
def test_cloud_names_and_aliases_are_case_insensitive(spelling: str, name: str) -> None:
    found = cloud(spelling)
    assert found.name == name
    authority, suffix, hsm = CLOUDS[name]
    assert (found.authority_host, found.keyvault_suffix, found.managedhsm_suffix) == (
        authority,
        suffix,
        hsm,
    )


@pytest.mark.parametrize("empty", [None, ""])
def test_no_cloud_means_public(empty: str | None) -> None:
    assert cloud(empty).name == "AzurePublicCloud"


@pytest.mark.parametrize("bad", ["Mars", "AzureStackCloud", "azure-public-cloud"])
def test_unknown_cloud_is_refused_naming_the_allowed_ones(bad: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        cloud(bad)
    message = str(info.value)
    assert repr(bad) not in message  # it arrives among credentials: never repeated
    for name in CLOUDS:
        assert name in message
    assert info.value.status == 400


# -- vault URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CLOUDS))
def test_vault_url_uses_each_clouds_suffix(name: str) -> None:
    _, suffix, _ = CLOUDS[name]
    assert vault_url("keyvault-name", cloud(name)) == f"https://keyvault-name.{suffix}"
    # Key Vault names are case-insensitive; DNS is too: the URL is lower case.
    assert vault_url("KeyVault-Name", cloud(name)) == f"https://keyvault-name.{suffix}"


@pytest.mark.parametrize("name", [n for n in CLOUDS if CLOUDS[n][2]])
def test_managed_hsm_addressing(name: str) -> None:
    _, _, hsm = CLOUDS[name]
    assert vault_url("my-hsm.managedhsm", cloud(name)) == f"https://my-hsm.{hsm}"


@pytest.mark.parametrize("name", [n for n in CLOUDS if CLOUDS[n][2]])
def test_token_scope_follows_the_kind_of_vault_by_its_name(name: str) -> None:
    _, suffix, hsm = CLOUDS[name]
    assert vault_scope("keyvault-name", cloud(name)) == f"https://{suffix}/.default"
    # by the name, not the URL: an override (the local stack) does not hide a Managed HSM
    assert vault_scope("My-Hsm.ManagedHSM", cloud(name)) == f"https://{hsm}/.default"


def test_managed_hsm_in_a_cloud_without_one_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="AzureGermanCloud has no Managed HSM"):
        vault_url("my-hsm.managedhsm", cloud("AzureGermanCloud"))


def test_url_override_wins_for_its_vault_only() -> None:
    overrides = {"keyvault-name": "https://127.0.0.1:8443", "my-hsm.managedhsm": "https://h:1"}
    public = cloud(None)
    assert vault_url("keyvault-name", public, overrides) == "https://127.0.0.1:8443"
    assert vault_url("KEYVAULT-NAME", public, overrides) == "https://127.0.0.1:8443"
    assert vault_url("my-hsm.managedhsm", public, overrides) == "https://h:1"
    assert vault_url("other-vault", public, overrides) == "https://other-vault.vault.azure.net"


# -- credential precedence ---------------------------------------------------------------------

ENV = {"azure_client_id": "env-app", "azure_client_secret": "env-secret"}
STORED = {"client_id": "stored-app", "client_secret": "stored-secret", "tenant_id": "stored-t"}


def test_environment_credentials_win_over_stored_ones() -> None:
    choice = choose_credential(settings(**ENV, azure_tenant_id="env-t"), STORED)
    assert (choice.source, choice.client_id, choice.tenant_id) == (
        "environment",
        "env-app",
        "env-t",
    )


def test_environment_credentials_take_the_stored_tenant_when_env_has_none() -> None:
    choice = choose_credential(settings(**ENV), STORED)
    assert (choice.source, choice.client_id, choice.tenant_id) == (
        "environment",
        "env-app",
        "stored-t",
    )


@pytest.mark.parametrize("partial", [{"azure_client_id": "env-app"}, {"azure_client_secret": "s"}])
def test_half_environment_credentials_do_not_win(partial: dict[str, str]) -> None:
    choice = choose_credential(settings(**partial), STORED)
    assert (choice.source, choice.client_id) == ("provider", "stored-app")


def test_stored_credentials_win_over_managed_identity() -> None:
    choice = choose_credential(settings(managed_identity_client_id="uami"), STORED)
    assert (choice.source, choice.client_id, choice.tenant_id) == (
        "provider",
        "stored-app",
        "stored-t",
    )


def test_environment_tenant_applies_to_stored_credentials() -> None:
    # Vault's convention: each AZURE_* variable overrides the stored field of the same name.
    choice = choose_credential(settings(azure_tenant_id="env-t"), STORED)
    assert (choice.source, choice.tenant_id) == ("provider", "env-t")


def test_managed_identity_when_no_client_secret_anywhere() -> None:
    choice = choose_credential(settings(), {"tenant_id": "t"})
    assert (choice.source, choice.client_id, choice.tenant_id) == ("managed_identity", None, "t")
    choice = choose_credential(settings(azure_tenant_id="env-t"), {})
    assert (choice.source, choice.tenant_id) == ("managed_identity", "env-t")


def test_user_assigned_identity_from_settings() -> None:
    choice = choose_credential(
        settings(managed_identity_client_id="uami-client"), {"tenant_id": "t"}
    )
    assert (choice.source, choice.client_id) == ("managed_identity", "uami-client")
    # The setting wins over a stored client_id given without a secret.
    choice = choose_credential(
        settings(managed_identity_client_id="uami-client"),
        {"tenant_id": "t", "client_id": "other"},
    )
    assert choice.client_id == "uami-client"


@pytest.mark.parametrize(
    ("kw", "stored"),
    [
        ({}, {}),
        (ENV, {}),
        ({}, {"client_id": "a", "client_secret": "s"}),
        ({"managed_identity_client_id": "uami"}, {}),
    ],
)
def test_missing_tenant_is_a_clear_error_in_every_case(
    kw: dict[str, str], stored: dict[str, str]
) -> None:
    with pytest.raises(InvalidRequest) as info:
        choose_credential(settings(**kw), stored)
    assert info.value.status == 400
    assert "tenant_id is required" in str(info.value)
    assert "AZURE_TENANT_ID" in str(info.value)


def test_no_secret_in_the_choice() -> None:
    choice = choose_credential(settings(**ENV, azure_tenant_id="t"), STORED)
    assert "secret" not in repr(choice)


@pytest.mark.parametrize("name", list(CLOUDS))
def test_authority_host_follows_the_cloud(name: str) -> None:
    authority, _, _ = CLOUDS[name]
    stored = {**STORED, "environment": name.lower()}
    assert choose_credential(settings(), stored).authority_host == authority
    assert choose_credential(settings(azure_environment=name), STORED).authority_host == authority


def test_stored_environment_wins_over_azure_environment_setting() -> None:
    choice = choose_credential(
        settings(azure_environment="AzureChinaCloud"), {**STORED, "environment": "AzureCloud"}
    )
    assert choice.authority_host == "login.microsoftonline.com"


def test_authority_host_setting_overrides_the_cloud() -> None:
    choice = choose_credential(
        settings(azure_authority_host="https://127.0.0.1:9999", azure_environment="china"),
        STORED,
    )
    assert choice.authority_host == "https://127.0.0.1:9999"


def test_unknown_cloud_in_the_stored_credentials_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="unknown Azure cloud"):
        choose_credential(settings(), {**STORED, "environment": "Mars"})


def test_built_credentials_use_the_winning_source_and_authority() -> None:
    from azure.identity import ClientSecretCredential, ManagedIdentityCredential

    env = settings(**ENV, azure_tenant_id="00000000-0000-0000-0000-000000000001")
    credential = build_credential(choose_credential(env, STORED), env, STORED)
    assert isinstance(credential, ClientSecretCredential)
    assert credential._client_id == "env-app"
    gov = settings()
    stored = {**STORED, "tenant_id": "00000000-0000-0000-0000-000000000002", "environment": "usgov"}
    with pytest.raises(InvalidRequest):
        choose_credential(gov, stored)  # "usgov" is no alias: refused, not defaulted
    stored["environment"] = "AzureUSGovernment"
    credential = build_credential(choose_credential(gov, stored), gov, stored)
    assert isinstance(credential, ClientSecretCredential)
    assert credential._client_id == "stored-app"
    assert credential._authority == "https://login.microsoftonline.us"
    assert credential._instance_discovery is False  # a sovereign cloud: no public discovery
    mi = settings(managed_identity_client_id="uami")
    credential = build_credential(choose_credential(mi, {"tenant_id": "t"}), mi, {})
    assert isinstance(credential, ManagedIdentityCredential)
