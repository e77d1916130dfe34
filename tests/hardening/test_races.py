"""Races over real HTTP: 8-24 concurrent requests on one name, through the local host (threaded,
like the Functions host's concurrent invocations), Azurite and the Key Vault emulator.

Each scenario starts its requests together (a barrier), then checks what a user or operator
would see once the dust settles:

* no 5xx, and no refusal where a later request would have succeeded (a refusal that says
  "retry" is retried, as a client would);
* no false success: a 2xx whose effect is not in the final state (a create answered 204 with
  the wrong type, a removal answered 204 while the distribution is still there);
* invariants: versions 1..latest with nothing missing, every successful rotation adding exactly
  one; after the reconciler, a distribution's versions in Key Vault are the engine's versions;
  no orphan rows in Table Storage (a deleted key leaves no key, version, name or rotation-index
  row; no distribution row without its provider) and no live Key Vault key the engine forgot.

Outcomes of a race vary from run to run; the assertions hold for every interleaving, so a
correct engine passes every time. Timing is never asserted.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.fixtures.kvemu import VAULT

pytestmark = [pytest.mark.xdist_group("hardening")]

MOUNT = "keymgmt"
MAX_ATTEMPTS = 8  # per request, for answers that say "retry"
_RETRY = re.compile(r"\bretry\b|\btry again\b", re.IGNORECASE)


@dataclass(frozen=True)
class Call:
    label: str
    method: str
    path: str
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Outcome:
    call: Call
    status: int
    text: str
    attempts: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def __str__(self) -> str:
        tries = f" after {self.attempts} tries" if self.attempts > 1 else ""
        return (
            f"{self.call.method} /v1/{self.call.path} {self.call.body or ''} -> "
            f"{self.status}{tries} {self.text[:300]}"
        )


def says_retry(response: requests.Response) -> bool:
    """A refusal that tells the client to retry (the API's word for a lost race)."""
    if not 400 <= response.status_code < 500 or response.status_code == 403:
        return False
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return False
    return any(_RETRY.search(str(e)) for e in errors)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Race:
    """The scenario's tools: concurrent bursts, state reads (API, Azurite, emulator), and the
    list of problems found (all of them counted before the test fails)."""

    def __init__(self, host: Any, make_api: Any, audit: Any, kv: Any, azurite: Any) -> None:
        from azure.data.tables import TableClient

        self.host = host
        self.make_api = make_api
        self.api = make_api(host)
        self.audit = audit
        self.kv = kv
        # the table of the session's kv_funchost (tests.fixtures.funchost: prefix kv<pid>)
        self.table = TableClient.from_connection_string(
            azurite.connection_string, f"kv{os.getpid()}state"
        )
        self.problems: list[str] = []

    # -- requests --------------------------------------------------------------------------

    def must(self, method: str, path: str, **kw: Any) -> requests.Response:
        response = self.api.request(method, path, **kw)
        assert response.status_code in (200, 204), f"setup {method} {path}: {response.text}"
        return response

    def burst(self, calls: Sequence[Call]) -> list[Outcome]:
        """Send every call at once (one thread and session each); retry what says retry."""
        barrier = threading.Barrier(len(calls))

        def run(call: Call) -> Outcome:
            api = self.make_api(self.host)
            kw = {} if call.body is None else {"json": call.body}
            barrier.wait(timeout=60)
            for attempt in range(1, MAX_ATTEMPTS + 1):
                response = api.request(call.method, call.path, **kw)
                if attempt < MAX_ATTEMPTS and says_retry(response):
                    self.audit.count("retry")
                    time.sleep(random.uniform(0.05, 0.3))
                    continue
                return Outcome(call, response.status_code, response.text, attempt)
            raise AssertionError("unreachable")

        with ThreadPoolExecutor(len(calls)) as pool:
            outcomes = list(pool.map(run, calls))
        for o in outcomes:
            if o.status >= 500:
                self.problem("server_error", f"server error: {o}", counted=True)
        return outcomes

    def reconcile(self) -> dict[str, Any]:
        """Run the reconciler on the host (the admin endpoint runs it before answering)."""
        response = requests.post(f"{self.host.url}/admin/functions/reconciler", timeout=300)
        self.audit.count("requests")
        assert response.status_code == 202, response.text
        return self.api.get("sys/keymgmt/reconcile").json()["data"]

    # -- findings --------------------------------------------------------------------------

    def problem(self, kind: str, message: str, *, counted: bool = False) -> None:
        if not counted:
            self.audit.failure(kind, message=message)
        self.problems.append(f"[{kind}] {message}")

    def check(self, ok: bool, kind: str, message: str) -> None:
        if not ok:
            self.problem(kind, message)

    def verdict(self) -> None:
        assert not self.problems, "\n".join(self.problems)

    # -- reads -----------------------------------------------------------------------------

    def key(self, name: str) -> dict[str, Any] | None:
        response = self.api.get(f"{MOUNT}/key/{name}")
        assert response.status_code in (200, 404), response.text
        return response.json()["data"] if response.status_code == 200 else None

    def listed(self, path: str) -> list[str]:
        response = self.api.list(path)
        assert response.status_code in (200, 404), response.text
        return response.json()["data"]["keys"] if response.status_code == 200 else []

    def distribution(self, provider: str, key: str) -> dict[str, Any] | None:
        response = self.api.get(f"{MOUNT}/kms/{provider}/key/{key}")
        assert response.status_code in (200, 404), response.text
        return response.json()["data"] if response.status_code == 200 else None

    def rows(self, partition: str, prefix: str) -> list[Any]:
        """Azurite rows of ``partition`` whose RowKey starts with ``prefix`` (ends with ':')."""
        return list(
            self.table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": partition, "lo": prefix, "hi": prefix[:-1] + ";"},
            )
        )

    def row(self, partition: str, row: str) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    def rotation_rows(self, key: str) -> list[Any]:
        return list(
            self.table.query_entities(
                "PartitionKey eq '_rotation' and mount eq @m and key eq @k",
                parameters={"m": MOUNT, "k": key},
            )
        )

    def dist_rows(self, *, key: str | None = None, provider: str | None = None) -> list[Any]:
        rows = self.rows(MOUNT, f"dist:{provider}:" if provider else "dist:")
        return [r for r in rows if key is None or r.get("key") == key]

    def remote(self, prefix: str) -> dict[str, list[dict[str, Any]]]:
        """Live Key Vault keys (name → versions) whose name starts with ``prefix``."""
        for vault in self.kv.describe():
            if vault["name"] == VAULT:
                return {
                    k["name"]: k["versions"] for k in vault["keys"] if k["name"].startswith(prefix)
                }
        return {}

    def deleted(self, prefix: str) -> list[str]:
        """Soft-deleted (or still deleting) Key Vault keys whose name starts with ``prefix``."""
        for vault in self.kv.describe():
            if vault["name"] == VAULT:
                return sorted(
                    n for n in vault["deleted"] + vault["deleting"] if n.startswith(prefix)
                )
        return []

    # -- setup -----------------------------------------------------------------------------

    def new_key(self, key_type: str, versions: int = 1, **fields: Any) -> str:
        name = uid("r")
        self.must("POST", f"{MOUNT}/key/{name}", json={"type": key_type, **fields})
        for _ in range(versions - 1):
            self.must("POST", f"{MOUNT}/key/{name}/rotate")
        return name

    def new_provider(self) -> str:
        name = uid("rp")
        self.must("PUT", f"{MOUNT}/kms/{name}", json=self.provider_body())
        return name

    def provider_body(self) -> dict[str, Any]:
        """A provider on the emulator's vault, through the host's managed identity."""
        return {
            "provider": "azurekeyvault",
            "key_collection": VAULT,
            "credentials": {"tenant_id": self.kv.tenant_id},
        }

    # -- invariants ------------------------------------------------------------------------

    def check_key_rows(self, name: str) -> dict[str, Any] | None:
        """Table rows agree with what the API shows: a key has version rows 1..latest of its
        own incarnation, an active list row, no distribution rows beyond its providers; an
        absent key has no rows at all (key, versions, list, rotation index, distributions)."""
        data = self.key(name)
        rows = self.rows(MOUNT, f"key:{name}:")
        key_row = next((r for r in rows if r["RowKey"] == f"key:{name}:"), None)
        version_rows = [r for r in rows if r["RowKey"] != f"key:{name}:"]
        name_row = self.row(MOUNT, f"name:{name}")
        rotation = self.rotation_rows(name)
        dists = self.dist_rows(key=name)
        if data is None:
            leftovers = [r["RowKey"] for r in rows]
            leftovers += [f"name:{name}"] if name_row is not None else []
            leftovers += [f"_rotation/{r['RowKey']}" for r in rotation]
            leftovers += [r["RowKey"] for r in dists]
            self.check(
                not leftovers,
                "invariant",
                f"key {name} is gone (GET 404) but rows remain: {leftovers}",
            )
            self.check(
                name not in self.listed(f"{MOUNT}/key"),
                "invariant",
                f"key {name} reads 404 but is listed",
            )
            return None
        latest = data["latest_version"]
        self.check(
            sorted(map(int, data["versions"]))
            == list(range(data["min_enabled_version"], latest + 1)),
            "invariant",
            f"key {name}: versions {sorted(data['versions'], key=int)} with latest {latest}",
        )
        if key_row is None:
            self.problem("invariant", f"key {name} reads 200 but has no key row")
            return data
        self.check(
            key_row.get("state", "active") == "active",
            "invariant",
            f"key {name} reads 200 but its row is {key_row.get('state')}",
        )
        numbers = sorted(int(r["RowKey"].rsplit(":", 1)[1]) for r in version_rows)
        self.check(
            numbers == list(range(1, latest + 1)),
            "invariant",
            f"key {name}: version rows {numbers} for latest_version {latest}",
        )
        incarnation = key_row.get("uid")
        if incarnation:
            strangers = [r["RowKey"] for r in version_rows if r.get("key_uid") != incarnation]
            self.check(
                not strangers,
                "invariant",
                f"key {name}: version rows of an older key of that name: {strangers}",
            )
        self.check(
            name_row is not None and name_row.get("state", "active") == "active",
            "invariant",
            f"key {name} reads 200 but its list row is {name_row and dict(name_row)}",
        )
        self.check(
            name in self.listed(f"{MOUNT}/key"),
            "invariant",
            f"key {name} reads 200 but is not listed",
        )
        slot = key_row.get("rotation_slot") or ""
        if slot:
            self.check(
                any(r["RowKey"] == slot for r in rotation),
                "invariant",
                f"key {name}: its rotation slot {slot} has no index entry (never rotated again)",
            )
        providers = set(json.loads(key_row.get("providers") or "[]"))
        held = {r["provider"] for r in dists}
        self.check(
            providers == held,
            "invariant",
            f"key {name}: providers {sorted(providers)} but distribution rows for {sorted(held)}",
        )
        return data

    def check_distribution(self, provider: str, key: str) -> dict[str, Any] | None:
        """After the reconciler: a distribution holds every engine version, Key Vault holds
        exactly those; without one, Key Vault holds no live key of that engine key."""
        dist = self.distribution(provider, key)
        live = self.remote(f"{key}-")
        holders = self.listed(f"{MOUNT}/key/{key}/kms")
        data = self.key(key)
        if dist is None:
            self.check(
                not live,
                "invariant",
                f"{key} is not distributed to {provider}, yet Key Vault holds live keys "
                f"{sorted(live)} for it (orphans nobody will remove)",
            )
            self.check(
                provider not in holders,
                "invariant",
                f"key/{key}/kms lists {provider} without a distribution",
            )
            self.check(
                not self.dist_rows(key=key, provider=provider),
                "invariant",
                f"a distribution row of {key} to {provider} is left, reading 404",
            )
            return None
        latest = data["latest_version"] if data else 0
        self.check(
            sorted(map(int, dist["versions"])) == list(range(1, latest + 1))
            and "pending_versions" not in dist,
            "invariant",
            f"distribution of {key}: versions {sorted(dist['versions'], key=int)}, "
            f"pending {dist.get('pending_versions')}, engine latest {latest}",
        )
        self.check(
            provider in holders,
            "invariant",
            f"key/{key}/kms does not list {provider}, which holds it",
        )
        self.check(
            set(live) <= {dist["name"]},
            "invariant",
            f"Key Vault holds live keys {sorted(live)} for {key}; only "
            f"{dist['name']} is the engine's",
        )
        versions = live.get(dist["name"], [])
        tags = [v["tags"].get("keymgmt-version") for v in versions]
        self.check(
            len(tags) == len(set(tags)),
            "invariant",
            f"{dist['name']}: duplicate imports of engine versions {sorted(tags)}",
        )
        in_kv = {v["tags"].get("keymgmt-version"): v["version"] for v in versions}
        self.check(
            in_kv == dist["versions"],
            "invariant",
            f"{dist['name']}: Key Vault versions {in_kv} != engine's {dist['versions']} "
            f"(Key Vault: live {sorted(live)}, deleted {self.deleted(f'{key}-')})",
        )
        return dist


