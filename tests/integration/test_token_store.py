"""The token store on Azurite, in this process: what the table holds (salted ids only, every
row tamper-evident), what checking a token costs (Table calls counted), parent trees (cascade
on revocation and on expiry, renewed parents), the tidy timer, and races.

A clock the tests move stands in for time where a token must end (the store reads it for
every decision), so nothing here waits for a TTL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.data.tables import TableServiceClient, UpdateMode

from shared import schedules
from shared.api import handle
from shared.api import tokens as token_paths
from shared.errors import InvalidRequest, PermissionDenied, RowTampered
from shared.records import TokenInfo
from shared.store import ExpiryEntry
from shared.tokens import TokenStore
from shared.vaultapi import ApiRequest
from tests.fixtures.funchost import ROOT_TOKEN, build_service, engine_settings


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class CountingTable:
    """The real table client, counting every call the store makes, by kind."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def get_entity(self, *args: Any, **options: Any) -> Any:
        self.calls["point read"] += 1
        return self.real.get_entity(*args, **options)

    def query_entities(self, *args: Any, **options: Any) -> Any:
        self.calls["query"] += 1
        return self.real.query_entities(*args, **options)

    def submit_transaction(self, *args: Any, **options: Any) -> Any:
        self.calls["write"] += 1
        return self.real.submit_transaction(*args, **options)

    def create_entity(self, *args: Any, **options: Any) -> Any:
        self.calls["write"] += 1
        return self.real.create_entity(*args, **options)

    def update_entity(self, *args: Any, **options: Any) -> Any:
        self.calls["write"] += 1
        return self.real.update_entity(*args, **options)

    def upsert_entity(self, *args: Any, **options: Any) -> Any:
        self.calls["write"] += 1
        return self.real.upsert_entity(*args, **options)


@pytest.fixture
def svc(azurite, table_prefix):
    return build_service(azurite, table_prefix)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(svc, clock) -> TokenStore:
    return TokenStore(svc.store, svc.settings, clock=clock)


@pytest.fixture
def root(tokens) -> TokenInfo:
    return tokens.check(ROOT_TOKEN)


def create(tokens: TokenStore, parent: TokenInfo, **options: Any) -> TokenInfo:
    options.setdefault("sudo", "root" in parent.policies)
    token, _ = tokens.create(parent, **options)
    return token


def entities(svc) -> list[dict[str, Any]]:
    return list(svc.store.table.list_entities())


# -- what the table holds ------------------------------------------------------------------------


def test_the_table_never_holds_a_token_or_an_accessor(svc, tokens, root):
    parent = create(tokens, root, policies=["default", "kms"], ttl=3600, meta={"team": "kms"})
    child = create(tokens, parent, policies=["default"], num_uses=3, sudo=False)
    orphan, _ = tokens.create(parent, sudo=False, orphan_path=True)
    secrets = [t.id for t in (parent, child, orphan)] + [
        t.accessor for t in (parent, child, orphan)
    ]
    secrets += [t.id.removeprefix("hvs.") for t in (parent, child, orphan)]
    stored = json.dumps([{k: str(v) for k, v in e.items()} for e in entities(svc)])
    stored += json.dumps([[e["PartitionKey"], e["RowKey"]] for e in entities(svc)])
    for secret in [*secrets, ROOT_TOKEN * 3]:
        assert secret not in stored
    # What is there instead: Vault's SaltID, HMAC-SHA256 under the sealed salt.
    salt, _ = svc.store.token_salt()
    salted = "h" + hmac.new(salt, parent.id.encode(), hashlib.sha256).hexdigest()
    assert salted in stored and tokens.salted(parent.id) == salted
    assert tokens.salted(parent.accessor) in stored
    salt_row = svc.store.table.get_entity("_sys", "token-salt")
    assert salt not in b"".join(v for v in salt_row.values() if isinstance(v, bytes))


