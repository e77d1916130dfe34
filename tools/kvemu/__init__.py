"""kvemu: a local Azure Key Vault (keys API) with real BYOK unwrap, plus local identity endpoints.

Addressing: one HTTPS port per vault on 127.0.0.1 (``https://127.0.0.1:<port>``), because the
SDK parses key ids as ``https://host/keys/<name>/<version>``. Point the engine at it with
``KEYMGMT_KEYVAULT_URLS="keyvault-name=https://127.0.0.1:8443,..."`` and
``KEYMGMT_KEYVAULT_CA_BUNDLE=<cert-dir>/ca.pem``.

What works with the unmodified SDKs (azure-identity 1.27, azure-keyvault-keys 4.11), checked
by ``tests/emulator``:

* ``KeyClient(url, credential, connection_verify=ca_path, verify_challenge_resource=False)``
  (and the same kwargs for ``CryptographyClient``): the challenge names
  ``https://vault.azure.net``, which 127.0.0.1 is not a sub-domain of.
* ``ManagedIdentityCredential()`` (optionally ``client_id=`` for a user-assigned identity) with
  ``IDENTITY_ENDPOINT=<emulator.identity_endpoint>`` (plain ``http://127.0.0.1:<port>/msi/token``,
  as on App Service; azure-identity accepts http here) and
  ``IDENTITY_HEADER=<emulator.identity_header>`` set before the credential is built.
* ``ClientSecretCredential(tenant_id, client_id, secret, authority=emulator.authority_host,
  disable_instance_discovery=True, connection_verify=ca_path)``. ``disable_instance_discovery``
  is required: MSAL sends instance discovery for unknown hosts to login.microsoftonline.com.
  ``connection_verify`` reaches MSAL's HTTP client through azure-identity's pipeline;
  ``REQUESTS_CA_BUNDLE=<ca.pem>`` also works but replaces the system CAs for the process.
  The tenant must be the emulator's (the vault challenge names it and azure-identity refuses
  other tenants unless ``additionally_allowed_tenants`` says otherwise).
* Tokens as Entra ID shapes them, for the engine's logins: v1.0 for Microsoft resources (with
  ``xms_mirid`` for managed identities), the registered app's version otherwise
  (``Emulator.register_app``), validated against ``<authority>/<tenant>/.well-known/
  openid-configuration`` (v1.0) or ``.../<tenant>/v2.0/.well-known/openid-configuration``;
  signing keys roll over on demand. See docs/kvemu.md.
"""

from .directory import AppRegistration, ResourceNotFound
from .emulator import ClientApp, Emulator, ManagedIdentity, Recorded
from .faults import FAULT_KINDS, Fault

__all__ = [
    "FAULT_KINDS",
    "AppRegistration",
    "ClientApp",
    "Emulator",
    "Fault",
    "ManagedIdentity",
    "Recorded",
    "ResourceNotFound",
]
