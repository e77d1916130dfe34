"""The seed's whole transcript through the real `bao` CLI: Azurite, local host, emulator."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from tests.e2e.test_cli_clients import BAO
from tests.fixtures.funchost import emulator_settings, engine_settings, serving
from tools.kvemu import Emulator

# The seed document's example service principal (HashiCorp's docs; not a real secret).
SEED_CLIENT_ID = "a0454cd1-e28e-405e-bc50-7477fa8a00b7"
SEED_CLIENT_SECRET = "eR%HizuCVEpAKgeaUEx"
SEED_TENANT_ID = "cd4bf224-d114-4f96-9bbc-b8f45751c43f"
# The seed's access policy for its service principal: these key permissions and no others.
SEED_PERMISSIONS = ["create", "delete", "get", "import", "update"]
# Whoever checks the vault afterwards: the seed Terraform's first access policy (its deployer).
AUDITOR_ID, AUDITOR_SECRET = "0d1e2f30-0000-4000-8000-00000000a0d1", "auditor-secret"
ALL_KEY_PERMISSIONS = [
    "get", "list", "update", "create", "import", "delete", "recover", "backup", "restore",
    "decrypt", "encrypt", "unwrapKey", "wrapKey", "verify", "sign", "purge",
]  # fmt: skip


def auditor_credential(emulator):
    """The vault owner's identity (unmodified SDK), to look at what the engine did."""
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        SEED_TENANT_ID,
        AUDITOR_ID,
        AUDITOR_SECRET,
        authority=emulator.authority_host,
        disable_instance_discovery=True,
        connection_verify=emulator.ca_path,
    )


def terraform_data_actions() -> list[str]:
    """The data actions of the custom role infra/targets.tf gives the engine on target vaults."""
    import hcl2

    infra = Path(__file__).resolve().parents[2] / "infra" / "targets.tf"
    for block in hcl2.loads(infra.read_text()).get("locals", []):
        if "target_vault_data_actions" in block:
            return [str(a).strip('"') for a in block["target_vault_data_actions"]]
    raise AssertionError("infra/targets.tf has no local target_vault_data_actions")


@pytest.fixture(scope="module", params=["access_policy", "rbac", "custom_role"])
def seed_stack(request, azurite, tmp_path_factory):
    """The seed's vault, under exactly the seed's access policy, under the built-in role
    Key Vault Crypto Officer, or under exactly the custom role our Terraform creates by default
    (its data actions read from infra/): nothing else is granted to the engine."""
    model = request.param
    emulator = Emulator(
        {"keyvault-name": 0},
        cert_dir=tmp_path_factory.mktemp("seed-kv"),
        tenant_id=SEED_TENANT_ID,
        access_policy_vaults=["keyvault-name"] if model == "access_policy" else (),
    )
    engine = emulator.add_client(SEED_CLIENT_ID, SEED_CLIENT_SECRET)
    auditor = emulator.add_client(AUDITOR_ID, AUDITOR_SECRET)
    if model == "access_policy":
        emulator.set_access_policy("keyvault-name", engine.object_id, SEED_PERMISSIONS)
        emulator.set_access_policy("keyvault-name", auditor.object_id, ALL_KEY_PERMISSIONS)
    elif model == "rbac":
        emulator.grant("keyvault-name", engine.object_id, "Key Vault Crypto Officer")
        emulator.grant("keyvault-name", auditor.object_id, "Key Vault Administrator")
    else:
        emulator.access.assign_role("keyvault-name", engine.object_id, terraform_data_actions())
        emulator.grant("keyvault-name", auditor.object_id, "Key Vault Administrator")
    with emulator:
        settings = engine_settings(
            azurite,
            f"seed{model[:3]}{os.getpid()}",
            KEYMGMT_DEFAULT_MOUNTS="",
            **emulator_settings(emulator),
        )
        with serving(settings) as host:
            yield host, emulator