def test_tokens_and_accessors_look_like_vaults(tokens, root):
    token = create(tokens, root, policies=["default"])
    assert token.id.startswith("hvs.") and len(token.id) == 28
    assert token.id[4:].isalnum() and token.id.isascii()
    assert len(token.accessor) == 24 and token.accessor.isalnum()
    assert tokens.accessor_of(token.id) == token.accessor  # derived, so lookups can show it
    assert tokens.lookup_accessor(token.accessor).policies == ("default",)
    ids = {create(tokens, root, policies=["default"]).id for _ in range(20)}
    assert len(ids) == 20


def test_a_changed_token_row_is_refused_not_obeyed(svc, tokens, root):
    token = create(tokens, root, policies=["default"])
    entity = svc.store.table.get_entity(f"_token:{tokens.salted(token.id)}", "token")
    entity["policies"] = json.dumps(["root"])  # someone with write access to the storage
    svc.store.table.update_entity(entity, mode=UpdateMode.REPLACE)
    with pytest.raises(RowTampered, match="failed its integrity check"):
        tokens.check(token.id)


def test_a_row_moved_to_another_token_is_refused(svc, tokens, root):
    """A row copied under another token's salted id (say, a root token's row over a default
    one's) fails its check: the MAC covers the row's identity."""
    strong = create(tokens, root)
    weak = create(tokens, root, policies=["default"])
    entity = svc.store.table.get_entity(f"_token:{tokens.salted(strong.id)}", "token")
    entity["PartitionKey"] = f"_token:{tokens.salted(weak.id)}"
    svc.store.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
    with pytest.raises(RowTampered):
        tokens.check(weak.id)


# -- what a request costs ------------------------------------------------------------------------


@pytest.fixture
def counted(azurite):
    """A service on a table whose every call is counted, warmed up (the salt and the row
    integrity key are read once per process, then kept)."""
    prefix = f"tc{uuid.uuid4().hex[:12]}"
    service_client = TableServiceClient.from_connection_string(azurite.connection_string)
    service_client.create_table(f"{prefix}state")
    table = CountingTable(service_client.get_table_client(f"{prefix}state"))
    from shared import service, settings

    svc = service.build(settings.load(engine_settings(azurite, prefix)), table_client=table)
    svc.tokens.check(ROOT_TOKEN)
    svc.tokens.salted("warm")
    svc.mounts.exists("keymgmt")
    yield svc, table
    service_client.delete_table(f"{prefix}state")


def request(svc, spec, token: str, method: str = "GET", **params: str):
    query = {"list": "true"} if method == "LIST" else {}
    return handle(
        spec,
        ApiRequest("GET", query=query, headers={"x-vault-token": token}),
        params,
        lambda: svc,
    )


def test_an_authenticated_request_costs_one_point_read(counted):
    svc, table = counted
    root = svc.tokens.check(ROOT_TOKEN)
    token, _ = svc.tokens.create(root, sudo=True, policies=["default"], ttl=3600)
    limited, _ = svc.tokens.create(root, sudo=True, policies=["default"], num_uses=3)

    table.calls.clear()
    assert request(svc, token_paths.LOOKUP_SELF, ROOT_TOKEN).status == 200
    assert table.calls == {}, "the root token from settings costs no Table call"

    table.calls.clear()
    answer = request(svc, token_paths.LOOKUP_SELF, token.id)
    assert answer.status == 200 and json.loads(answer.body)["data"]["id"] == token.id
    assert table.calls == {"point read": 1}

    table.calls.clear()
    assert request(svc, token_paths.LOOKUP_SELF, limited.id).status == 200
    assert table.calls == {"point read": 1, "write": 1}, "a limited-use token: and its count"

    table.calls.clear()
    assert request(svc, token_paths.LOOKUP_SELF, "hvs." + "x" * 24).status == 403
    assert table.calls == {"point read": 1}

    # A keymgmt read with a child token: the token's read, then the read's own.
    from shared.api import keys as key_paths

    # With its policies: they are cached per instance (docs/policies.md), no read of theirs.
    svc.policies.write("lister", 'path "keymgmt/key/" { capabilities = ["list"] }')
    lister, _ = svc.tokens.create(root, sudo=True, policies=["lister"], ttl=3600)
    table.calls.clear()
    assert request(svc, key_paths.KEYS, lister.id, "LIST", mount="keymgmt").status == 404
    assert table.calls == {"point read": 1, "query": 1}
    table.calls.clear()
    assert request(svc, key_paths.KEYS, token.id, "LIST", mount="keymgmt").status == 403
    assert table.calls == {"point read": 1}, "refused by its policies: nothing else is read"


