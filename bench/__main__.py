"""``make bench``: the API against its anchors, on this machine, in one run.

- create rsa-2048 through the API vs. key generation alone plus one Table transaction;
- read a key through the API vs. one Table point read;
- the same read with a token from the token store holding three policies vs. with the root
  token from settings (no lookup): the difference, in Table point reads (at most one);
- the ACL per request vs. one HMAC-SHA256 of a token (bench/policy.py, no servers);
- distribution (bench/distribution.py);
- audit devices: a read with a file, log or blob device vs. with none (bench/audit.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable

import requests

from bench import audit, policy
from bench.common import report
from tools.localstack import Azurite, FuncHost, engine_settings, wait_healthy


def timed(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def bench_keys(n_create: int, n_read: int) -> None:
    from azure.data.tables import TableServiceClient

    from shared import keytypes

    azurite = Azurite()
    prefix = f"bench{os.getpid()}"
    host = FuncHost(engine_settings(azurite, prefix))
    try:
        wait_healthy(host.url)
        session = requests.Session()
        session.headers["X-Vault-Token"] = "root"
        base = f"{host.url}/v1/keymgmt"
        session.post(f"{base}/key/warmup", json={"type": "rsa-2048"}).raise_for_status()

        service = TableServiceClient.from_connection_string(azurite.connection_string)
        table = service.create_table_if_not_exists(f"{prefix}anchor")

        def api_create() -> None:
            r = session.post(f"{base}/key/c-{uuid.uuid4().hex[:10]}", json={"type": "rsa-2048"})
            assert r.status_code == 204, r.text

        def anchor_create() -> None:
            material = keytypes.generate("rsa-2048")
            row = uuid.uuid4().hex
            table.submit_transaction(
                [
                    ("create", {"PartitionKey": "p", "RowKey": f"k{row}", "v": 1}),
                    (
                        "create",
                        {
                            "PartitionKey": "p",
                            "RowKey": f"v{row}",
                            "m": material.private,
                            "pub": material.public_pem,
                        },
                    ),
                ]
            )

        def api_read() -> None:
            assert session.get(f"{base}/key/warmup").status_code == 200

        # A token with three policies of 20 rules each, the last one granting the read.
        names = []
        for i in range(3):
            rules = "".join(
                f'path "keymgmt/key/p{i}-{j}-*" {{ capabilities = ["read", "list"] }}\n'
                for j in range(19)
            )
            rules += 'path "keymgmt/key/*" { capabilities = ["read"] }\n' if i == 2 else ""
            session.put(
                f"{host.url}/v1/sys/policies/acl/bench{i}", json={"policy": rules}
            ).raise_for_status()
            names.append(f"bench{i}")
        created = session.post(
            f"{host.url}/v1/auth/token/create", json={"policies": names, "ttl": "1h"}
        )
        created.raise_for_status()
        scoped = requests.Session()
        scoped.headers["X-Vault-Token"] = created.json()["auth"]["client_token"]

        def token_read() -> None:
            assert scoped.get(f"{base}/key/warmup").status_code == 200

        def anchor_read() -> None:
            table.get_entity("p", next(iter(rows)))

        # Interleave the two sides so machine noise hits both alike.
        create_api, create_anchor = [], []
        for _ in range(n_create):
            create_api += timed(api_create, 1)
            create_anchor += timed(anchor_create, 1)
        rows = [e["RowKey"] for e in table.list_entities(select=["RowKey"])]
        read_api, read_anchor, read_token = [], [], []
        token_read()  # the first request of a token reads and parses its policies
        for _ in range(n_read):
            read_api += timed(api_read, 1)
            read_anchor += timed(anchor_read, 1)
            read_token += timed(token_read, 1)

        print("keys (rsa-2048), Azurite on loopback:")
        a = report("create through the API", create_api)
        b = report("anchor: keygen + one Table transaction", create_anchor)
        print(f"  ratio create API / anchor: {a / b:.2f}")
        c = report("read through the API", read_api)
        d = report("anchor: one Table point read", read_anchor)
        print(f"  ratio read API / anchor: {c / d:.2f}")
        e = report("read with a 3-policy token from the token store", read_token)
        print(
            "  tokens and policies add (token read - root read) / one point read: "
            f"{(e - c) / d:.2f} point reads"
        )
    finally:
        host.stop()
        azurite.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--creates", type=int, default=30)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args(argv)
    policy.main([])
    bench_keys(args.creates, args.reads)
    audit.main([])
    try:
        from bench import distribution
    except ImportError:
        return 0
    distribution.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
