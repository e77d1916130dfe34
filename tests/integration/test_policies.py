"""shared/policies.py on Azurite: what a token's ACL is built from, how fresh it is, and what
it costs (docs/policies.md, "The policy store and every path's check")."""

from __future__ import annotations

import base64
import time
import uuid

import pytest

from shared import policies as policies_module
from shared.policies import Policies, decode_text
from tests.fixtures.funchost import build_service
from tests.helpers import wait_until

READ = 'path "keymgmt/key/*" { capabilities = ["read"] }'
DENY = 'path "keymgmt/key/*" { capabilities = ["deny"] }'


@pytest.fixture
def svc(azurite, table_prefix):
    return build_service(azurite, table_prefix)


def name() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


def test_a_written_policy_is_parsed_once_not_again_by_the_next_read(svc, monkeypatch):
    policy = name()
    svc.policies.write(policy, READ)
    parsed = []
    real = policies_module.parse
    monkeypatch.setattr(policies_module, "parse", lambda n, t: parsed.append(n) or real(n, t))
    svc.policies.load()  # what the background refresh does
    assert parsed == []
    assert svc.policies.acl([policy]).capabilities("keymgmt/key/a") == ["read"]


def test_another_instances_change_applies_within_the_cache_time(svc):
    policy = name()
    svc.policies.write(policy, READ)
    other = Policies(svc.store, cache_seconds=0.5)  # another instance on the same table
    other.load()
    assert other.acl([policy]).capabilities("keymgmt/key/a") == ["read"]
    svc.policies.write(policy, DENY)
    assert svc.policies.acl([policy]).capabilities("keymgmt/key/a") == ["deny"]  # here: at once
    # There: by a background read once half the time has passed, or by the request itself.
    wait_until(
        lambda: other.acl([policy]).capabilities("keymgmt/key/a") == ["deny"],
        timeout=5,
        what="the other instance sees the change",
    )


def test_within_the_cache_time_no_request_reads_policies(svc, monkeypatch):
    reads = []
    real = svc.store.list_policies
    monkeypatch.setattr(svc.store, "list_policies", lambda: reads.append(1) or real())
    svc.policies.cache_seconds = 60
    svc.policies.load()
    reads.clear()
    for _ in range(20):
        svc.policies.acl(["default"])
    assert reads == []
    svc.policies.cache_seconds = 0.2
    time.sleep(0.3)  # idle longer than the cache time: the next request reads them itself
    svc.policies.acl(["default"])
    assert reads == [1]


def test_base64_text_is_decoded_also_when_wrapped_as_the_base64_tool_wraps_it():
    text = READ * 4  # long enough to wrap
    encoded = base64.encodebytes(text.encode()).decode()  # lines of 76 characters
    assert "\n" in encoded.strip()
    assert decode_text(encoded) == text
    assert decode_text(READ) == READ  # plain HCL is not valid base64


def test_one_policys_acl_is_built_once_per_version_and_follows_a_change(svc):
    policy = name()
    svc.policies.write(policy, READ)
    first = svc.policies.single_acl(policy)
    assert svc.policies.single_acl(policy) is first  # reused while the policy is unchanged
    assert first.capabilities("keymgmt/key/a") == ["read"]
    svc.policies.write(policy, 'path "keymgmt/key/*" { capabilities = ["list"] }')
    changed = svc.policies.single_acl(policy)
    assert changed is not first
    assert changed.capabilities("keymgmt/key/a") == ["list"]
    assert svc.policies.single_acl(name()).capabilities("keymgmt/key/a") == ["deny"]