# -- uses -----------------------------------------------------------------------------------------


def test_uses_are_counted_and_the_last_one_removes_the_token(tokens, root):
    token = create(tokens, root, policies=["default"], num_uses=3)
    assert [tokens.check(token.id).num_uses for _ in range(3)] == [2, 1, -1]
    with pytest.raises(PermissionDenied):
        tokens.check(token.id)
    assert tokens.store.get_token(tokens.salted(token.id)) is None


def test_concurrent_uses_never_exceed_the_limit(tokens, root):
    token = create(tokens, root, policies=["default"], num_uses=5)

    def use(_: int) -> bool:
        try:
            tokens.check(token.id)
        except PermissionDenied:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(use, range(12)))
    assert results.count(True) == 5


# -- trees ----------------------------------------------------------------------------------------


def tree(tokens: TokenStore, root: TokenInfo, depth: int = 3, width: int = 2) -> list[TokenInfo]:
    """A parent with ``width`` children each, ``depth`` levels; the first is the top."""
    top = create(tokens, root, policies=["default", "ops"], ttl=3600)
    level, everyone = [top], [top]
    for _ in range(depth - 1):
        below = [create(tokens, t, sudo=False) for t in level for _ in range(width)]
        everyone += below
        level = below
    return everyone


def test_revoking_a_parent_revokes_every_descendant_and_their_rows(svc, tokens, root):
    everyone = tree(tokens, root)
    bystander = create(tokens, root, policies=["default"], ttl=3600)
    rows_before = len(entities(svc))
    tokens.revoke(everyone[0].id)
    for token in everyone:
        with pytest.raises(PermissionDenied):
            tokens.check(token.id)
    assert tokens.check(bystander.id).id == bystander.id
    # Each token had its row, an accessor row, an expiry entry and (but the top) a child
    # row under its parent: all gone.
    assert rows_before - len(entities(svc)) == 4 * len(everyone) - 1


def test_a_child_stops_with_its_parents_expiry_though_its_own_ttl_is_longer(tokens, root, clock):
    parent = create(tokens, root, policies=["default", "ops"], ttl=60)
    child = create(tokens, parent, sudo=False, ttl=3600)
    grandchild = create(tokens, child, sudo=False, ttl=3600)
    assert child.ttl > 3590  # its own TTL, as Vault shows it
    clock.advance(59)
    assert tokens.check(grandchild.id)
    clock.advance(2)
    for token in (parent, child, grandchild):
        with pytest.raises(PermissionDenied):
            tokens.check(token.id)


def test_a_renewed_parent_keeps_its_children_working_down_the_tree(tokens, root, clock):
    parent = create(tokens, root, policies=["default", "ops"], ttl=60)
    child = create(tokens, parent, sudo=False, ttl=3600)
    grandchild = create(tokens, child, sudo=False, ttl=600)
    tokens.renew(tokens.resolve(parent.id), 1800)
    clock.advance(120)
    assert tokens.check(grandchild.id) and tokens.check(child.id)
    clock.advance(600)  # the grandchild's own TTL ends it, its parents live on
    with pytest.raises(PermissionDenied):
        tokens.check(grandchild.id)
    assert tokens.check(child.id)
    clock.advance(1200)  # the parent's renewed TTL ends, and the child with it
    with pytest.raises(PermissionDenied):
        tokens.check(child.id)


def test_a_parent_renewed_shorter_shortens_its_children(tokens, root, clock):
    parent = create(tokens, root, policies=["default", "ops"], ttl=3600)
    child = create(tokens, parent, sudo=False, ttl=3600)
    tokens.renew(tokens.resolve(parent.id), 60)
    clock.advance(61)
    with pytest.raises(PermissionDenied):
        tokens.check(child.id)


