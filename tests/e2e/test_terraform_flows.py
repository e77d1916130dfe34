"""Terraform's request sequences, replayed over real HTTP.

The Vault provider (hashicorp/terraform-provider-vault) drives the server through the Vault Go
API client; these tests send exactly what its resources send, in their order, and interpret
the answers as the provider does: ``vault/resource_mount.go`` (create, read, update in place
through ``sys/mounts/:path/tune``, path change through ``sys/remount``, destroy, and the read
that notices a mount disabled out of band by ``util/mountutil.IsMountNotFoundError``) and
``vault/resource_generic_endpoint.go`` (write, read with ``ignore_absent_fields``, skipped
read with ``disable_read``, delete) on keys, KMS providers and distributions. Each ``terraform``
run starts as the provider's configure does (``internal/provider/meta.go``): a child token,
its lookup-self, and the server version from ``sys/seal-status``.

The ``vault_mount`` flows run against OpenBao too (on ``transit``), so the replay itself is
checked against the reference.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.fixtures.kvemu import VAULT
from tests.helpers import wait_until

SEMVER = re.compile(r"^v?\d+\.\d+\.\d+")


class ResponseError(Exception):
    """The Go client's ``api.ResponseError``: status and the server's ``errors``."""

    def __init__(self, method: str, url: str, status: int, errors: list[str]) -> None:
        self.status, self.errors = status, errors
        listed = "\n".join(f"* {e}" for e in errors)
        super().__init__(
            f"Error making API request.\n\nURL: {method} {url}\nCode: {status}. Errors:\n\n{listed}"
        )


_NO_BODY = object()


@dataclass
class GoClient:
    """The parts of hashicorp/vault/api the provider's resources call, as they behave: no
    Content-Type on JSON bodies, ``X-Vault-Request: true``, 404 on a read is "nothing"."""

    url: str
    token: str
    session: requests.Session = field(default_factory=requests.Session)
    sent: list[tuple[str, str]] = field(default_factory=list)  # (method, path), in order

    def raw(self, method: str, path: str, body: Any = _NO_BODY) -> requests.Response:
        self.sent.append((method, path))
        data = None if body is _NO_BODY else json.dumps(body)
        return self.session.request(
            method,
            f"{self.url}/v1/{path}",
            headers={"X-Vault-Token": self.token, "X-Vault-Request": "true"},
            data=data,
            timeout=120,
        )

    def _checked(self, response: requests.Response) -> requests.Response:
        if response.status_code >= 400:
            try:
                errors = response.json().get("errors") or []
            except ValueError:  # the client then shows the raw body
                errors = [f"Raw Message: {response.text[:200]}"]
            raise ResponseError(
                response.request.method or "", response.url, response.status_code, errors
            )
        return response

    @staticmethod
    def _secret(response: requests.Response) -> dict[str, Any] | None:
        return response.json() if response.content else None

    def _nothing_on_404(self, response: requests.Response) -> dict[str, Any] | bool | None:
        """Logical's 404 rule: a body with data or warnings is a secret, else nothing."""
        if response.status_code != 404:
            return False
        body = response.json() if response.content else {}
        if body.get("data") or body.get("warnings"):
            return dict(body)
        return None

    # Logical()
    def read(self, path: str) -> dict[str, Any] | None:
        response = self.raw("GET", path)
        found = self._nothing_on_404(response)
        if found is not False:
            return found  # type: ignore[return-value]
        return self._secret(self._checked(response))

    def write(self, path: str, data: dict[str, Any] | None) -> dict[str, Any] | None:
        response = self.raw("PUT", path, data)
        if response.status_code == 404 and not response.content:
            return None
        return self._secret(self._checked(response))

    def delete(self, path: str) -> None:
        response = self.raw("DELETE", path)
        if response.status_code == 404 and not response.content:
            return
        self._checked(response)

    # Sys()
    def mount(self, path: str, mount_input: dict[str, Any]) -> None:
        self._checked(self.raw("POST", f"sys/mounts/{path}", mount_input))

    def unmount(self, path: str) -> None:
        self._checked(self.raw("DELETE", f"sys/mounts/{path}"))

    def get_mount(self, path: str) -> dict[str, Any]:
        secret = self._secret(self._checked(self.raw("GET", f"sys/mounts/{path}")))
        if not secret or not secret.get("data"):
            raise AssertionError("data from server response is empty")
        data: dict[str, Any] = secret["data"]
        return data

    def remount(self, source: str, target: str) -> None:
        started = self._secret(
            self._checked(self.raw("POST", "sys/remount", {"from": source, "to": target}))
        )
        if not started or not started.get("data"):
            raise AssertionError("data from server response is empty")
        migration = started["data"]["migration_id"]

        def status() -> str | None:
            answer = self._secret(self._checked(self.raw("GET", f"sys/remount/status/{migration}")))
            state = ((answer or {}).get("data") or {}).get("migration_info", {}).get("status")
            return state if state in ("success", "failure") else None

        assert wait_until(status, what=f"remount {migration}") == "success"

    def tune_with_map(self, path: str, config: dict[str, Any]) -> None:
        self._checked(self.raw("POST", f"sys/mounts/{path}/tune", config))


