"""Scale-out races: three hosts (three instances of the Function App) on one Azurite and one
Key Vault emulator, requests spread round-robin, started together (a barrier).

What a user or operator must see, whatever the interleaving:

* every concurrent request gets the answer it would get alone, or a refusal that says why
  where the operations truly conflict (a provider deleted under a distribution, a mount
  disabled under a create); never a 5xx;
* the stored state and Key Vault agree as soon as the last request has answered (versions,
  enabled flags, one Key Vault key per distribution, one key exchange key per vault);
* the timer functions overlap safely: a due key rotates once, imports are counted once, a
  removal another instance finished is no error; every summary counts only its own run;
* what a crash leaves (a half-deleted key, a dead instance's import lease, rows nobody
  points to) is finished by the reconciler on a surviving instance, or by the next request.

Outcomes vary from run to run; the assertions hold for every interleaving. No timing is
asserted: waits are polls with a deadline taken from the engine's own constants.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.helpers import poll
from tests.scaleout.conftest import (
    FRESH_VAULTS,
    HOSTS,
    MOUNT,
    VAULT,
    Cluster,
    errors_in,
    log_summaries,
    together,
)
from tools.kvemu.events import key_event

pytestmark = [pytest.mark.xdist_group("scaleout")]

PURPOSE = {"ecdsa-p256": "sign,verify", "rsa-2048": "encrypt,decrypt"}


# -- helpers -------------------------------------------------------------------------------------


class Checks:
    """Named invariants, tallied per scenario; every broken one is reported before failing."""

    def __init__(self, so: Cluster) -> None:
        self.so = so
        self.problems: list[str] = []

    def __call__(self, invariant: str, ok: bool, detail: str = "") -> bool:
        self.so.tally.checked(invariant, bool(ok))
        if not ok:
            self.problems.append(f"[{invariant}] {detail}")
        return bool(ok)

    def verdict(self) -> None:
        assert not self.problems, "\n".join(self.problems)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ok(response: requests.Response | Exception) -> bool:
    return isinstance(response, requests.Response) and 200 <= response.status_code < 300


def show(response: requests.Response | Exception) -> str:
    if isinstance(response, Exception):
        return f"{type(response).__name__}: {str(response)[:200]}"
    return (
        f"{response.request.method} {response.url} -> {response.status_code} {response.text[:300]}"
    )


def says_retry(response: requests.Response | Exception) -> bool:
    """A 409 that tells the client to retry: the honest answer to a true conflict."""
    return (
        isinstance(response, requests.Response)
        and response.status_code == 409
        and "retry" in response.text.lower()
    )


def must(response: requests.Response) -> requests.Response:
    assert ok(response), f"setup: {show(response)}"
    return response


def new_key(so: Cluster, key_type: str = "ecdsa-p256", versions: int = 1, **fields: Any) -> str:
    name = uid("k")
    must(so.api().post(f"{MOUNT}/key/{name}", json={"type": key_type, **fields}))
    for _ in range(versions - 1):
        must(so.api().post(f"{MOUNT}/key/{name}/rotate"))
    return name


def new_provider(so: Cluster, vault: str = VAULT) -> str:
    name = uid("p")
    body = {
        "provider": "azurekeyvault",
        "key_collection": vault,
        "credentials": {"tenant_id": so.kv.tenant_id},  # the host's managed identity
    }
    must(so.api().put(f"{MOUNT}/kms/{name}", json=body))
    return name


def distributed(
    so: Cluster, key_type: str = "ecdsa-p256", versions: int = 1, **options: Any
) -> tuple[str, str]:
    provider = new_provider(so)
    key = new_key(so, key_type, versions)
    must(
        so.api().post(
            f"{MOUNT}/kms/{provider}/key/{key}", json={"purpose": PURPOSE[key_type], **options}
        )
    )
    return provider, key


def read(so: Cluster, path: str, index: int | None = None) -> dict[str, Any] | None:
    response = so.api(index).get(path)
    assert response.status_code in (200, 404), show(response)
    return response.json()["data"] if response.status_code == 200 else None


def listed(so: Cluster, path: str) -> list[str] | None:
    response = so.api().list(path)
    assert response.status_code in (200, 404), show(response)
    return response.json()["data"]["keys"] if response.status_code == 200 else None


def dist_row(so: Cluster, provider: str, key: str) -> Any | None:
    return so.row(MOUNT, f"dist:{provider}:{key}")


def row_versions(row: Any) -> dict[str, str]:
    return json.loads(row.get("versions") or "{}")


def agree(ck: Checks, so: Cluster, provider: str, key: str, vault: str = VAULT) -> dict | None:
    """The distribution holds every engine version, and Key Vault holds exactly those: one
    live key, each engine version imported once."""
    dist = read(so, f"{MOUNT}/kms/{provider}/key/{key}")
    data = read(so, f"{MOUNT}/key/{key}")
    if not ck("the distribution exists", dist is not None and data is not None, key):
        return None
    latest = data["latest_version"]
    ck(
        "the distribution holds every engine version",
        sorted(map(int, dist["versions"])) == list(range(1, latest + 1))
        and "pending_versions" not in dist,
        f"{key}: versions {sorted(dist['versions'], key=int)}, pending "
        f"{dist.get('pending_versions')}, engine latest {latest}",
    )
    versions = so.remote(dist["name"], vault) or []
    tags = [v["tags"].get("keymgmt-version") for v in versions]
    ck(
        "no engine version imported twice",
        len(tags) == len(set(tags)),
        f"{dist['name']}: tags {sorted(tags)}",
    )
    ck(
        "Key Vault holds the engine's versions",
        {v["tags"].get("keymgmt-version"): v["version"] for v in versions} == dist["versions"],
        f"{dist['name']}: Key Vault {sorted(tags, key=lambda t: int(t or 0))}, engine "
        f"{sorted(dist['versions'], key=int)}",
    )
    live = so.live_names(f"{key}-", vault)
    ck(
        "one Key Vault key per distribution",
        live == [dist["name"]],
        f"{key}: live Key Vault keys {live}, the distribution's is {dist['name']}",
    )
    return dist


def remote_rows(so: Cluster, key: str) -> list[Any]:
    """Owner-index rows (partition ``_remote``) naming engine key ``key``."""
    return [r for r in so.rows("_remote") if r.get("key") == key and r.get("mount") == MOUNT]


def orphans(so: Cluster, rows: list[Any]) -> list[str]:
    """Owner-index rows whose distribution is gone or uses another Key Vault name."""
    out = []
    for r in rows:
        name = r["RowKey"].split(":", 1)[1]
        dist = dist_row(so, r["provider"], r["key"])
        if dist is None or dist.get("remote_name") != name:
            out.append(
                f"{r['RowKey']} -> {r['provider']}/{r['key']} "
                f"(distribution {'gone' if dist is None else 'uses ' + dist['remote_name']})"
            )
    return out


def enabled_flags(so: Cluster, dist: dict[str, Any]) -> dict[int, bool]:
    """Engine version → Key Vault's enabled flag of its imported version."""
    by_id = {v["version"]: v["enabled"] for v in so.remote(dist["name"]) or []}
    return {int(v): by_id.get(vid) for v, vid in dist["versions"].items()}


