"""The servers the keys, versions and cold-start benches share, started once per run.

- Azurite (Table Storage) on loopback;
- the local Functions host (tools/funchost) serving the engine on that Azurite;
- the same engine IN PROCESS: ``shared.service.build`` on the same app settings (same tables,
  seal key and root token), called through ``shared.api.handle`` with an ``ApiRequest`` and
  no HTTP, so the host's share of a request shows apart from the engine's;
- OpenBao (``bao server -dev``, tools/openbao.py) with transit mounted at ``transit/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import requests

from tools.localstack import ROOT_TOKEN, Azurite, FuncHost, engine_settings, wait_healthy
from tools.openbao import OpenBao

MOUNT = "keymgmt"
KEY_TYPE = "rsa-2048"
# The SDK calls a read or a create may make on the engine's table client.
TABLE_CALLS = frozenset(
    {
        "get_entity",
        "query_entities",
        "list_entities",
        "submit_transaction",
        "create_entity",
        "upsert_entity",
        "update_entity",
        "delete_entity",
    }
)


class Recording:
    """A pass-through table client that records every Table call made through it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in TABLE_CALLS:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return attribute(*args, **kwargs)

        return call


class InProcess:
    """The engine in this process: ``handle()`` on an ``ApiRequest``, as functions/_http.py
    calls it, without the host or HTTP."""

    def __init__(self, app_settings: Mapping[str, str]) -> None:
        from shared import service, settings
        from shared.api import routes

        self.service = service.build(settings.load(dict(app_settings)))
        self._specs = {spec.pattern: spec for spec in routes.ALL}

    def call(
        self,
        pattern: str,
        method: str,
        params: Mapping[str, str],
        *,
        token: str = ROOT_TOKEN,
        body: object = None,
    ) -> Any:
        from shared import vaultapi
        from shared.api import handle

        spec = self._specs[pattern]
        path = pattern
        for name, value in params.items():
            path = path.replace(f":{name}", value)
        headers = {"x-vault-token": token}
        raw = b""
        if body is not None:
            raw = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        request = vaultapi.ApiRequest(
            method=method,
            headers=headers,
            body=raw,
            remote_address="127.0.0.1",
            path=f"{params.get('mount', MOUNT)}/{path}",
        )
        return vaultapi.finished(request, handle(spec, request, dict(params), lambda: self.service))

    def handler_read(self, name: str, token: str = ROOT_TOKEN) -> None:
        """A key read through the function handler's adapter (functions/_http.py: an
        ``azure.functions.HttpRequest`` converted to an ``ApiRequest`` and the answer to an
        ``HttpResponse``), on this engine, without the host: the adapter's share apart."""
        import azure.functions as func

        from functions import _http
        from shared import vaultapi
        from shared.api import handle

        request = func.HttpRequest(
            method="GET",
            url=f"http://127.0.0.1/v1/{MOUNT}/key/{name}",
            headers={"x-vault-token": token, "client-ip": "127.0.0.1:1"},
            params={},
            route_params={"mount": MOUNT, "name": name},
            body=b"",
        )
        # _http.serve's steps, with this engine instead of the process-wide service.get
        api_request = _http.to_api_request(request)
        spec = self._specs["key/:name"]
        answer = handle(spec, api_request, dict(request.route_params), lambda: self.service)
        response = _http.to_http_response(vaultapi.finished(api_request, answer))
        assert response.status_code == 200, response.status_code

    def read(self, name: str, token: str = ROOT_TOKEN) -> None:
        r = self.call("key/:name", "GET", {"mount": MOUNT, "name": name}, token=token)
        assert r.status == 200, r.body

    def create(self, name: str) -> None:
        r = self.call("key/:name", "POST", {"mount": MOUNT, "name": name}, body={"type": KEY_TYPE})
        assert r.status in (200, 204), r.body

    def rotate(self, name: str) -> None:
        r = self.call("key/:name/rotate", "POST", {"mount": MOUNT, "name": name})
        assert r.status in (200, 204), r.body

    def recorded(
        self, fn: Callable[[], object]
    ) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        """The Table calls the engine makes while ``fn`` runs ([] if the store keeps its
        client elsewhere than ``Store._table``: then nothing is recorded)."""
        store = self.service.store
        inner = store.table  # built on first use
        if getattr(store, "_table", None) is not inner:
            return []
        recording = Recording(inner)
        store._table = recording
        try:
            fn()
        finally:
            store._table = inner
        return recording.calls


