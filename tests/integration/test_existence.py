"""The existence checks of ``key/:name``, ``kms/:name`` and ``kms/:name/key/:key_name`` on real
storage (Azurite): a write to an item that does not exist is Vault's create operation, to one
that does an update, for one Table point read."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from shared.api import Context, PathSpec, handle
from shared.api.keys import KEY
from shared.api.kms import DISTRIBUTION, PROVIDER_PATH
from shared.store import key_op, name_op
from shared.vaultapi import ApiRequest, ApiResponse
from tests.fixtures.funchost import build_service, emulator_settings
from tests.fixtures.kvemu import VAULT

MOUNT = "keymgmt"
TOKEN = {"x-vault-token": "root"}


@pytest.fixture
def svc(azurite, table_prefix):
    return build_service(azurite, table_prefix)


class CountingTable:
    """The store's table client, counting every call made through it."""

    def __init__(self, table) -> None:
        self._table = table
        self.calls: list[str] = []

    def __getattr__(self, name):
        attr = getattr(self._table, name)
        if callable(attr):

            def counted(*args, **kwargs):
                self.calls.append(name)
                return attr(*args, **kwargs)

            return counted
        return attr


class Observed:
    """A path as declared (KEY unless told), with its existence check and handlers observed."""

    def __init__(self, svc, spec: PathSpec = KEY, **params: str) -> None:
        self.params = params
        self.table = CountingTable(svc.store.table)
        svc.store._table = self.table  # the client behind Store.table, which has no setter
        self.existence_calls: list[list[str]] = []  # the table calls each check made
        self.operations: list[str] = []

        def existence(ctx: Context) -> bool:
            before = len(self.table.calls)
            assert spec.existence is not None
            exists = spec.existence(ctx)
            self.existence_calls.append(self.table.calls[before:])
            return exists

        def observe(op: str):
            def run(ctx: Context) -> ApiResponse:
                self.operations.append(ctx.operation)
                return spec.operations[op](ctx)

            return run

        self.spec = dataclasses.replace(
            spec, existence=existence, operations={op: observe(op) for op in spec.operations}
        )
        self.svc = svc

    def send(self, method: str, name: str, body: bytes = b"") -> ApiResponse:
        request = ApiRequest(method, headers=TOKEN, body=body)
        params = {"mount": MOUNT, "name": name, **self.params}
        return handle(self.spec, request, params, lambda: self.svc)


def test_a_write_creates_a_new_key_and_updates_an_existing_one(svc):
    observed = Observed(svc)
    name = f"e{uuid.uuid4().hex[:8]}"
    assert observed.send("POST", name, b'{"type": "ecdsa-p256"}').status == 204
    assert observed.send("PUT", name, b'{"deletion_allowed": true}').status == 204
    assert observed.operations == ["create", "update"]
    assert svc.keys.read(MOUNT, name).key.deletion_allowed is True
    # Each check was one point read, and nothing else.
    assert observed.existence_calls == [["get_entity"], ["get_entity"]]


def test_reads_lists_and_deletes_never_run_the_check(svc):
    observed = Observed(svc)
    name = f"e{uuid.uuid4().hex[:8]}"
    observed.send("POST", name, b'{"type": "ecdsa-p256", "deletion_allowed": true}')
    observed.existence_calls.clear()
    assert observed.send("GET", name).status == 200
    assert observed.send("DELETE", name).status == 204
    assert observed.existence_calls == []
    assert observed.operations == ["create", "read", "delete"]


def test_a_key_being_deleted_does_not_exist_and_a_write_creates_it_again(svc):
    observed = Observed(svc)
    name = f"e{uuid.uuid4().hex[:8]}"
    observed.send("POST", name, b'{"type": "ecdsa-p256", "deletion_allowed": true}')
    marked = dataclasses.replace(svc.store.get_key(MOUNT, name), state="deleting")
    svc.store.commit([key_op(marked), name_op(marked)])  # as a delete that died half-way
    assert svc.keys.exists(MOUNT, name) is False
    assert observed.send("POST", name, b'{"type": "aes256-gcm96"}').status == 204
    assert observed.operations == ["create", "create"]
    assert svc.keys.read(MOUNT, name).key.key_type == "aes256-gcm96"


def test_bad_input_costs_no_lookup(svc):
    observed = Observed(svc)
    response = observed.send("POST", f"e{uuid.uuid4().hex[:8]}", b'{"type": "rsa-1024"}')
    assert response.status == 400 and b"invalid type: allowed are" in response.body
    assert observed.existence_calls == [] and observed.operations == []


def test_a_kms_provider_write_creates_then_updates(svc):
    observed = Observed(svc, PROVIDER_PATH)
    name = f"p{uuid.uuid4().hex[:8]}"
    body = b'{"provider": "azurekeyvault", "key_collection": "keyvault-name"}'
    assert observed.send("PUT", name, body).status == 204
    assert observed.send("PUT", name, b'{"credentials": {"tenant_id": "t"}}').status == 204
    assert observed.send("GET", name).status == 200
    assert observed.operations == ["create", "update", "read"]
    assert observed.existence_calls == [["get_entity"], ["get_entity"]]


def test_a_distribution_write_creates_then_updates(azurite, kv, kv_managed_identity):
    svc = build_service(azurite, f"ex{uuid.uuid4().hex[:8]}", **emulator_settings(kv))
    kms, key = f"p{uuid.uuid4().hex[:8]}", f"k{uuid.uuid4().hex[:8]}"
    svc.kms.write(
        MOUNT,
        kms,
        provider="azurekeyvault",
        key_collection=VAULT,
        credentials={"tenant_id": kv.tenant_id},
    )
    Observed(svc).send("POST", key, b'{"type": "ecdsa-p256", "deletion_allowed": true}')
    observed = Observed(svc, DISTRIBUTION, key_name=key)
    body = b'{"purpose": "sign,verify", "protection": "software"}'
    assert observed.send("PUT", kms, body).status == 204
    assert observed.send("PUT", kms, body).status == 204  # distributing again: an update
    assert observed.send("DELETE", kms).status == 204
    assert observed.send("PUT", kms, body).status == 204  # removed: a create again
    assert observed.operations == ["create", "update", "delete", "create"]
    assert observed.existence_calls == [["get_entity"]] * 3