def log_marks(so: Cluster) -> list[int]:
    return [so.log_mark(i) for i in range(HOSTS)]


# -- 1. min_enabled_version written from three hosts --------------------------------------------


def test_min_enabled_version_writes_reach_key_vault_at_once(so: Cluster):
    ck = Checks(so)
    provider, key = distributed(so, versions=12)
    for round_ in range(3):
        values = random.sample(range(1, 13), 9)
        apis = so.apis(len(values))
        outcomes = together(
            [
                (lambda a=a, v=v: a.post(f"{MOUNT}/key/{key}", json={"min_enabled_version": v}))
                for a, v in zip(apis, values, strict=True)
            ]
        )
        for o in outcomes:
            ck("every write of min_enabled_version answers 2xx", ok(o), show(o))
        stored = read(so, f"{MOUNT}/key/{key}")["min_enabled_version"]
        ck("the stored value is one that was written", stored in values, f"{stored} {values}")
        dist = read(so, f"{MOUNT}/kms/{provider}/key/{key}")
        flags = enabled_flags(so, dist)
        wrong = {v: f for v, f in sorted(flags.items()) if f != (v >= stored)}
        ck(
            "Key Vault's enabled flags follow the stored min_enabled_version at once",
            not wrong,
            f"round {round_}: min_enabled_version {stored} (writes {values}), Key Vault "
            f"enabled flags differ for versions {wrong}",
        )
    ck.verdict()