@pytest.fixture
def race(kv_api: Any, kv: Any, make_api: Any, audit: Any, azurite: Any) -> Race:
    return Race(kv_api.host, make_api, audit, kv, azurite)


def interleave(*groups: Sequence[Call]) -> list[Call]:
    """Calls of several kinds, alternating (all start together anyway)."""
    out: list[Call] = []
    for i in range(max(len(g) for g in groups)):
        out += [g[i] for g in groups if i < len(g)]
    return out


def failures(outcomes: Sequence[Outcome]) -> str:
    return "\n  ".join(str(o) for o in outcomes)


# -- keys ----------------------------------------------------------------------------------------


def test_concurrent_deletes_leave_no_rows(race: Race):
    key = race.new_key("ecdsa-p256", versions=4, deletion_allowed=True)
    race.must("POST", f"{MOUNT}/key/{key}", json={"auto_rotate_period": "24h"})  # an index row
    assert race.rotation_rows(key), "setup: the key has a rotation index entry"
    outcomes = race.burst([Call("delete", "DELETE", f"{MOUNT}/key/{key}")] * 16)
    for o in outcomes:
        race.check(o.status == 204, "false_failure", f"a delete of a deletable key: {o}")
    race.check(race.key(key) is None, "false_success", f"{key} still reads after 16 deletes")
    race.check_key_rows(key)
    # The name is free again, from version 1, with nothing of the old key left.
    race.must("POST", f"{MOUNT}/key/{key}", json={"type": "ecdsa-p256"})
    data = race.check_key_rows(key)
    race.check(
        data is not None and data["latest_version"] == 1 and list(data["versions"]) == ["1"],
        "invariant",
        f"{key} created again reads {data}",
    )
    race.verdict()