def terraform_run(url: str, token: str = "root") -> GoClient:
    """What the provider's configure sends before any resource (meta.go): a child token of
    1200 s, not renewable; its lookup-self; the server's version from sys/seal-status."""
    parent = GoClient(url, token)
    created = parent._secret(
        parent._checked(
            parent.raw(
                "POST",
                "auth/token/create",
                {
                    "display_name": "terraform",
                    "ttl": "1200s",
                    "explicit_max_ttl": "1200s",
                    "renewable": False,
                },
            )
        )
    )
    assert created and created["auth"]["client_token"]
    client = GoClient(url, created["auth"]["client_token"])
    looked_up = client._secret(client._checked(client.raw("GET", "auth/token/lookup-self")))
    assert looked_up and looked_up["data"]["ttl"] > 0
    status = client._secret(client._checked(client.raw("GET", "sys/seal-status")))
    assert status and SEMVER.match(status["version"]), status
    return client


# -- vault_mount ------------------------------------------------------------------------------


def mount_input(config: dict[str, Any]) -> dict[str, Any]:
    """createMount's api.MountInput, marshalled as Go does (empty options map, not null)."""
    return {
        "type": config["type"],
        "description": config.get("description", ""),
        "config": {
            "options": None,
            "default_lease_ttl": f"{config.get('default_lease_ttl_seconds', 0)}s",
            "max_lease_ttl": f"{config.get('max_lease_ttl_seconds', 0)}s",
            "force_no_cache": False,
        },
        "local": False,
        "seal_wrap": False,
        "external_entropy_access": False,
        "options": config.get("options", {}),
    }


def mount_state(client: GoClient, path: str) -> dict[str, Any] | None:
    """readMount: the state from GET sys/mounts/:path; None when the mount is gone
    (IsMountNotFoundError: a 404, or a 400 naming "No secret engine mount at")."""
    try:
        mount = client.get_mount(path)
    except ResponseError as exc:
        if exc.status == 404 or (
            exc.status == 400 and any("No secret engine mount at" in e for e in exc.errors)
        ):
            return None
        raise
    return {
        "path": path,
        "type": mount["type"],
        "description": mount["description"],
        "default_lease_ttl_seconds": mount["config"]["default_lease_ttl"],
        "max_lease_ttl_seconds": mount["config"]["max_lease_ttl"],
        "force_no_cache": mount["config"]["force_no_cache"],
        "accessor": mount["accessor"],
        "local": mount["local"],
        "seal_wrap": mount["seal_wrap"],
        "options": mount.get("options") or {},
    }


def mount_diff(config: dict[str, Any], state: dict[str, Any] | None) -> dict[str, Any]:
    """What ``terraform plan`` would change: every configured argument the state disagrees
    with (unset Computed arguments, the TTLs, take the server's value)."""
    if state is None:
        return {"create": config["path"]}
    return {k: (state.get(k), v) for k, v in config.items() if state.get(k) != v}


def mount_update(client: GoClient, old: dict[str, Any], new: dict[str, Any]) -> str:
    """updateMount: remount on a path change, then one tune with the map it builds."""
    path = old["path"]
    if new["path"] != path:
        client.remount(path, new["path"])
        path = new["path"]
    tune: dict[str, Any] = {
        "default_lease_ttl": f"{new.get('default_lease_ttl_seconds', 0)}s",
        "max_lease_ttl": f"{new.get('max_lease_ttl_seconds', 0)}s",
        "options": new.get("options", {}),
    }
    if new.get("description", "") != old.get("description", ""):
        tune["description"] = new.get("description", "")
    client.tune_with_map(path, tune)
    return path


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    engine: str  # the secrets engine a vault_mount creates: keymgmt here, transit there
    key_path: str  # where a key of that engine lives, relative to the mount


@pytest.fixture(params=["openbao", "local"])
def server(request: pytest.FixtureRequest) -> Server:
    if request.param == "openbao":
        return Server("openbao", request.getfixturevalue("openbao").url, "transit", "keys")
    return Server("local", request.getfixturevalue("funchost").url, "keymgmt", "key")


