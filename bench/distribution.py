"""Distribution into Key Vault against the emulator's own import round trip, in one run.

- distribute a key holding N versions through the API (``protection=hsm``, BYOK; and
  ``protection=software``, JWK), per version, and the marginal cost of one more version
  (N versions minus one version, over N - 1);
- anchors, measured against the same emulator in the same run: one ``KeyClient.import_key``
  of a pre-built software JWK, and one of a pre-built BYOK blob (``key_hsm``);
- ratios of the two, medians, the sides interleaved so machine noise hits both alike.

Its own Azurite, Key Vault emulator and local Functions host, like the keys bench.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial

import requests

from bench.common import Recorder
from bench.stack import key_vault
from tools.localstack import Azurite, FuncHost, emulator_settings, engine_settings, wait_healthy

VAULT = "bench-vault"
KEY_TYPE = "rsa-2048"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_distribution(versions: int, rounds: int, rec: Recorder | None = None) -> None:
    from azure.identity import ClientSecretCredential
    from azure.keyvault.keys import JsonWebKey, KeyClient
    from cryptography.hazmat.primitives.asymmetric import rsa

    from shared import byok, keytypes
    from shared.providers.azurekeyvault import GENERATOR, KEK_NAME, software_jwk

    rec = rec or Recorder()
    if versions < 2:
        raise SystemExit("--versions must be at least 2 (the marginal cost needs two sizes)")
    azurite = Azurite()
    emulator, credentials = key_vault(VAULT)
    host = FuncHost(engine_settings(azurite, f"benchd{os.getpid()}", **emulator_settings(emulator)))
    try:
        wait_healthy(host.url)
        session = requests.Session()
        session.headers["X-Vault-Token"] = "root"
        base = f"{host.url}/v1/keymgmt"
        session.put(
            f"{base}/kms/bench",
            json={
                "provider": "azurekeyvault",
                "key_collection": VAULT,
                "credentials": credentials,
            },
        ).raise_for_status()

        def new_key(n: int) -> str:
            name = f"b-{uuid.uuid4().hex[:10]}"
            session.post(f"{base}/key/{name}", json={"type": KEY_TYPE}).raise_for_status()
            for _ in range(n - 1):
                session.post(f"{base}/key/{name}/rotate").raise_for_status()
            return name

        def distribute(name: str, protection: str) -> None:
            r = session.put(
                f"{base}/kms/bench/key/{name}",
                json={"purpose": "encrypt,decrypt", "protection": protection},
            )
            assert r.status_code == 204, r.text

        # Warm up both paths (token, KEK creation and cache, first connections).
        distribute(new_key(1), "hsm")
        distribute(new_key(1), "software")

        credential = ClientSecretCredential(
            emulator.tenant_id,
            credentials["client_id"],
            credentials["client_secret"],
            authority=emulator.authority_host,
            disable_instance_discovery=True,
            connection_verify=emulator.ca_path,
        )
        client = KeyClient(
            emulator.vault_url(VAULT),
            credential,
            verify_challenge_resource=False,
            connection_verify=emulator.ca_path,
        )
        kek = client.get_key(KEK_NAME)  # the engine created it during the warm-up
        kek_public = rsa.RSAPublicNumbers(
            int.from_bytes(kek.key.e, "big"), int.from_bytes(kek.key.n, "big")
        ).public_key()
        materials = [keytypes.generate(KEY_TYPE).private for _ in range(4)]
        jwks = [JsonWebKey(key_ops=["encrypt", "decrypt"], **software_jwk(m)) for m in materials]
        blobs = [
            JsonWebKey(
                kty="RSA-HSM",
                key_ops=["encrypt", "decrypt"],
                t=byok.build_transfer_blob(m, kek_public, kek.id, generator=GENERATOR),
            )
            for m in materials
        ]

        def anchor_import(jwk: JsonWebKey, hsm: bool) -> None:
            client.import_key(f"a-{uuid.uuid4().hex[:10]}", jwk, hardware_protected=hsm)

        anchor_import(jwks[0], False)
        anchor_import(blobs[0], True)

        samples: dict[str, list[float]] = {
            k: [] for k in ("hsm_n", "hsm_1", "sw_n", "sw_1", "anchor_byok", "anchor_jwk")
        }
        for i in range(rounds):
            # Keys are made outside the timed part; each is distributed once.
            many = {p: new_key(versions) for p in ("hsm", "software")}
            one = {p: new_key(1) for p in ("hsm", "software")}
            blob, jwk = blobs[i % len(blobs)], jwks[i % len(jwks)]
            samples["hsm_n"].append(timed(partial(distribute, many["hsm"], "hsm")) / versions)
            for _ in range(versions):
                samples["anchor_byok"].append(timed(partial(anchor_import, blob, True)))
            samples["hsm_1"].append(timed(partial(distribute, one["hsm"], "hsm")))
            samples["sw_n"].append(
                timed(partial(distribute, many["software"], "software")) / versions
            )
            for _ in range(versions):
                samples["anchor_jwk"].append(timed(partial(anchor_import, jwk, False)))
            samples["sw_1"].append(timed(partial(distribute, one["software"], "software")))

        print(
            f"distribution ({KEY_TYPE}, {versions} versions, {rounds} rounds), Azurite and the "
            "Key Vault emulator on loopback:"
        )
        byok_anchor = rec.samples(
            "dist.anchor_byok",
            "anchor: import_key of a pre-built BYOK blob",
            samples["anchor_byok"],
        )
        jwk_anchor = rec.samples(
            "dist.anchor_jwk",
            "anchor: import_key of a pre-built software JWK",
            samples["anchor_jwk"],
        )
        hsm_n = rec.samples(
            "dist.hsm_per_version",
            f"distribute hsm, {versions} versions, per version",
            samples["hsm_n"],
        )
        hsm_1 = rec.samples("dist.hsm_1", "distribute hsm, 1 version", samples["hsm_1"])
        hsm_marginal = (hsm_n * versions - hsm_1) / (versions - 1)
        rec.derived(
            "dist.hsm_marginal",
            "distribute hsm, marginal cost of one more version",
            hsm_marginal * 1000,
            "ms",
        )
        sw_n = rec.samples(
            "dist.sw_per_version",
            f"distribute software, {versions} versions, per version",
            samples["sw_n"],
        )
        sw_1 = rec.samples("dist.sw_1", "distribute software, 1 version", samples["sw_1"])
        sw_marginal = (sw_n * versions - sw_1) / (versions - 1)
        rec.derived(
            "dist.sw_marginal",
            "distribute software, marginal cost of one more version",
            sw_marginal * 1000,
            "ms",
        )
        rec.ratio(
            "dist.hsm_over_byok",
            "distribution hsm per version / BYOK import",
            hsm_n / byok_anchor,
            "<= 1.2",
        )
        rec.ratio(
            "dist.hsm_marginal_over_byok",
            "distribution hsm marginal version / BYOK import",
            hsm_marginal / byok_anchor,
        )
        rec.ratio(
            "dist.sw_over_jwk",
            "distribution software per version / JWK import",
            sw_n / jwk_anchor,
            "<= 1.2",
        )
        rec.ratio(
            "dist.sw_marginal_over_jwk",
            "distribution software marginal version / JWK import",
            sw_marginal / jwk_anchor,
        )
    finally:
        host.stop()
        emulator.stop()
        azurite.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.distribution", description=__doc__)
    parser.add_argument("--versions", type=int, default=5, help="versions per distributed key")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv or [])
    bench_distribution(args.versions, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