@pytest.mark.parametrize("round_", range(3))
def test_delete_races_create(race: Race, round_: int):
    key = race.new_key("aes256-gcm96", deletion_allowed=True)
    deletes = [Call("delete", "DELETE", f"{MOUNT}/key/{key}")] * 8
    creates = [
        Call(
            "create", "POST", f"{MOUNT}/key/{key}", {"type": "ecdsa-p256", "deletion_allowed": True}
        )
    ] * 8
    outcomes = race.burst(interleave(deletes, creates))
    deleted = [o for o in outcomes if o.call.label == "delete" and o.ok]
    created = [o for o in outcomes if o.call.label == "create" and o.ok]
    for o in outcomes:
        if o.call.label == "delete":
            race.check(o.ok, "false_failure", f"a delete of a deletable key: {o}")
        elif not o.ok:
            race.check(
                "type cannot be changed" in o.text,
                "false_failure",
                f"a create refused for another reason than the aes key's type: {o}",
            )
    data = race.check_key_rows(key)
    if data is None:
        race.check(bool(deleted), "false_success", f"{key} is gone but no delete succeeded")
    elif data["type"] == "aes256-gcm96":
        # The original key was never deleted, and no create can make an aes key: every
        # success of either kind claimed an effect that did not happen.
        for o in deleted + created:
            race.problem("false_success", f"{key} is still the original aes key: {o}")
    elif data["type"] == "ecdsa-p256":
        race.check(bool(created), "false_success", f"{key} is ecdsa-p256, but no create won")
        race.check(
            bool(deleted),
            "false_success",
            f"{key} was replaced by a create, but no delete succeeded",
        )
        race.check(
            data["latest_version"] == 1,
            "invariant",
            f"a key that was just created reads latest_version {data['latest_version']}",
        )
    else:
        race.problem("invariant", f"{key} has type {data['type']}")
    # The name still works both ways afterwards.
    if data is None:
        race.must("POST", f"{MOUNT}/key/{key}", json={"type": "ecdsa-p256"})
        race.check_key_rows(key)
    else:
        race.must("PUT", f"{MOUNT}/key/{key}", json={"deletion_allowed": True})
        race.must("DELETE", f"{MOUNT}/key/{key}")
        race.check_key_rows(key)
    race.verdict()