# -- 2. provider deleted while a key is distributed to it ---------------------------------------


def test_provider_delete_races_distribution(so: Cluster):
    ck = Checks(so)
    for attempt in range(10):
        key_type = ("ecdsa-p256", "rsa-2048")[attempt % 2]
        provider = new_provider(so)
        key = new_key(so, key_type)
        a, b = so.api(attempt % HOSTS), so.api((attempt + 1) % HOSTS)
        delay = random.uniform(0.05, 0.1)

        def distribute(a=a, provider=provider, key=key, key_type=key_type):
            return a.post(f"{MOUNT}/kms/{provider}/key/{key}", json={"purpose": PURPOSE[key_type]})

        def delete(b=b, provider=provider, delay=delay):
            time.sleep(delay)
            return b.delete(f"{MOUNT}/kms/{provider}")

        dist_o, delete_o = together([distribute, delete])
        for o in (dist_o, delete_o):
            ck(
                "no 5xx",
                isinstance(o, requests.Response) and o.status_code < 500,
                show(o),
            )
        provider_there = read(so, f"{MOUNT}/kms/{provider}") is not None
        holders = listed(so, f"{MOUNT}/key/{key}/kms") or []
        dist = read(so, f"{MOUNT}/kms/{provider}/key/{key}")
        live = so.live_names(f"{key}-")
        ck(
            "never both 2xx",
            not (ok(dist_o) and ok(delete_o)),
            f"try {attempt}: {show(dist_o)} / {show(delete_o)}",
        )
        if not ok(delete_o):
            ck(
                "a refused delete says the provider holds keys (or 409 retry)",
                says_retry(delete_o)
                or (
                    isinstance(delete_o, requests.Response)
                    and delete_o.status_code == 400
                    and "are distributed to it" in delete_o.text
                ),
                show(delete_o),
            )
        if not ok(dist_o):
            ck(
                "a refused distribute names the missing provider (or 409 retry)",
                says_retry(dist_o)
                or (
                    isinstance(dist_o, requests.Response)
                    and dist_o.status_code == 400
                    and provider in dist_o.text
                    and not provider_there
                ),
                show(dist_o),
            )
        ck(
            "a provider that stayed holds the key (its delete was refused for that)",
            not provider_there or ok(dist_o) or says_retry(delete_o),
            f"try {attempt}: {show(dist_o)} / {show(delete_o)}",
        )
        ck(
            "no ghost: a key lists only providers that exist",
            provider_there or provider not in holders,
            f"try {attempt}: provider {provider} gone, key/{key}/kms lists it",
        )
        ck(
            "no ghost: Key Vault holds no live key for a gone provider",
            provider_there or not live,
            f"try {attempt}: provider {provider} gone, Key Vault holds {live}",
        )
        ck(
            "no distribution row outlives its provider",
            provider_there or dist_row(so, provider, key) is None,
            f"try {attempt}: provider gone, dist:{provider}:{key} stays",
        )
        if provider_there and ok(dist_o):
            agree(ck, so, provider, key)
        elif dist is not None:
            ck("a distribution exists only if it answered 2xx", False, show(dist_o))
    ck.verdict()


# -- 3. mount disabled while a key is created in it ----------------------------------------------


