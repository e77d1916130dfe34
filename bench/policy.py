"""The ACL's cost per request against the token lookup every request pays anyway, in one run.

- build an ACL from a token's 3 cached policies of 20 rules each (exact, prefix, "+" rules,
  parameter constraints) and answer one ``allows`` with a request body;
- anchor: one HMAC-SHA256 of a token under a salt, which is how the token store finds the
  token's row (reference §2.2);
- medians of batches, the two sides interleaved so machine noise hits both alike.

Pure Python, no servers: ``python -m bench.policy``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
import statistics
import sys
import time
from collections.abc import Callable

from bench.common import Recorder
from shared.policy import ACL, Policy, parse

BATCH = 1000


def token_policy(n: int) -> Policy:
    """20 rules of the shapes a keymgmt deployment writes."""
    blocks = []
    for i in range(20):
        shape = i % 4
        if shape == 0:
            path = f"keymgmt{n}/key/app{i}-*"
        elif shape == 1:
            path = f"keymgmt{n}/kms/+/key/k{i}"
        elif shape == 2:
            path = f"keymgmt{n}/key/exact{i}"
        else:
            path = f"keymgmt{n}/key/+/rotate{i}"
        blocks.append(
            f'path "{path}" {{\n  capabilities = ["create", "read", "update"]\n'
            '  allowed_parameters = { "type" = ["rsa-*"], "deletion_allowed" = [] }\n'
            '  denied_parameters = { "deletion_allowed" = ["true"] }\n}'
        )
    return parse(f"team{n}", "\n".join(blocks))


def per_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(BATCH):
        fn()
    return (time.perf_counter() - start) / BATCH


def show(label: str, samples: list[float]) -> float:
    median = statistics.median(samples)
    q = statistics.quantiles(samples, n=10)
    print(
        f"  {label:<56} median {median * 1e6:8.2f} us   p10 {q[0] * 1e6:8.2f}   "
        f"p90 {q[-1] * 1e6:8.2f}   n={len(samples)}x{BATCH}"
    )
    return median


def bench_policy(rounds: int, rec: Recorder | None = None) -> None:
    rec = rec or Recorder()
    policies = [token_policy(n) for n in range(3)]
    body = {"type": "rsa-2048", "deletion_allowed": False}
    salt, token = secrets.token_bytes(32), b"hvs." + secrets.token_urlsafe(18).encode()

    def acl_request() -> None:
        assert ACL(policies).allows("keymgmt1/key/app8-prod", "update", body)

    def acl_build() -> None:
        ACL(policies)

    acl = ACL(policies)

    def acl_allows() -> None:
        acl.allows("keymgmt2/kms/azure/key/k9", "read")

    def anchor() -> None:
        hmac.new(salt, token, hashlib.sha256).digest()

    sides: dict[str, list[float]] = {"request": [], "build": [], "allows": [], "anchor": []}
    for _ in range(rounds):
        sides["request"].append(per_call(acl_request))
        sides["build"].append(per_call(acl_build))
        sides["allows"].append(per_call(acl_allows))
        sides["anchor"].append(per_call(anchor))

    print("ACL per request (3 policies x 20 rules, pure Python):")
    a = show("build the ACL + one allows with a body", sides["request"])
    c = show("  of which: build the ACL", sides["build"])
    d = show("  of which: one allows (a '+' rule, no body)", sides["allows"])
    b = show("anchor: one HMAC-SHA256 of a token (the token lookup)", sides["anchor"])
    rec.add(
        "policy.acl_request", "ACL per request (build + one allows), pure Python", a * 1e6, "us"
    )
    rec.add("policy.acl_build", "ACL: build from 3 x 20 rules", c * 1e6, "us")
    rec.add("policy.acl_allows", "ACL: one allows", d * 1e6, "us")
    rec.add("policy.hmac", "anchor: one HMAC-SHA256 of a token", b * 1e6, "us")
    rec.ratio("policy.acl_over_hmac", "ACL per request / one token HMAC", a / b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.policy", description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    bench_policy(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