@pytest.mark.parametrize("round_", range(3))
def test_create_race_between_two_types(race: Race, round_: int):
    key = uid("rt")
    rsa = [Call("rsa", "POST", f"{MOUNT}/key/{key}", {"type": "rsa-2048"})] * 8
    aes = [Call("aes", "POST", f"{MOUNT}/key/{key}", {"type": "aes256-gcm96"})] * 8
    outcomes = race.burst(interleave(rsa, aes))
    data = race.check_key_rows(key)
    assert data is not None, f"no key after 16 creates:\n  {failures(outcomes)}"
    final = data["type"]
    for o in outcomes:
        if o.call.body["type"] == final:
            race.check(o.ok, "false_failure", f"a create of the type that won ({final}): {o}")
        else:
            race.check(not o.ok, "false_success", f"the key is {final}, yet: {o}")
            race.check(
                o.status == 400 and "type cannot be changed" in o.text,
                "false_failure",
                f"a loser of the create race must get what a later request gets: {o}",
            )
    race.check(
        data["latest_version"] == 1 and list(data["versions"]) == ["1"],
        "invariant",
        f"16 creates (no rotation) left versions {sorted(data['versions'])}",
    )
    has_public = "public_key" in data["versions"].get("1", {})
    race.check(
        has_public == (final == "rsa-2048"),
        "invariant",
        f"a {final} key's version 1 {'has' if has_public else 'lacks'} a public key",
    )
    race.verdict()