def test_mount_disable_races_key_create(so: Cluster):
    ck = Checks(so)
    for attempt in range(9):
        mount = f"m{uuid.uuid4().hex[:8]}"
        must(so.api().post(f"sys/mounts/{mount}", json={"type": "keymgmt"}))
        key = uid("k")
        a, b = so.api(attempt % HOSTS), so.api((attempt + 1) % HOSTS)
        delay = random.uniform(0, 0.03)

        def disable(a=a, mount=mount, delay=delay):
            time.sleep(delay)
            return a.delete(f"sys/mounts/{mount}")

        def create(b=b, mount=mount, key=key):
            return b.post(f"{mount}/key/{key}", json={"type": "ecdsa-p256"})

        disable_o, create_o = together([disable, create])
        for o in (disable_o, create_o):
            ck("no 5xx", isinstance(o, requests.Response) and o.status_code < 500, show(o))
        rows = [r["RowKey"] for r in so.rows(mount)]
        if ok(disable_o):
            ck(
                "a disabled mount holds no rows",
                not rows,
                f"try {attempt}: DELETE sys/mounts/{mount} answered {disable_o.status_code}, "
                f"create answered {create_o.status_code if ok(create_o) else show(create_o)}; "
                f"rows left {rows}",
            )
            # Both may answer 2xx: the create committed before the disable's mark, and the
            # disable removed the key with the mount (its rows are checked above).
            ck(
                "the create answers 2xx, 404 (the mount was disabled first) or 409 retry",
                ok(create_o)
                or says_retry(create_o)
                or (isinstance(create_o, requests.Response) and create_o.status_code == 404),
                show(create_o),
            )
            must(so.api().post(f"sys/mounts/{mount}", json={"type": "keymgmt"}))
            response = so.api().list(f"{mount}/key")
            ck(
                "a re-enabled mount shows no keys",
                response.status_code == 404,
                f"try {attempt}: LIST {mount}/key after re-enabling -> {response.status_code} "
                f"{response.text[:200]}",
            )
        else:
            # Nothing is distributed here, so the only refusal is a 409 retry.
            ck("a refused disable says retry (409)", says_retry(disable_o), show(disable_o))
            exists = read(so, f"{mount}/key/{key}") is not None
            ck(
                "a create in a mount that stayed answers 2xx (or 409 retry)",
                ok(create_o) or says_retry(create_o),
                f"try {attempt}: disable {show(disable_o)}; create {show(create_o)}",
            )
            ck(
                "a 2xx create's key exists",
                exists or not ok(create_o),
                f"try {attempt}: {key}",
            )
    ck.verdict()


# -- 4. identical distributes; a distribute racing rotations ------------------------------------


def test_identical_distributes_from_every_host(so: Cluster):
    ck = Checks(so)
    provider = new_provider(so)
    key = new_key(so, versions=3)
    apis = so.apis(9)
    outcomes = together(
        [
            (lambda a=a: a.post(f"{MOUNT}/kms/{provider}/key/{key}", json={"purpose": "sign"}))
            for a in apis
        ]
    )
    for o in outcomes:
        ck("every identical distribute answers 2xx", ok(o), show(o))
    agree(ck, so, provider, key)
    so.reconcile(1)
    left = orphans(so, remote_rows(so, key))
    ck("no orphan owner-index rows after a reconciler run", not left, f"{key}: {left}")
    ck.verdict()


def test_distribute_races_rotations(so: Cluster):
    ck = Checks(so)
    provider = new_provider(so)
    key = new_key(so)
    apis = so.apis(12)
    calls = []
    for i, a in enumerate(apis):
        if i % 4 == 0:
            calls.append(
                lambda a=a: a.post(f"{MOUNT}/kms/{provider}/key/{key}", json={"purpose": "sign"})
            )
        else:
            calls.append(lambda a=a: a.post(f"{MOUNT}/key/{key}/rotate"))
    outcomes = together(calls)
    for o in outcomes:
        ck("every distribute and rotation answers 2xx", ok(o), show(o))
    rotated = sum(ok(o) for i, o in enumerate(outcomes) if i % 4 != 0)
    data = read(so, f"{MOUNT}/key/{key}")
    ck(
        "each rotation adds one version",
        data["latest_version"] == 1 + rotated,
        f"{rotated} rotations, latest {data['latest_version']}",
    )
    agree(ck, so, provider, key)
    so.reconcile(2)
    agree(ck, so, provider, key)
    left = orphans(so, remote_rows(so, key))
    ck("no orphan owner-index rows after a reconciler run", not left, f"{key}: {left}")
    ck.verdict()


# -- 5. one distribution removed from every host -------------------------------------------------