def test_revoke_orphan_lets_the_children_live_their_own_ttls(tokens, root, clock):
    parent = create(tokens, root, policies=["default", "ops"], ttl=60)
    child = create(tokens, parent, sudo=False, ttl=3600)
    grandchild = create(tokens, child, sudo=False, ttl=3600)
    tokens.revoke_orphan(parent.id)
    assert tokens.check(child.id).orphan is True
    clock.advance(120)  # past the parent's TTL, which no longer binds them
    assert tokens.check(grandchild.id).orphan is False
    clock.advance(3600)
    with pytest.raises(PermissionDenied):
        tokens.check(grandchild.id)


def test_children_created_while_their_parent_is_revoked_do_not_survive_it(tokens, root):
    parent = create(tokens, root, policies=["default", "ops"], ttl=3600)
    made: list[TokenInfo] = []

    def make(_: int) -> None:
        try:
            made.append(create(tokens, parent, sudo=False))
        except PermissionDenied:
            pass  # created as the parent went: taken back

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(make, i) for i in range(24)]
        pool.submit(tokens.revoke, parent.id).result()
        for future in futures:
            future.result()
    assert made, "some children were made before the revocation"
    for child in made:
        with pytest.raises(PermissionDenied):
            tokens.check(child.id)


def test_a_revocation_that_dies_part_way_leaves_the_parent_working(svc, tokens, root):
    """Children first, the token itself last: a revocation interrupted after the children
    leaves the parent working (its caller saw an error and retries), never a child that
    outlives a revoked parent."""
    parent = create(tokens, root, policies=["default", "ops"], ttl=3600)
    child = create(tokens, parent, sudo=False)
    real_remove = tokens._remove
    calls = []

    def dying(salted: str, above: str | None) -> bool:
        calls.append(salted)
        if salted == tokens.salted(parent.id):
            raise RuntimeError("instance died")
        return real_remove(salted, above)

    tokens._remove = dying  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        tokens.revoke(parent.id)
    tokens._remove = real_remove  # type: ignore[method-assign]
    assert calls[0] == tokens.salted(child.id)
    with pytest.raises(PermissionDenied):
        tokens.check(child.id)
    assert tokens.check(parent.id)
    tokens.revoke(parent.id)  # the retry
    with pytest.raises(PermissionDenied):
        tokens.check(parent.id)


# -- the tidy timer -------------------------------------------------------------------------------


def test_the_tidy_removes_ended_tokens_and_their_rows_and_leaves_the_rest(svc, tokens, root, clock):
    rows_at_start = len(entities(svc))
    keep = create(tokens, root, policies=["default"], ttl=7200)
    parent = create(tokens, root, policies=["default", "ops"], ttl=60)
    children = [create(tokens, parent, sudo=False, ttl=3600) for _ in range(3)]
    short = create(tokens, root, policies=["default"], ttl=30)
    clock.advance(120)
    summary = tokens.tidy()
    assert summary["failed"] == 0, summary
    # The parent's and the short token's entries are due, and so are the children's: their
    # parent's end is theirs.
    assert summary["due"] == 5 and summary["revoked"] >= 2
    for token in (parent, short, *children):
        assert svc.store.get_token(tokens.salted(token.id)) is None
    assert tokens.check(keep.id)
    assert len(entities(svc)) == rows_at_start + 3  # the kept token's three rows
    assert tokens.tidy()["due"] == 0


def test_the_tidy_reads_only_the_due_entries(svc, tokens, root, clock):
    for _ in range(40):
        create(tokens, root, policies=["default"], ttl=86400)
    ending = [create(tokens, root, policies=["default"], ttl=60) for _ in range(3)]
    clock.advance(120)
    before = svc.store.entities_read
    summary = tokens.tidy()
    assert summary["revoked"] == 3
    # The index query returns the 3 due entries; each costs a few reads (its row, its
    # children), never a read of the 40 that are not due.
    assert svc.store.entities_read - before <= 3 + 3 * 3
    for token in ending:
        assert svc.store.get_token(tokens.salted(token.id)) is None