READS = frozenset({"get_entity", "query_entities", "list_entities"})
RANGE = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"


def replayer(
    raw: Any, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]
) -> Callable[[], None]:
    """Issue the recorded reads again on ``raw`` (a plain SDK TableClient), every page read."""
    reads = [(m, a, k) for m, a, k in calls if m in READS]

    def replay() -> None:
        for method, args, kwargs in reads:
            result = getattr(raw, method)(*args, **kwargs)
            if method != "get_entity":
                for page in result.by_page():
                    for _ in page:
                        pass

    return replay


def uncached_calls(
    engine: InProcess, name: str
) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """The Table reads of ``Store.get_key_and_versions`` for a key (the key row and every
    version's public part in one range query: the read with no per-instance cache), recorded;
    the range query of docs/storage.md if the store has no such method or cannot be recorded."""
    store = engine.service.store
    calls = []
    if hasattr(store, "get_key_and_versions"):
        calls = engine.recorded(lambda: store.get_key_and_versions(MOUNT, name))
    return calls or [
        (
            "query_entities",
            (RANGE,),
            {"parameters": {"pk": MOUNT, "lo": f"key:{name}:", "hi": f"key:{name};"}},
        )
    ]


def key_vault(vault: str) -> tuple[Any, dict[str, str]]:
    """A started Key Vault emulator holding ``vault``, where an app registration and the
    emulator's system identity are Crypto Officers; and the app's credentials, as a provider
    (``kms/:name``) takes them."""
    import tempfile
    import uuid

    from tools.kvemu import Emulator

    emulator = Emulator({vault: 0}, cert_dir=tempfile.mkdtemp(prefix="bench-kvemu-"))
    client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
    app = emulator.add_client(client_id, secret)
    emulator.grant(vault, app.object_id, "Key Vault Crypto Officer")
    emulator.grant(vault, emulator.system_identity.object_id, "Key Vault Crypto Officer")
    emulator.start()
    credentials = {"client_id": client_id, "client_secret": secret, "tenant_id": emulator.tenant_id}
    return emulator, credentials


def session(token: str = ROOT_TOKEN) -> requests.Session:
    s = requests.Session()
    s.headers["X-Vault-Token"] = token
    return s


class Stack:
    """Azurite, the local host and the in-process engine on it, and OpenBao."""

    def __init__(self, extra: Mapping[str, str] | None = None, *, openbao: bool = True) -> None:
        """``extra``: app settings added to the engine's (the Key Vault emulator's, say);
        ``openbao``: start OpenBao too (``self.bao`` is None without it)."""
        self.azurite = Azurite()
        self.settings = engine_settings(self.azurite, f"bench{os.getpid()}", **(extra or {}))
        self.host: FuncHost | None = None
        self.bao: OpenBao | None = None
        try:
            self.host = FuncHost(self.settings)
            if openbao:
                self.bao = OpenBao()
            wait_healthy(self.host.url)
            self.engine = InProcess(self.settings)
            if self.bao is not None:
                bao = session()
                bao.post(f"{self.bao.url}/v1/sys/mounts/transit", json={"type": "transit"})
                bao.get(f"{self.bao.url}/v1/sys/mounts").raise_for_status()
        except BaseException:
            self.stop()
            raise
        self.keys_url = f"{self.host.url}/v1/{MOUNT}/key"
        self.transit_url = f"{self.bao.url}/v1/transit/keys" if self.bao is not None else ""

    @property
    def table_name(self) -> str:
        return str(self.engine.service.store.table_name)

    def table_client(self) -> Any:
        """A raw SDK client on the engine's table, with the SDK's default settings."""
        from azure.data.tables import TableServiceClient

        service = TableServiceClient.from_connection_string(self.azurite.connection_string)
        return service.get_table_client(self.table_name)

    def stop(self) -> None:
        for part in (self.host, self.bao, self.azurite):
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:  # stop the others anyway
                    print(f"  (could not stop {type(part).__name__}: {type(exc).__name__})")