def test_concurrent_removals_of_one_distribution(so: Cluster):
    ck = Checks(so)
    provider, key = distributed(so, versions=2)
    apis = so.apis(9)
    outcomes = together([(lambda a=a: a.delete(f"{MOUNT}/kms/{provider}/key/{key}")) for a in apis])
    for o in outcomes:
        ck("every removal answers 2xx", ok(o), show(o))
    ck(
        "the distribution is gone",
        read(so, f"{MOUNT}/kms/{provider}/key/{key}") is None
        and dist_row(so, provider, key) is None,
        f"{provider}/{key}",
    )
    ck(
        "the key lists no provider",
        listed(so, f"{MOUNT}/key/{key}/kms") is None,
        f"key/{key}/kms: {listed(so, f'{MOUNT}/key/{key}/kms')}",
    )
    ck(
        "Key Vault holds no live key for it",
        not so.live_names(f"{key}-"),
        str(so.live_names(f"{key}-")),
    )
    ck.verdict()


# -- 6. overlapping sweeps; overlapping reconcilers ---------------------------------------------


def test_overlapping_sweeps_rotate_each_due_key_once(so: Cluster):
    ck = Checks(so)
    keys = [new_key(so) for _ in range(4)]
    dists = [distributed(so) for _ in range(2)]
    keys += [k for _, k in dists]
    for k in keys:
        must(so.api().post(f"{MOUNT}/key/{k}", json={"auto_rotate_period": "1s"}))

    def all_due() -> bool:
        now = dt.datetime.now(dt.UTC)
        for k in keys:
            when = read(so, f"{MOUNT}/key/{k}")["next_rotation_time"]
            if dt.datetime.fromisoformat(when.replace("Z", "+00:00")) >= now:
                return False
        return True

    assert poll(all_due, 10), "setup: the keys did not fall due"
    marks = log_marks(so)
    statuses = together([(lambda i=i: so.sweep(i)) for i in range(HOSTS)])
    # Nothing further falls due: a later sweep must not rotate these keys again.
    for k in keys:
        must(so.api().post(f"{MOUNT}/key/{k}", json={"auto_rotate_period": 0}))
    ck("every sweep answers 202", statuses == [202] * HOSTS, str(statuses))
    for k in keys:
        latest = read(so, f"{MOUNT}/key/{k}")["latest_version"]
        ck("each due key rotated exactly once", latest == 2, f"{k}: latest_version {latest}")
    runs = []
    for i in range(HOSTS):
        text = so.log_since(i, marks[i])
        errors = errors_in(text)
        ck("no ERROR or traceback from a sweep", not errors, f"host {i}: {errors[:5]}")
        runs += log_summaries(text, "sweep")
    ck("each host logged its sweep", len(runs) == HOSTS, str(runs))
    ck(
        "the sweeps' rotations add up to the keys rotated",
        sum(r.get("rotated", 0) for r in runs) == len(keys),
        f"{len(keys)} keys due, runs logged {runs}",
    )
    status = read(so, "sys/keymgmt/rotation")
    ck("the stored sweep summary shows no failure", status["failed"] == 0, str(status))
    ck(
        "the stored sweep summary counts only its own run",
        status["rotated"] <= len(keys),
        str(status),
    )
    for provider, key in dists:
        agree(ck, so, provider, key)
    ck.verdict()


def _recorded_versions(so: Cluster) -> dict[str, int]:
    """dist row key → number of recorded versions, for every distribution in our mount."""
    return {r["RowKey"]: len(row_versions(r)) for r in so.rows(MOUNT, "dist:")}