def test_the_tidy_removes_what_a_dead_create_left_and_stale_entries(svc, tokens, root, clock):
    token = create(tokens, root, policies=["default"], ttl=7200)
    entry = svc.store.get_token(tokens.salted(token.id))
    # A renewal that lost its race leaves the entry it wrote first: stale.
    early = int((clock.now + dt.timedelta(seconds=10)).timestamp())
    svc.store.put_token_expiry(
        ExpiryEntry(f"{early:012d}:{entry.salted_id}", entry.salted_id, entry.accessor, "")
    )
    ghost = "h" + "0" * 64  # a create that died before its own row
    when = int((clock.now + dt.timedelta(seconds=30)).timestamp())
    svc.store.put_token_expiry(ExpiryEntry(f"{when:012d}:{ghost}", ghost, "h" + "1" * 64, ""))
    svc.store.put_token_accessor("h" + "1" * 64, ghost)
    clock.advance(120)
    summary = tokens.tidy()
    assert summary["stale"] == 1 and summary["leftovers"] == 1, summary
    assert svc.store.token_by_accessor("h" + "1" * 64) is None
    assert tokens.check(token.id)


def test_one_bad_index_row_does_not_stop_the_tidy(svc, tokens, root, clock):
    first = create(tokens, root, policies=["default"], ttl=30)
    second = create(tokens, root, policies=["default"], ttl=60)
    slot = svc.store.get_token(tokens.salted(first.id)).expiry_slot
    entity = svc.store.table.get_entity("_token_expiry", slot)
    entity["token"] = tokens.salted(second.id)  # changed outside the engine
    svc.store.table.update_entity(entity, mode=UpdateMode.REPLACE)
    clock.advance(120)
    summary = tokens.tidy()
    assert summary["failed"] == 1 and "integrity" in summary["failures"][0]
    assert summary["revoked"] == 1
    assert svc.store.get_token(tokens.salted(second.id)) is None


def test_the_tidy_timer_runs_once_at_a_time_and_reports(svc):
    summary = schedules.token_tidy(svc)
    assert summary["due"] == 0 and "duration_ms" in summary
    assert svc.store.get_status("token-tidy")["due"] == 0
    with svc.store.lock("run:token-tidy", ttl=60, wait=0):
        assert "skipped_run" in schedules.token_tidy(svc)


# -- refusals the oracle cannot show --------------------------------------------------------------


def test_the_root_token_from_settings_cannot_be_revoked(tokens, root):
    for revoke in (lambda: tokens.revoke(ROOT_TOKEN), lambda: tokens.revoke_self(root)):
        with pytest.raises(InvalidRequest, match="remove KEYMGMT_ROOT_TOKEN"):
            revoke()
    assert tokens.check(ROOT_TOKEN).policies == ("root",)


def test_a_custom_id_is_salted_like_any_token_and_never_duplicated(tokens, root):
    token = create(tokens, root, token_id="my-custom-token", policies=["default"])
    assert token.id == "my-custom-token" and tokens.check("my-custom-token")
    for duplicate in ("my-custom-token", ROOT_TOKEN):
        with pytest.raises(InvalidRequest, match="cannot create a token with a duplicate ID"):
            create(tokens, root, token_id=duplicate)


def test_an_instance_follows_a_table_another_recreated_with_a_new_salt(azurite, table_prefix):
    """The table lost and recreated by another instance comes with a new salt: a token made
    there works here too, once this instance reads the salt again (a token it does not find
    makes it look, at most every ``token_salt_recheck`` seconds)."""
    from shared import service, settings
    from shared.errors import StorageLost

    loaded = settings.load(engine_settings(azurite, table_prefix))
    here, there = service.build(loaded), service.build(loaded)
    before = create(there.tokens, there.tokens.check(ROOT_TOKEN), policies=["default"])
    assert here.tokens.check(before.id).id == before.id  # both warm, one salt
    TableServiceClient.from_connection_string(azurite.connection_string).delete_table(
        f"{table_prefix}state"
    )
    with pytest.raises(StorageLost):
        there.store.get_token("h0")  # there finds the table gone and recreates it
    made = create(there.tokens, there.tokens.check(ROOT_TOKEN), policies=["default"])
    here.store.token_salt_recheck = 0
    assert here.tokens.check(made.id).id == made.id
    with pytest.raises(PermissionDenied):
        here.tokens.check(before.id)  # what the lost table held is gone