def test_concurrent_rotations_are_consecutive(race: Race):
    key = race.new_key("ecdsa-p256", auto_rotate_period="24h")
    outcomes = race.burst([Call("rotate", "POST", f"{MOUNT}/key/{key}/rotate")] * 16)
    for o in outcomes:
        race.check(o.ok, "false_failure", f"a rotation: {o}")
    data = race.check_key_rows(key)
    assert data is not None
    rotated = sum(o.ok for o in outcomes)
    race.check(
        data["latest_version"] == 1 + rotated,
        "false_success",
        f"{rotated} rotations answered 2xx, latest_version is {data['latest_version']}",
    )
    pems = {v.get("public_key") for v in data["versions"].values()}
    race.check(
        len(pems) == len(data["versions"]), "invariant", "two versions share their key material"
    )
    race.verdict()


# -- distribution (Key Vault emulator) ----------------------------------------------------------


def distributed_key(race: Race, versions: int = 1) -> tuple[str, str]:
    provider = race.new_provider()
    key = race.new_key("rsa-2048", versions=versions)
    race.must("PUT", f"{MOUNT}/kms/{provider}/key/{key}", json={"purpose": "encrypt,decrypt"})
    return provider, key


@pytest.mark.slow
def test_removal_races_rotation(race: Race):
    provider, key = distributed_key(race)
    dist_path = f"{MOUNT}/kms/{provider}/key/{key}"
    removes = [Call("remove", "DELETE", dist_path)] * 2
    rotates = [Call("rotate", "POST", f"{MOUNT}/key/{key}/rotate")] * 8
    outcomes = race.burst(interleave(removes, rotates))
    for o in outcomes:
        race.check(o.ok, "false_failure", f"{o.call.label}: {o}")
    race.reconcile()
    data = race.check_key_rows(key)
    assert data is not None
    rotated = sum(o.ok for o in outcomes if o.call.label == "rotate")
    race.check(
        data["latest_version"] == 1 + rotated,
        "false_success",
        f"{rotated} rotations answered 2xx, latest_version is {data['latest_version']}",
    )
    dist = race.check_distribution(provider, key)
    if any(o.ok for o in outcomes if o.call.label == "remove"):
        race.check(
            dist is None,
            "false_success",
            f"the removal answered 2xx but the distribution reads {dist}",
        )
    # Nothing holds the key any more: it can be deleted, leaving nothing behind.
    race.must("PUT", f"{MOUNT}/key/{key}", json={"deletion_allowed": True})
    response = race.api.delete(f"{MOUNT}/key/{key}")
    race.check(
        response.status_code == 204,
        "invariant",
        f"the key can no longer be deleted: {response.status_code} {response.text}",
    )
    race.check_key_rows(key)
    race.verdict()