def test_overlapping_reconcilers_count_their_own_work(so: Cluster):
    ck = Checks(so)
    so.reconcile(0)  # what earlier scenarios left is settled first
    provider = new_provider(so)
    keys = [new_key(so) for _ in range(3)]
    doomed = [new_key(so) for _ in range(2)]
    for k in keys + doomed:
        must(so.api().post(f"{MOUNT}/kms/{provider}/key/{k}", json={"purpose": "sign"}))
    so.kv.fault(VAULT, "forbidden_by_connection", "import")
    for k in keys:
        for _ in range(2):
            must(so.api().post(f"{MOUNT}/key/{k}/rotate"))  # 2xx, with a warning
    so.kv.clear_faults()
    so.kv.fault(VAULT, "forbidden_by_connection", "delete")
    for k in doomed:
        response = so.api().delete(f"{MOUNT}/kms/{provider}/key/{k}")
        assert not ok(response), f"setup: the removal should have failed: {show(response)}"
        assert dist_row(so, provider, k)["state"] == "removing"
    so.kv.clear_faults()
    pending = sum(
        len(read(so, f"{MOUNT}/kms/{provider}/key/{k}").get("pending_versions", [])) for k in keys
    )
    assert pending == 6, f"setup: {pending} versions pending"
    before = _recorded_versions(so)
    marks = log_marks(so)
    statuses = together([(lambda i=i: so.admin(i, "reconciler")) for i in range(HOSTS)])
    ck("every reconciler run answers 202", statuses == [202] * HOSTS, str(statuses))
    after = _recorded_versions(so)
    imported = sum(n - before.get(rk, 0) for rk, n in after.items())
    removed = sum(1 for rk in before if rk not in after)
    runs = []
    for i in range(HOSTS):
        text = so.log_since(i, marks[i])
        runs += log_summaries(text, "reconcile")
        errors = errors_in(text)
        ck("no ERROR or traceback from a reconciler run", not errors, f"host {i}: {errors[:5]}")
    ck("each host logged its run", len(runs) == HOSTS, str(runs))
    ck("the pending versions were imported", imported >= pending, f"{imported} of {pending}")
    ck(
        "the runs' imports add up to the real number",
        sum(r.get("imported", 0) for r in runs) == imported,
        f"{imported} versions really imported; runs logged {runs}",
    )
    ck(
        "the runs' removals add up to the real number",
        sum(r.get("removed", 0) for r in runs) == removed,
        f"{removed} removals really finished; runs logged {runs}",
    )
    ck(
        "no run reports errors for work another instance finished",
        all(r.get("errors", 0) == 0 for r in runs),
        str(runs),
    )
    status = read(so, "sys/keymgmt/reconcile")
    ck(
        "the stored reconciler summary is honest",
        status["imported"] <= imported and status["removed"] <= removed and status["errors"] == 0,
        f"stored imported={status['imported']} removed={status['removed']} "
        f"errors={status['errors']}; really imported {imported}, removed {removed}; "
        f"details {[d for d in status.get('details', []) if d.get('errors')][:3]}",
    )
    for k in keys:
        agree(ck, so, provider, k)
    for k in doomed:
        ck(
            "an unfinished removal is finished",
            dist_row(so, provider, k) is None and not so.live_names(f"{k}-"),
            k,
        )
    ck.verdict()


# -- 7. the key exchange key of a fresh vault ----------------------------------------------------


@pytest.mark.parametrize("vault", FRESH_VAULTS)
def test_first_distributions_to_a_fresh_vault_make_one_kek(so: Cluster, vault: str):
    ck = Checks(so)
    assert so.remote("keymgmt-kek", vault) is None, f"setup: {vault} is not fresh"
    provider = new_provider(so, vault)
    keys = [new_key(so) for _ in range(HOSTS)]
    apis = so.apis(HOSTS)
    outcomes = together(
        [
            (lambda a=a, k=k: a.post(f"{MOUNT}/kms/{provider}/key/{k}", json={"purpose": "sign"}))
            for a, k in zip(apis, keys, strict=True)
        ]
    )
    for o in outcomes:
        ck("every first distribution answers 2xx", ok(o), show(o))
    kek = so.remote("keymgmt-kek", vault) or []
    ck(
        "one version of keymgmt-kek in the vault",
        len(kek) == 1,
        f"{vault}: keymgmt-kek has {len(kek)} versions",
    )
    for k in keys:
        agree(ck, so, provider, k, vault)
    ck.verdict()


# -- 8. leftovers: owner-index rows, a half-deleted key, stale rotation-index rows --------------


def test_owner_index_rows_of_removed_distributions_hold_the_name_through_their_grace(
    so: Cluster,
):
    """A removal on one host writes its owner row again ("released"): Key Vault hides a key
    being deleted from every read, so the row is what keeps its name taken. A reconciler on
    another host within the grace period leaves it (its removal after the grace is tested in
    tests/integration/test_events.py, where the grace can be shortened)."""
    ck = Checks(so)
    pairs = [distributed(so) for _ in range(2)]
    for provider, key in pairs:
        must(so.api(0).delete(f"{MOUNT}/kms/{provider}/key/{key}"))
    so.reconcile(1)
    for _, key in pairs:
        left = remote_rows(so, key)
        ck(
            "one released owner-index row per removed distribution after a reconciler run",
            len(left) == 1 and bool(left[0].get("released")),
            f"{key}: {[(r['RowKey'], r.get('released')) for r in left]}",
        )
    ck.verdict()