def new_path(prefix: str = "tf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def mount_path(server: Server) -> Iterator[str]:
    path = new_path()
    yield path
    root = GoClient(server.url, "root")
    for candidate in (path, f"{path}-moved"):
        root.raw("DELETE", f"sys/mounts/{candidate}")


def test_vault_mount_create_then_plan_shows_no_change(server: Server, mount_path: str) -> None:
    config = {"path": mount_path, "type": server.engine, "description": "managed by terraform"}
    client = terraform_run(server.url)
    client.mount(mount_path, mount_input(config))
    state = mount_state(client, mount_path)  # create ends with a read
    assert state is not None and mount_diff(config, state) == {}
    assert state["accessor"].startswith(f"{server.engine}_")
    refreshed = mount_state(terraform_run(server.url), mount_path)  # the next plan's refresh
    assert refreshed == state
    assert client.sent[2:] == [
        ("POST", f"sys/mounts/{mount_path}"),
        ("GET", f"sys/mounts/{mount_path}"),
    ]


def test_vault_mount_lease_ttls_read_back(server: Server, mount_path: str) -> None:
    """TTLs set on create read back as set: no permanent diff."""
    config = {
        "path": mount_path,
        "type": server.engine,
        "default_lease_ttl_seconds": 3600,
        "max_lease_ttl_seconds": 7200,
    }
    client = terraform_run(server.url)
    client.mount(mount_path, mount_input(config))
    assert mount_diff(config, mount_state(client, mount_path)) == {}


def test_vault_mount_update_in_place(server: Server, mount_path: str) -> None:
    before = {"path": mount_path, "type": server.engine, "description": "first"}
    client = terraform_run(server.url)
    client.mount(mount_path, mount_input(before))
    accessor = (mount_state(client, mount_path) or {})["accessor"]
    after = {**before, "description": "second", "default_lease_ttl_seconds": 1800}
    client = terraform_run(server.url)
    path = mount_update(client, before, after)  # the provider gives up after 10 failed tunes
    state = mount_state(client, path)
    assert mount_diff(after, state) == {}
    assert state is not None and state["accessor"] == accessor  # the same mount, tuned


def test_vault_mount_path_change_moves_it(server: Server, mount_path: str) -> None:
    before = {"path": mount_path, "type": server.engine, "description": "moving"}
    client = terraform_run(server.url)
    client.mount(mount_path, mount_input(before))
    client.write(
        f"{mount_path}/{server.key_path}/k1",
        {"type": "rsa-2048"} if server.engine == "keymgmt" else {},
    )
    after = {**before, "path": f"{mount_path}-moved"}
    client = terraform_run(server.url)
    path = mount_update(client, before, after)
    assert mount_diff(after, mount_state(client, path)) == {}
    assert mount_state(client, mount_path) is None  # the old path: gone, not an error
    moved = client.read(f"{path}/{server.key_path}/k1")
    assert moved is not None and moved["data"]["name"] == "k1"  # its keys moved with it


def test_vault_mount_destroy_removes_its_keys(server: Server, mount_path: str) -> None:
    config = {"path": mount_path, "type": server.engine}
    client = terraform_run(server.url)
    client.mount(mount_path, mount_input(config))
    body = {"type": "rsa-2048"} if server.engine == "keymgmt" else {}
    client.write(f"{mount_path}/{server.key_path}/k1", body)
    client = terraform_run(server.url)
    client.unmount(mount_path)  # terraform destroy
    client.mount(mount_path, mount_input(config))  # enabled again: empty
    assert client.read(f"{mount_path}/{server.key_path}/k1") is None


def test_vault_mount_refresh_after_out_of_band_disable_plans_a_create(
    server: Server, mount_path: str
) -> None:
    config = {"path": mount_path, "type": server.engine}
    client = terraform_run(server.url)
    client.mount(mount_path, mount_input(config))
    GoClient(server.url, "root").unmount(mount_path)  # someone ran `bao secrets disable`
    state = mount_state(terraform_run(server.url), mount_path)  # no error: removed from state
    assert mount_diff(config, state) == {"create": mount_path}


# -- vault_generic_endpoint -------------------------------------------------------------------


def normalized(data: dict[str, Any]) -> str:
    """NormalizeDataJSON: data_json re-marshalled (Go sorts map keys)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@dataclass
class GenericEndpoint:
    """One vault_generic_endpoint: its arguments and the state the provider keeps."""

    path: str
    data: dict[str, Any]
    ignore_absent_fields: bool = True
    disable_read: bool = False
    disable_delete: bool = False
    state: str | None = None  # data_json in state; None: not in state
    write_data_json: str | None = None

    def apply(self, client: GoClient) -> None:
        """genericEndpointResourceWrite (create and update alike), then its read."""
        response = client.write(self.path, self.data)
        self.write_data_json = "null" if not response or not response.get("data") else "{}"
        self.state = normalized(self.data)
        self.refresh(client)

    def refresh(self, client: GoClient) -> None:
        """genericEndpointResourceRead."""
        if self.disable_read:
            return
        secret = client.read(self.path)
        if secret is None:
            self.state = None  # "endpoint not found, removing from state"
            return
        read = secret["data"]
        if self.ignore_absent_fields:
            relevant = dict(self.data)
            relevant.update({k: v for k, v in read.items() if k in self.data})
        else:
            relevant = read
        self.state = normalized(relevant)

    def plan(self) -> str:
        if self.state is None:
            return "create"
        return "no changes" if self.state == normalized(self.data) else "update"

    def destroy(self, client: GoClient) -> None:
        if not self.disable_delete:
            client.delete(self.path)
        self.state = None


def test_generic_endpoint_key_lifecycle(funchost: Any) -> None:
    name = new_path("tfk")
    key = GenericEndpoint(f"keymgmt/key/{name}", {"type": "rsa-2048"})
    key.apply(terraform_run(funchost.url))
    assert key.write_data_json == "null"  # 204: nothing to keep
    key.refresh(terraform_run(funchost.url))
    assert key.plan() == "no changes"

    key.data = {"type": "rsa-2048", "deletion_allowed": True, "min_enabled_version": 1}
    assert key.plan() == "update"
    key.apply(terraform_run(funchost.url))
    assert key.plan() == "no changes"

    # A rotation through the generic endpoint: written once, never read or deleted.
    rotate = GenericEndpoint(
        f"keymgmt/key/{name}/rotate", {}, disable_read=True, disable_delete=True
    )
    client = terraform_run(funchost.url)
    rotate.apply(client)
    assert client.sent[-1] == ("PUT", f"keymgmt/key/{name}/rotate")
    latest = (client.read(f"keymgmt/key/{name}") or {})["data"]["latest_version"]
    assert latest == 2
    rotate.destroy(client)
    assert client.sent[-1][0] != "DELETE"

    key.destroy(terraform_run(funchost.url))
    key.refresh(terraform_run(funchost.url))
    assert key.plan() == "create"  # gone: the next plan would create it again


def test_generic_endpoint_key_update_refused_names_the_field(funchost: Any) -> None:
    """An update Terraform cannot do in place (type cannot change) fails with a text."""
    key = GenericEndpoint(f"keymgmt/key/{new_path('tfk')}", {"type": "rsa-2048"})
    key.apply(terraform_run(funchost.url))
    key.data = {"type": "ecdsa-p256"}
    with pytest.raises(ResponseError) as refused:
        key.apply(terraform_run(funchost.url))
    assert refused.value.status == 400 and "type" in " ".join(refused.value.errors)


@pytest.fixture
def service_principal(kv: Any) -> dict[str, str]:
    client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
    kv.add_client(client_id, secret)
    kv.grant(VAULT, client_id, "Key Vault Crypto Officer")
    return {"client_id": client_id, "client_secret": secret, "tenant_id": kv.tenant_id}


def test_generic_endpoint_provider_and_distribution(
    kv_funchost: Any, kv: Any, service_principal: dict[str, str]
) -> None:
    url = kv_funchost.url
    key = GenericEndpoint(
        f"keymgmt/key/{new_path('tfk')}", {"type": "rsa-2048", "deletion_allowed": True}
    )
    provider = GenericEndpoint(
        f"keymgmt/kms/{new_path('tfp')}",
        {"provider": "azurekeyvault", "key_collection": VAULT, "credentials": service_principal},
    )
    key_name, kms_name = key.path.rsplit("/", 1)[1], provider.path.rsplit("/", 1)[1]
    distribution = GenericEndpoint(
        f"keymgmt/kms/{kms_name}/key/{key_name}", {"purpose": "decrypt,encrypt"}
    )
    client = terraform_run(url)
    for resource in (key, provider, distribution):  # terraform apply, in dependency order
        resource.apply(client)
    secret = service_principal["client_secret"]
    assert all(secret not in json.dumps(client.read(r.path)) for r in (provider, distribution))

    client = terraform_run(url)
    for resource in (key, provider, distribution):
        resource.refresh(client)
        assert resource.plan() == "no changes", resource.path
    assert json.loads(provider.state or "{}")["credentials"] == service_principal  # as supplied

    # The service principal's secret is rotated in Entra (the old one stops working) and
    # the provider is updated in place with the new one.
    kv.add_client(service_principal["client_id"], "rotated-" + secret)
    provider.data = {
        **provider.data,
        "credentials": {**service_principal, "client_secret": "rotated-" + secret},
    }
    provider.apply(terraform_run(url))
    assert provider.plan() == "no changes"

    # A distribution read back as Vault sends it: purpose sorted, so "encrypt,decrypt" in
    # data_json reads back as a change unless the read is skipped (disable_read).
    skipped = GenericEndpoint(distribution.path, {"purpose": "encrypt,decrypt"}, disable_read=True)
    client = terraform_run(url)
    skipped.refresh(client)
    assert skipped.state is None and ("GET", distribution.path) not in client.sent
    unsorted = GenericEndpoint(distribution.path, {"purpose": "encrypt,decrypt"})
    unsorted.state = normalized(unsorted.data)
    unsorted.refresh(terraform_run(url))
    assert unsorted.plan() == "update"

    # Removed out of band: the next refresh drops it from state, and a plan would create it.
    GoClient(url, "root").delete(distribution.path)
    distribution.refresh(terraform_run(url))
    assert distribution.plan() == "create"
    distribution.apply(terraform_run(url))

    client = terraform_run(url)
    for resource in (distribution, provider, key):  # terraform destroy: dependents first
        resource.destroy(client)
    client = terraform_run(url)
    for resource in (key, provider, distribution):
        resource.refresh(client)
        assert resource.state is None, resource.path


# -- the provider's own keymgmt resources (internal/vault/keymgmt) ----------------------------


def test_keymgmt_resources_lifecycle(
    kv_funchost: Any, kv: Any, service_principal: dict[str, str]
) -> None:
    """vault_keymgmt_key, _azure_kms, _distribute_key and _key_rotate, as their Create, Read,
    Update and Delete send them: create writes only ``type`` and then ``deletion_allowed``
    alone; the provider's update sends ``provider`` and the credentials (write-only, so only
    when credentials_wo_version changes) without ``key_collection``; purpose goes as a list."""
    url = kv_funchost.url
    key, kms = f"keymgmt/key/{new_path('tfk')}", f"keymgmt/kms/{new_path('tfp')}"
    dist = f"{kms}/key/{key.rsplit('/', 1)[1]}"
    client = terraform_run(url)
    assert client.write(key, {"type": "rsa-2048"}) is None
    assert client.write(key, {"deletion_allowed": True}) is None
    read = (client.read(key) or {})["data"]
    assert (read["type"], read["deletion_allowed"], read["latest_version"]) == ("rsa-2048", True, 1)
    assert read["min_enabled_version"] == 1

    credentials = {**service_principal}
    client.write(
        kms,
        {"provider": "azurekeyvault", "key_collection": VAULT, "credentials": credentials},
    )
    assert (client.read(kms) or {})["data"] == {
        "provider": "azurekeyvault",
        "key_collection": VAULT,
    }
    client.write(dist, {"purpose": ["encrypt", "decrypt"], "protection": "hsm"})
    distributed = (client.read(dist) or {})["data"]
    assert distributed["protection"] == "hsm" and set(distributed["versions"]) == {"1"}

    client = terraform_run(url)
    client.write(f"{key}/rotate", {})  # vault_keymgmt_key_rotate, then it reads the key
    assert (client.read(key) or {})["data"]["latest_version"] == 2
    assert set((client.read(dist) or {})["data"]["versions"]) == {"1", "2"}

    # Updates: min_enabled_version alone; new credentials (credentials_wo_version bumped).
    client = terraform_run(url)
    assert client.write(key, {"min_enabled_version": 2}) is None
    assert (client.read(key) or {})["data"]["min_enabled_version"] == 2
    kv.add_client(service_principal["client_id"], "rotated-secret")
    rotated = {**credentials, "client_secret": "rotated-secret"}
    assert client.write(kms, {"provider": "azurekeyvault", "credentials": rotated}) is None
    assert (client.read(kms) or {})["data"]["key_collection"] == VAULT

    # terraform destroy: the rotation is only dropped from state; the rest, dependents first.
    client = terraform_run(url)
    for path in (dist, kms, key):
        client.delete(path)
    for path in (dist, kms, key):
        assert client.read(path) is None, path
    assert all(m != "DELETE" or not p.endswith("/rotate") for m, p in client.sent)
