"""Mounts over real HTTP through the local host, with the Key Vault emulator: where this server
deliberately differs from Vault (docs/mounts.md), driven with the ``bao`` CLI.

- A disable is refused, naming each key and its KMS providers, while a key is distributed (Vault
  would drop the mount and leave the Key Vault copies without their record); once the keys are
  removed from the providers it disables the mount with its keys and providers.
- A moved mount's distributions go on matching their Key Vault copies, whose tags name the old
  mount: a rotation after the move is imported next to the earlier versions, tagged alike.
- ``config`` that is not a map gets a plain message (OpenBao prints Go's type names).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.fixtures.funchost import Api
from tests.fixtures.openbao import BaoCli
from tests.integration.test_distribution import by_tag, distribute, mi_provider, read_dist, remote
from tools.kvemu import Emulator


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def bao(kv_api: Api, tmp_path: Any) -> BaoCli:
    return BaoCli(kv_api.url, tmp_path, token="root")


def test_disable_refuses_while_distributed_then_removes_everything(
    kv_api: Api, kv: Emulator, bao: BaoCli
) -> None:
    mount = uid("team")
    bao("secrets", "enable", f"-path={mount}", "keymgmt")
    provider = mi_provider_in(kv_api, kv, mount)
    for key in ("a", "b"):
        assert kv_api.post(f"{mount}/key/{key}", json={"type": "rsa-2048"}).status_code == 204
    assert distribute_in(kv_api, mount, provider, "a").status_code in (200, 204)

    refused = bao("secrets", "disable", mount, ok=False)
    assert refused.returncode == 2
    assert (
        f"cannot disable mount {mount}/: keys are still distributed to KMS providers: a (in "
        f"{provider}); remove them from the providers first (their Key Vault copies would be "
        "left behind)"
    ) in refused.stderr
    assert kv_api.get(f"{mount}/key/a").status_code == 200  # nothing was removed
    assert kv_api.get(f"{mount}/key/b").status_code == 200

    assert kv_api.delete(f"{mount}/kms/{provider}/key/a").status_code == 204
    done = bao("secrets", "disable", mount)
    assert f"Success! Disabled the secrets engine (if it existed) at: {mount}/" in done.stdout
    assert kv_api.get(f"sys/mounts/{mount}").json() == {
        "errors": [f"No secret engine mount at {mount}/"]
    }
    bao("secrets", "enable", f"-path={mount}", "keymgmt")  # enabled again: nothing in it
    assert kv_api.list(f"{mount}/key").status_code == 404
    assert kv_api.list(f"{mount}/kms").status_code == 404


def test_a_moved_mount_keeps_matching_its_key_vault_copies(
    kv_api: Api, kv: Emulator, bao: BaoCli
) -> None:
    old, new = uid("old"), uid("new")
    bao("secrets", "enable", f"-path={old}", "keymgmt")
    provider = mi_provider_in(kv_api, kv, old)
    assert kv_api.post(f"{old}/key/k", json={"type": "rsa-2048"}).status_code == 204
    assert distribute_in(kv_api, old, provider, "k").status_code in (200, 204)
    name = read_dist(_at(kv_api, old), provider, "k")["name"]

    moved = bao("secrets", "move", old, new)
    assert f"Success! Finished moving secrets engine {old}/ to {new}/" in moved.stdout
    assert kv_api.get(f"{old}/key/k").status_code == 404
    assert kv_api.post(f"{new}/key/k/rotate").status_code == 204
    dist = read_dist(_at(kv_api, new), provider, "k")
    assert dist["name"] == name
    versions = remote(kv, name)
    assert versions is not None
    assert by_tag(versions).keys() == {"1", "2"}  # the new version was imported next to v1
    assert {v["tags"]["keymgmt-mount"] for v in versions} == {old}  # tagged as the first


def test_config_that_is_not_a_map_is_named(kv_api: Api) -> None:
    response = kv_api.post(f"sys/mounts/{uid('m')}", json={"type": "keymgmt", "config": "x"})
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            'Field validation failed: error converting input for field "config": expected a '
            "map of settings"
        ]
    }


# -- helpers: test_distribution's, for a mount other than keymgmt/ ----------------------------


class _At(Api):
    """An Api whose ``keymgmt/`` paths go to another mount."""

    def __init__(self, api: Api, mount: str) -> None:
        self.__dict__.update(api.__dict__)
        self.mount = mount

    def request(self, method: str, path: str, **kwargs: object) -> Any:
        if path.startswith("keymgmt/"):
            path = f"{self.mount}/{path.removeprefix('keymgmt/')}"
        return super().request(method, path, **kwargs)


def _at(api: Api, mount: str) -> Api:
    return _At(api, mount)


def mi_provider_in(api: Api, kv: Emulator, mount: str) -> str:
    return mi_provider(_at(api, mount), kv)


def distribute_in(api: Api, mount: str, provider: str, key: str) -> Any:
    return distribute(_at(api, mount), provider, key, purpose="sign,verify")