def test_key_half_deleted_by_a_killed_host_is_finished_by_the_reconciler(so: Cluster):
    ck = Checks(so)
    key = new_key(so, "aes256-gcm96", deletion_allowed=True)

    def rotate(index: int, n: int) -> None:
        api = so.api(index)
        for _ in range(n):
            must(api.post(f"{MOUNT}/key/{key}/rotate"))

    together([(lambda i=i: rotate(i, 50)) for i in range(HOSTS)])
    assert read(so, f"{MOUNT}/key/{key}")["latest_version"] == 151
    victim = so.api(0)
    thread = threading.Thread(target=lambda: _swallow(victim.delete, f"{MOUNT}/key/{key}"))
    thread.start()
    # Kill it once the delete has marked the key (a fixed sleep lost that race on a busy
    # machine: the kill came before the delete began), while it removes the 151 versions.
    poll(lambda: (r := so.row(MOUNT, f"key:{key}:")) is not None and r["state"] == "deleting",
         10, interval=0.005)  # fmt: skip
    so.kill(0)
    thread.join(60)
    row = so.row(MOUNT, f"key:{key}:")
    ck(
        "setup: the kill caught the delete half-way",
        row is not None and row["state"] == "deleting",
        f"key row after the kill: {row and dict(row)}",
    )
    ck("a key being deleted reads 404", read(so, f"{MOUNT}/key/{key}", 1) is None, key)
    ck("a key being deleted is not listed", key not in (listed(so, f"{MOUNT}/key") or []), key)
    so.reconcile(1)
    left = [r["RowKey"] for r in so.rows(MOUNT, f"key:{key}:")]
    left += [f"name:{key}"] if so.row(MOUNT, f"name:{key}") is not None else []
    ck(
        "one reconciler run on a survivor finishes the delete",
        not left,
        f"{len(left)} rows left for {key}: {left[:3]}...",
    )
    ck("the deleted key is not listed", key not in (listed(so, f"{MOUNT}/key") or []), key)
    so.replace(0)
    ck.verdict()


def _swallow(call: Callable[..., Any], *args: Any) -> None:
    try:
        call(*args)
    except requests.RequestException:
        pass  # the host was killed under it


def test_stale_rotation_index_rows_of_concurrent_creates_are_cleaned_up(so: Cluster):
    ck = Checks(so)
    key = uid("k")
    apis = so.apis(8)
    outcomes = together(
        [
            (
                lambda a=a: a.post(
                    f"{MOUNT}/key/{key}", json={"type": "ecdsa-p256", "auto_rotate_period": "24h"}
                )
            )
            for a in apis
        ]
    )
    for o in outcomes:
        ck("every create of one name answers 2xx", ok(o), show(o))

    def index() -> list[str]:
        return sorted(
            r["RowKey"]
            for r in so.rows("_rotation")
            if r.get("key") == key and r.get("mount") == MOUNT
        )

    slot = so.row(MOUNT, f"key:{key}:")["rotation_slot"]
    before = index()
    ck(
        "the key's rotation slot has its index row (else it never rotates)",
        slot in before,
        f"{key}: slot {slot}, index rows {before}",
    )
    so.reconcile(2)
    after = index()
    ck(
        "after a reconciler run only the key's own rotation-index row is left",
        after == [slot],
        f"{key}: slot {slot}, index rows before the run {before}, after {after}",
    )
    ck.verdict()


# -- 9. a dead lease holder; a host killed mid-import ------------------------------------------