@pytest.mark.slow
def test_removal_races_redistribution(race: Race):
    provider, key = distributed_key(race, versions=2)
    dist_path = f"{MOUNT}/kms/{provider}/key/{key}"
    removes = [Call("remove", "DELETE", dist_path)] * 6
    distributes = [Call("distribute", "POST", dist_path, {"purpose": "encrypt,decrypt"})] * 6
    outcomes = race.burst(interleave(removes, distributes))
    for o in outcomes:
        race.check(o.ok, "false_failure", f"{o.call.label}: {o}")
    race.reconcile()
    race.check_key_rows(key)
    dist = race.check_distribution(provider, key)
    if dist is None:
        race.check(
            any(o.ok for o in outcomes if o.call.label == "remove"),
            "false_success",
            "not distributed, but no removal succeeded",
        )
    else:
        race.check(
            any(o.ok for o in outcomes if o.call.label == "distribute"),
            "false_success",
            "distributed, but no distribution succeeded",
        )
    # Both operations still work on what the race left.
    race.must("POST", dist_path, json={"purpose": "encrypt,decrypt"})
    race.check_distribution(provider, key)
    race.must("DELETE", dist_path)
    race.check_distribution(provider, key)
    race.check_key_rows(key)
    race.verdict()


@pytest.mark.slow
def test_provider_create_races_delete(race: Race):
    provider = uid("rp")
    path = f"{MOUNT}/kms/{provider}"
    creates = [Call("create", "PUT", path, race.provider_body())] * 8
    deletes = [Call("delete", "DELETE", path)] * 8
    outcomes = race.burst(interleave(creates, deletes))
    for o in outcomes:
        race.check(o.ok, "false_failure", f"{o.call.label}: {o}")
    response = race.api.get(path)
    listed = provider in race.listed(f"{MOUNT}/kms")
    stored = race.row(MOUNT, f"kms:{provider}") is not None
    race.check(response.status_code in (200, 404), "invariant", f"GET {path}: {response.text}")
    exists = response.status_code == 200
    race.check(
        listed == exists and stored == exists,
        "invariant",
        f"provider reads {response.status_code}, listed {listed}, row {stored}",
    )
    if exists:
        race.check(
            any(o.ok for o in outcomes if o.call.label == "create"),
            "false_success",
            "the provider exists but no create succeeded",
        )
        race.check(
            response.json()["data"] == {"provider": "azurekeyvault", "key_collection": VAULT},
            "invariant",
            f"the provider reads {response.text}",
        )
    else:
        race.check(
            any(o.ok for o in outcomes if o.call.label == "delete"),
            "false_success",
            "the provider is gone but no delete succeeded",
        )
        race.must("PUT", path, json=race.provider_body())
    # What the race left is a working provider: a key goes in and comes out.
    key = race.new_key("rsa-2048")
    race.must("PUT", f"{path}/key/{key}", json={"purpose": "sign,verify"})
    race.check_distribution(provider, key)
    race.must("DELETE", f"{path}/key/{key}")
    race.must("DELETE", path)
    race.check(race.row(MOUNT, f"kms:{provider}") is None, "invariant", "provider row left")
    race.verdict()


