"""Cold start: what ``import function_app`` must not load (each module and why).

Every cold start imports function_app while the worker indexes the functions; a module here
is loaded by the first request that needs it instead. Timing is bench/coldstart.py's; this
test catches the regression without timing, in a fresh interpreter.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DEFERRED = {
    # Third-party, heavy, needed by few requests.
    "jwt": "PyJWT verifies a login's JWT (shared.auth.keys); a key read verifies none",
    # cryptography's AES-GCM stays: every first request opens the sealed row-MAC key with it.
    "cryptography.x509": "certificates: an auth method's PEM keys (shared.auth.keys)",
    "cryptography.hazmat.primitives.serialization": "key encoding: create, rotate "
    "(shared.keytypes) and PEM public keys of an auth method",
    "cryptography.hazmat.primitives.asymmetric": "RSA/EC key generation (shared.keytypes), "
    "BYOK's RSA-OAEP (shared.byok), JWT key types",
    "cryptography.hazmat.primitives.keywrap": "BYOK's AES key wrap: a distribution",
    "hcl": "the policy parser: the service's build parses the default policy, not the import",
    # The engine's own modules that only some requests reach.
    "shared.auth.jwt": "the jwt/oidc auth method: its config, roles and logins",
    "shared.auth.azure": "the azure auth method: its config, roles and logins",
    "shared.auth.keys": "a login's signing keys (discovery, JWKS, PEM)",
    "shared.hcl_parser": "the policy parser's grammar and tables, with the first policy parse",
    # Azure SDKs: each builds its client on first use.
    "azure.core": "the Azure SDKs' pipeline, with the first Table or Key Vault client",
    "azure.data.tables": "the Table client: built by the first request's service build",
    "azure.identity": "credentials: a Key Vault seal key or a distribution",
    "azure.keyvault": "Key Vault clients: a distribution or a Key Vault seal key",
    "azure.storage.blob": "the blob audit device, when one is enabled",
    "msal": "azure.identity's token acquisition",
    "requests": "the Azure SDKs' HTTP transport",
}


def test_importing_the_app_defers_the_heavy_modules():
    code = (
        "import sys, function_app\n"
        f"deferred = {sorted(DEFERRED)!r}\n"
        "print(','.join(sorted({d for d in deferred for m in sys.modules"
        " if m == d or m.startswith(d + '.')})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT)},
    )
    loaded = [name for name in result.stdout.strip().split(",") if name]
    assert {name: DEFERRED[name] for name in loaded} == {}
