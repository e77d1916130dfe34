"""Response wrapping on Azurite, in this process: what the table holds (the answer sealed, the
token salted, every row tamper-evident), single use under concurrent unwraps and rewraps, and
the tidy removing what an expired or spent wrapping token held. A clock the tests move stands
in for time, so nothing waits for a TTL."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from shared.errors import InvalidRequest, RowTampered, SealError
from shared.store import WRAPPED_ROW
from shared.tokens import TokenStore
from shared.vaultapi import envelope
from shared.wrapping import NOT_VALID, InvalidWrappingToken, Wrapping
from tests.fixtures.funchost import build_service

SECRET = "s3cr3t-value-that-must-never-be-stored-in-clear"


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def svc(azurite, table_prefix):
    return build_service(azurite, table_prefix)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(svc, clock) -> Wrapping:
    return Wrapping(svc.store, TokenStore(svc.store, svc.settings, clock=clock), svc.sealer)


def wrap(engine: Wrapping, data: dict[str, Any], ttl: int = 300) -> dict[str, Any]:
    info: dict[str, Any] = engine.wrap(
        envelope(data), ttl=ttl, path="sys/wrapping/wrap", display="root"
    )["wrap_info"]
    return info


def rows(svc) -> list[Any]:
    return list(svc.store.table.list_entities())


def test_the_table_holds_the_answer_sealed_and_no_token(svc, engine):
    info = wrap(engine, {"password": SECRET})
    stored = json.dumps([dict(e) for e in rows(svc)], default=repr)
    for value in (SECRET, info["token"], info["accessor"]):
        assert value not in stored
    salted = engine.tokens.salted(info["token"])
    wrapped = svc.store.get_wrapped(salted)
    assert (wrapped.creation_ttl, wrapped.creation_path) == (300, "sys/wrapping/wrap")
    assert wrapped.creation_time == info["creation_time"]
    token = svc.store.get_token(salted)
    assert token.policies == ("response-wrapping",) and token.num_uses == 1
    assert (token.explicit_max_ttl, token.renewable, token.parent) == (300, False, "")
    assert json.loads(engine.unwrap(info["token"]))["data"] == {"password": SECRET}
    assert svc.store.get_wrapped(salted) is None  # gone with its one use


def test_a_changed_wrapped_row_is_never_acted_on(svc, engine):
    info = wrap(engine, {"a": "b"})
    partition = "_token:" + engine.tokens.salted(info["token"])
    entity = svc.store.table.get_entity(partition, WRAPPED_ROW)
    entity["creation_path"] = "auth/token/create"
    svc.store.table.update_entity(entity, mode=UpdateMode.REPLACE)
    with pytest.raises(RowTampered):
        engine.lookup(info["token"])


def test_the_sealed_answer_opens_only_for_its_own_token(svc, engine):
    """The seal's context names the token's salted id: an answer copied under another wrapping
    token's row does not open there."""
    first, second = wrap(engine, {"a": SECRET}), wrap(engine, {"b": "other"})
    salted_second = engine.tokens.salted(second["token"])
    moved = svc.store.get_wrapped(engine.tokens.salted(first["token"]))
    svc.store.drop_wrapped(salted_second)
    svc.store.put_wrapped(
        type(moved)(salted_second, moved.creation_ttl, moved.creation_time, "x", moved.response)
    )
    with pytest.raises(SealError) as refused:
        engine.unwrap(second["token"])
    assert SECRET not in str(refused.value)


def test_of_concurrent_unwraps_exactly_one_gets_the_answer(engine):
    info = wrap(engine, {"a": SECRET})

    def attempt(_: int) -> str:
        try:
            return json.loads(engine.unwrap(info["token"]))["data"]["a"]
        except InvalidWrappingToken as exc:
            return exc.messages[0]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(attempt, range(6)))
    assert sorted(results) == sorted([SECRET] + [NOT_VALID] * 5)


def test_of_concurrent_rewraps_one_wins_and_the_losers_leave_no_token(svc, engine):
    info = wrap(engine, {"a": SECRET})

    def attempt(_: int) -> str:
        try:
            return str(engine.rewrap(info["token"], ttl=0, display="root")["wrap_info"]["token"])
        except InvalidRequest as exc:
            return exc.messages[0]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(attempt, range(4)))
    winners = [r for r in results if r != NOT_VALID]
    assert len(winners) == 1, results
    assert json.loads(engine.unwrap(winners[0]))["data"] == {"a": SECRET}
    # Every wrapped row left names a live token: the losers' new tokens were revoked.
    left = [e for e in rows(svc) if e["RowKey"] == WRAPPED_ROW]
    assert left == []


def test_the_tidy_removes_what_expired_and_spent_wrapping_tokens_held(svc, engine, clock):
    expired = wrap(engine, {"a": "b"}, ttl=60)
    spent = wrap(engine, {"c": "d"}, ttl=60)
    kept = wrap(engine, {"e": "f"}, ttl=3600)
    engine.tokens.check(spent["token"])  # its one use spent elsewhere (a denied request)
    clock.now += dt.timedelta(seconds=120)
    with pytest.raises(InvalidWrappingToken):
        engine.lookup(expired["token"])
    summary = engine.tokens.tidy()
    assert summary["failed"] == 0, summary
    left = {e["PartitionKey"] for e in rows(svc) if e["RowKey"] == WRAPPED_ROW}
    assert left == {"_token:" + engine.tokens.salted(kept["token"])}
    assert engine.lookup(kept["token"])["creation_ttl"] == 3600