@pytest.mark.slow
def test_provider_delete_races_distribution(race: Race):
    provider = race.new_provider()
    keys = [race.new_key("rsa-2048") for _ in range(4)]
    deletes = [Call("delete", "DELETE", f"{MOUNT}/kms/{provider}")] * 4
    distributes = [
        Call(key, "PUT", f"{MOUNT}/kms/{provider}/key/{key}", {"purpose": "encrypt"})
        for key in keys
    ]
    outcomes = race.burst(interleave(deletes, distributes))
    race.reconcile()
    exists = race.api.get(f"{MOUNT}/kms/{provider}").status_code == 200
    for o in outcomes:
        if o.call.label == "delete":
            # Nothing re-creates the provider: a delete that succeeded must have removed it.
            race.check(not (o.ok and exists), "false_success", f"the provider is still there: {o}")
            continue
        dist = race.check_distribution(provider, o.call.label)
        race.check_key_rows(o.call.label)
        if exists:
            race.check(o.ok, "false_failure", f"a distribution to a provider that stayed: {o}")
        race.check(
            o.ok == (dist is not None),
            "false_success" if o.ok else "half_written",
            f"distribution reads {dist is not None} after: {o}",
        )
    if not exists:
        left = [r["RowKey"] for r in race.dist_rows(provider=provider)]
        race.check(not left, "invariant", f"provider {provider} is gone, its rows {left} stay")
    race.verdict()


@pytest.mark.slow
def test_key_delete_races_distribution(race: Race):
    provider = race.new_provider()
    keys = [race.new_key("rsa-2048", deletion_allowed=True) for _ in range(3)]
    calls: list[Call] = []
    for key in keys:
        calls += [Call(f"delete {key}", "DELETE", f"{MOUNT}/key/{key}")] * 2
        calls += [
            Call(
                f"distribute {key}",
                "PUT",
                f"{MOUNT}/kms/{provider}/key/{key}",
                {"purpose": "encrypt"},
            )
        ] * 2
    outcomes = race.burst(calls)
    race.reconcile()
    for key in keys:
        deletes = [o for o in outcomes if o.call.label == f"delete {key}"]
        distributes = [o for o in outcomes if o.call.label == f"distribute {key}"]
        data = race.check_key_rows(key)
        dist = race.check_distribution(provider, key)
        if data is None:
            # A distributed key cannot be deleted and nothing removes a distribution here:
            # with the key gone, no distribution can have succeeded.
            race.check(any(o.ok for o in deletes), "false_success", f"{key} gone, no delete won")
            for o in distributes:
                race.check(not o.ok, "false_success", f"{key} is gone, yet: {o}")
            continue
        # Nothing creates the key again: it was never deleted, so it was distributed first
        # and every delete was refused for that reason.
        race.check(dist is not None, "invariant", f"{key} stayed but is not distributed")
        for o in deletes:
            race.check(not o.ok, "false_success", f"{key} still exists, yet: {o}")
            race.check(
                o.ok or "distributed" in o.text,
                "false_failure",
                f"a delete refused for another reason than the distribution: {o}",
            )
        for o in distributes:
            race.check(o.ok, "false_failure", f"a distribution of a key that stayed: {o}")
    race.verdict()