def test_seed_transcript_with_distribution(seed_stack, tmp_path):
    host, emulator = seed_stack
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "BAO_ADDR": host.url,
        "BAO_TOKEN": "root",
    }

    def bao(*args):
        result = subprocess.run(
            [BAO, *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "Success! Enabled the keymgmt secrets engine at: keymgmt/" in bao(
        "secrets", "enable", "keymgmt"
    )
    out = bao(
        "write",
        "keymgmt/kms/example-kms",
        "provider=azurekeyvault",
        "key_collection=keyvault-name",
        f"credentials=client_id={SEED_CLIENT_ID}",
        f"credentials=client_secret={SEED_CLIENT_SECRET}",
        f"credentials=tenant_id={SEED_TENANT_ID}",
    )
    assert out.strip() == "Success! Data written to: keymgmt/kms/example-kms"
    assert "Success! Data written to: keymgmt/key/rsa-1" in bao(
        "write", "keymgmt/key/rsa-1", "type=rsa-2048"
    )
    json.loads(bao("read", "-format=json", "keymgmt/key/rsa-1"))
    out = bao(
        "write", "keymgmt/kms/example-kms/key/rsa-1", "purpose=encrypt,decrypt", "protection=hsm"
    )
    assert out.strip() == "Success! Data written to: keymgmt/kms/example-kms/key/rsa-1"
    listed = bao("list", "keymgmt/kms/example-kms/key/").split()
    assert listed == ["Keys", "----", "rsa-1"]
    assert "Success! Data written to: keymgmt/key/rsa-1/rotate" in bao(
        "write", "-f", "keymgmt/key/rsa-1/rotate"
    )
    key = json.loads(bao("read", "-format=json", "keymgmt/key/rsa-1"))["data"]
    assert key["latest_version"] == 2

    dist = json.loads(bao("read", "-format=json", "keymgmt/kms/example-kms/key/rsa-1"))["data"]
    assert re.fullmatch(r"rsa-1-\d{10}", dist["name"])
    assert dist["purpose"] == "decrypt,encrypt" and dist["protection"] == "hsm"
    assert sorted(dist["versions"]) == ["1", "2"]
    assert all(re.fullmatch(r"[0-9a-f]{32}", v) for v in dist["versions"].values())
    assert bao("list", "keymgmt/key/rsa-1/kms").split() == ["Keys", "----", "example-kms"]
    health = json.loads(bao("read", "-format=json", "keymgmt/kms/example-kms/health"))["data"]
    assert health["key_vault"] == "ok"
    if emulator.vaults["keyvault-name"].permission_model == "access_policy":
        assert health["permissions"]["missing"] == ["list"]  # named, and not needed so far
    else:
        assert health["permissions"]["missing"] == []

    # The emulator holds rsa-1-<ts> with two versions: the engine's keys, usable there.
    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient, EncryptionAlgorithm

    credential = auditor_credential(emulator)
    client = KeyClient(
        emulator.vault_url("keyvault-name"),
        credential,
        verify_challenge_resource=False,
        connection_verify=emulator.ca_path,
    )
    versions = {p.version: p for p in client.list_properties_of_key_versions(dist["name"])}
    assert set(versions) == set(dist["versions"].values())
    digest = b"\x11" * 32
    for engine_version, kv_version in dist["versions"].items():
        remote = client.get_key(dist["name"], kv_version)
        assert remote.key_type == "RSA-HSM"
        assert sorted(remote.key_operations) == ["decrypt", "encrypt"]
        assert remote.properties.tags["keymgmt-version"] == engine_version
        engine_public = serialization.load_pem_public_key(
            key["versions"][engine_version]["public_key"].encode()
        )
        assert int.from_bytes(remote.key.n, "big") == engine_public.public_numbers().n
        # sign is not among this key's purposes, so prove the private half with decrypt:
        # encrypt locally with the engine's public key, decrypt inside the emulator.
        crypto = CryptographyClient(
            remote, credential, verify_challenge_resource=False, connection_verify=emulator.ca_path
        )
        ciphertext = engine_public.encrypt(
            digest,
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
        assert crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, ciphertext).plaintext == digest


def test_distributed_key_signs_in_key_vault_and_verifies_with_engine_key(seed_stack, tmp_path):
    host, emulator = seed_stack
    import requests

    s = requests.Session()
    s.headers["X-Vault-Token"] = "root"
    base = f"{host.url}/v1/keymgmt"
    if s.get(f"{base}/kms/example-kms").status_code == 404:
        s.post(f"{host.url}/v1/sys/mounts/keymgmt", json={"type": "keymgmt"})
        s.put(
            f"{base}/kms/example-kms",
            json={
                "provider": "azurekeyvault",
                "key_collection": "keyvault-name",
                "credentials": [
                    f"client_id={SEED_CLIENT_ID}",
                    f"client_secret={SEED_CLIENT_SECRET}",
                    f"tenant_id={SEED_TENANT_ID}",
                ],
            },
        ).raise_for_status()
    assert s.put(f"{base}/key/signer", json={"type": "rsa-3072"}).status_code == 204
    assert (
        s.put(
            f"{base}/kms/example-kms/key/signer", json={"purpose": ["sign", "verify"]}
        ).status_code
        == 204
    )
    assert s.post(f"{base}/key/signer/rotate").status_code == 204
    key = s.get(f"{base}/key/signer").json()["data"]
    dist = s.get(f"{base}/kms/example-kms/key/signer").json()["data"]

    from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm

    credential = auditor_credential(emulator)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"the seed")
    digest = digest.finalize()
    for engine_version, kv_version in dist["versions"].items():
        key_id = f"{emulator.vault_url('keyvault-name')}/keys/{dist['name']}/{kv_version}"
        crypto = CryptographyClient(
            key_id, credential, verify_challenge_resource=False, connection_verify=emulator.ca_path
        )
        signature = crypto.sign(SignatureAlgorithm.rs256, digest).signature
        public = serialization.load_pem_public_key(
            key["versions"][engine_version]["public_key"].encode()
        )
        public.verify(signature, b"the seed", padding.PKCS1v15(), hashes.SHA256())