def test_dead_import_lease_holder(so: Cluster):
    from shared.distribution import LEASE_SECONDS

    ck = Checks(so)
    provider = new_provider(so)
    key = new_key(so, versions=8)
    so.kv.fault(VAULT, "latency", "import", delay=1.0)  # imports are slow: the kill lands mid-way
    victim = so.api(0)
    thread = threading.Thread(
        target=_swallow,
        args=(lambda: victim.post(f"{MOUNT}/kms/{provider}/key/{key}", json={"purpose": "sign"}),),
    )
    thread.start()
    row = poll(lambda: (r := dist_row(so, provider, key)) is not None and row_versions(r) and r, 60)
    assert row, "setup: no version was imported"
    so.kill(0)
    thread.join(60)
    so.kv.clear_faults()
    held = dist_row(so, provider, key)
    ck(
        "setup: the dead host held the import lease",
        bool(held.get("lease_owner")) and len(row_versions(held)) < 8,
        f"lease {held.get('lease_owner')!r} until {held.get('lease_until')}, "
        f"{len(row_versions(held))} of 8 versions",
    )
    lease_end = held.get("lease_until") or dt.datetime.now(dt.UTC)
    # A reconciler on a survivor and a rotation on another, at once.
    reconciled: list[Any] = []
    runner = threading.Thread(target=lambda: reconciled.append(so.admin(2, "reconciler")))
    runner.start()
    rotation = so.api(1).post(f"{MOUNT}/key/{key}/rotate")
    ck("the rotation answers 2xx", ok(rotation), show(rotation))
    # "Not for long": the reconciler must not sit out the dead holder's lease.
    slack = max(0.0, (lease_end - dt.datetime.now(dt.UTC)).total_seconds()) + 10
    runner.join(slack)
    ck(
        "a reconciler on a survivor does not wait out a dead holder's lease",
        reconciled == [202],
        f"no answer within {slack:.0f} s (lease until {lease_end})"
        if not reconciled
        else str(reconciled),
    )
    latest = read(so, f"{MOUNT}/key/{key}")["latest_version"]

    def complete() -> bool:
        dist = read(so, f"{MOUNT}/kms/{provider}/key/{key}")
        return dist is not None and sorted(map(int, dist["versions"])) == list(range(1, latest + 1))

    done = poll(complete, LEASE_SECONDS + 15, interval=1)
    ck(
        "the rotation's distribution completes within the lease time, without a reconciler",
        done,
        f"{key}: versions {sorted(row_versions(dist_row(so, provider, key)), key=int)} "
        f"of 1..{latest} after {LEASE_SECONDS + 15} s (LEASE_SECONDS={LEASE_SECONDS})",
    )
    runner.join(300)
    # A host killed mid-import converges after one reconciler run: Key Vault = engine.
    so.reconcile(1)
    agree(ck, so, provider, key)
    so.replace(0)
    ck.verdict()


# -- what already holds ------------------------------------------------------------------------


def test_24_rotations_over_three_hosts(so: Cluster):
    ck = Checks(so)
    provider, key = distributed(so)
    apis = so.apis(24)
    outcomes = together([(lambda a=a: a.post(f"{MOUNT}/key/{key}/rotate")) for a in apis])
    for o in outcomes:
        ck("every rotation answers 2xx", ok(o), show(o))
    data = read(so, f"{MOUNT}/key/{key}")
    ck(
        "versions are consecutive, one per rotation",
        data["latest_version"] == 1 + sum(map(ok, outcomes))
        and sorted(map(int, data["versions"])) == list(range(1, data["latest_version"] + 1)),
        f"latest {data['latest_version']}, versions {sorted(data['versions'], key=int)}",
    )
    agree(ck, so, provider, key)
    ck.verdict()


def test_expiry_event_delivered_to_every_host_rotates_once(so: Cluster):
    ck = Checks(so)
    provider, key = distributed(so, expiration_period="20d")
    dist = read(so, f"{MOUNT}/kms/{provider}/key/{key}")
    version = dist["versions"]["1"]
    event = key_event(
        "KeyNearExpiry",
        vault=VAULT,
        key_id=f"{so.kv.vault_url(VAULT)}/keys/{dist['name']}/{version}",
        name=dist["name"],
        version=version,
        nbf=None,
        exp=int(time.time()) + 20 * 86400,
    )
    statuses = together([(lambda i=i: so.deliver(i % HOSTS, event)) for i in range(9)])
    ck("every delivery answers 202", statuses == [202] * 9, str(statuses))
    data = read(so, f"{MOUNT}/key/{key}")
    ck("nine deliveries rotate once", data["latest_version"] == 2, str(data["latest_version"]))
    agree(ck, so, provider, key)
    ck.verdict()
