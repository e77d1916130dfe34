"""The ``Emulator``: vault servers (one HTTPS port each), identity endpoints, faults, events."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import certs, events
from .access import ACCESS_POLICY, PERMISSION_MODELS, RBAC, ROLES, AccessControl
from .api import OPERATIONS_BY_NAME, VaultApp
from .faults import Fault, FaultBook
from .identity import MSI_PATH, AuthorityApp, MsiApp
from .keys import describe as describe_material
from .store import DEFAULT_DELETE_DELAY, KeyVersion, StateFile, Vault, check_name
from .tokens import KEYVAULT_AUDIENCE, TokenIssuer

logger = logging.getLogger(__name__)

DEFAULT_TENANT_ID = "72f988bf-0000-4000-8000-00000000e0e0"
TOKEN_KEY_FILE = "token-signing-key.pem"


@dataclass(frozen=True)
class ManagedIdentity:
    client_id: str
    object_id: str
    resource_id: str


@dataclass(frozen=True)
class ClientApp:
    client_id: str
    object_id: str
    tenant_id: str
    secret_sha256: bytes = field(repr=False)

    def secret_matches(self, secret: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(secret.encode()).digest(), self.secret_sha256)


@dataclass(frozen=True)
class Recorded:
    """A keys API response, for the conformance test (only when ``record=True``)."""

    vault: str
    operation_id: str | None
    status: int
    body: Any


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s -> %s", self.command, self.path.split("?")[0], code)


class Emulator:
    """A local Key Vault (keys API, real BYOK) with identity endpoints.

    ``vaults`` and ``hsm_vaults`` map vault names to ports (0 picks a free port); Managed
    HSM-style vaults additionally allow ``oct``/``oct-HSM`` keys.
    """

    def __init__(
        self,
        vaults: Mapping[str, int] | None = None,
        *,
        cert_dir: str | Path,
        hsm_vaults: Mapping[str, int] | None = None,
        identity_port: int = 0,
        authority_port: int = 0,
        tenant_id: str = DEFAULT_TENANT_ID,
        state_path: str | Path | None = None,
        eventgrid_webhook: str | None = None,
        eventgrid_ca_path: str | None = None,
        identity_header: str | None = None,
        recoverable_days: int = 90,
        purge_protection: bool = True,
        delete_delay: float = DEFAULT_DELETE_DELAY,
        access_policy_vaults: Iterable[str] = (),
        record: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.tenant_id = tenant_id
        self.cert_dir = Path(cert_dir)
        self.identity_header = identity_header or secrets.token_hex(16)
        self.faults = FaultBook()
        self._record = record
        self._recorded: list[Recorded] = []
        self._lock = threading.Lock()
        self._state = StateFile(state_path) if state_path else None
        self._snapshots: dict[str, Any] = {}
        self._webhook = eventgrid_webhook
        self._webhook_ca = eventgrid_ca_path
        self._poster: events.EventPoster | None = None
        self.access = AccessControl()
        self._clients: dict[str, ClientApp] = {}
        seed = uuid.uuid5(uuid.NAMESPACE_URL, f"kvemu:{tenant_id}")
        self.system_identity = ManagedIdentity(
            client_id=str(uuid.uuid5(seed, "system-client")),
            object_id=str(uuid.uuid5(seed, "system-object")),
            resource_id="/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
            "kvemu/providers/Microsoft.Web/sites/kvemu-functions",
        )
        self._user_identities: dict[str, ManagedIdentity] = {}
        self._ports: dict[str, int] = {}
        self.vaults: dict[str, Vault] = {}
        for names, hsm in ((vaults or {}, False), (hsm_vaults or {}, True)):
            for name, port in names.items():
                check_name(name)
                if name in self.vaults:
                    raise ValueError(f"vault {name} is given twice")
                self.vaults[name] = Vault(
                    name,
                    managed_hsm=hsm,
                    recoverable_days=recoverable_days,
                    purge_protection=purge_protection,
                    delete_delay=delete_delay,
                    on_change=self._save,
                    on_new_version=self._new_version,
                )
                self._ports[name] = port
        if not self.vaults:
            raise ValueError("at least one vault is required")
        for name in access_policy_vaults:
            self.configure_vault(name, permission_model=ACCESS_POLICY)
        self._identity_port = identity_port
        self._authority_port = authority_port
        self._servers: list[tuple[BaseWSGIServer, threading.Thread]] = []
        self.issuer: TokenIssuer = TokenIssuer(tenant_id)
        self.tls: certs.TlsFiles | None = None
        self._started = False

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Emulator:
        if self._started:
            return self
        self.tls = certs.ensure_tls(self.cert_dir)
        self.issuer = TokenIssuer(self.tenant_id, self._token_key())
        if self._state is not None:
            saved = self._state.load()
            self._snapshots = dict(saved)
            for name, vault in self.vaults.items():
                if name in saved:
                    vault.load_state(saved[name])
        if self._webhook:
            self._poster = events.EventPoster(self._webhook, ca_path=self._webhook_ca)
        ssl_context = self.tls.server_context()
        for name, vault in self.vaults.items():
            server = self._serve(VaultApp(self, vault), self._ports[name], ssl_context)
            self._ports[name] = server.port
        msi = self._serve(MsiApp(self), self._identity_port, None)
        self._identity_port = msi.port
        authority = self._serve(AuthorityApp(self), self._authority_port, ssl_context)
        self._authority_port = authority.port
        self._started = True
        return self

    def _serve(self, app: Any, port: int, ssl_context: Any) -> BaseWSGIServer:
        server = make_server(
            self.host,
            port,
            app,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=ssl_context,
        )
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name=f"kvemu-{server.port}",
        )
        thread.start()
        self._servers.append((server, thread))
        return server

    def stop(self) -> None:
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        self._servers.clear()
        if self._poster is not None:
            self._poster.close()
            self._poster = None
        self._started = False

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _token_key(self) -> rsa.RSAPrivateKey:
        """Reuse the token-signing key across restarts, so cached tokens stay valid."""
        path = self.cert_dir / TOKEN_KEY_FILE
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if isinstance(key, rsa.RSAPrivateKey):
                return key
        issuer = TokenIssuer(self.tenant_id)
        certs._write_private(path, issuer.signing_key_pem())
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    # --- addresses --------------------------------------------------------------------------

    def vault_url(self, name: str) -> str:
        if name not in self.vaults:
            raise KeyError(f"no vault {name!r}; vaults: {sorted(self.vaults)}")
        return f"https://{self.host}:{self._ports[name]}"

    @property
    def keyvault_urls_setting(self) -> str:
        """The value for ``KEYMGMT_KEYVAULT_URLS``."""
        return ",".join(f"{name}={self.vault_url(name)}" for name in self.vaults)

    @property
    def ca_path(self) -> str:
        if self.tls is None:
            raise RuntimeError("the emulator is not started")
        return str(self.tls.ca_path)

    @property
    def identity_endpoint(self) -> str:
        return f"http://{self.host}:{self._identity_port}{MSI_PATH}"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self._identity_port}/_control"

    @property
    def authority_host(self) -> str:
        """For ``ClientSecretCredential(..., authority=...)`` (with
        ``disable_instance_discovery=True`` and ``connection_verify=ca_path``)."""
        return f"https://{self.host}:{self._authority_port}"

    # --- identities -------------------------------------------------------------------------

    def add_client(self, client_id: str, secret: str, tenant_id: str | None = None) -> ClientApp:
        """Register an app (service principal) for the client-credentials endpoint."""
        if tenant_id not in (None, self.tenant_id):
            raise ValueError(f"this emulator serves one tenant, {self.tenant_id}")
        client = ClientApp(
            client_id=client_id,
            object_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"kvemu:sp:{client_id}")),
            tenant_id=self.tenant_id,
            secret_sha256=hashlib.sha256(secret.encode()).digest(),
        )
        with self._lock:
            self._clients[client_id] = client
        return client

    def find_client(self, client_id: str) -> ClientApp | None:
        with self._lock:
            return self._clients.get(client_id)

    def add_user_assigned_identity(
        self, client_id: str, object_id: str | None = None
    ) -> ManagedIdentity:
        identity = ManagedIdentity(
            client_id=client_id,
            object_id=object_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"kvemu:uami:{client_id}")),
            resource_id="/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
            f"kvemu/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{client_id}",
        )
        with self._lock:
            self._user_identities[client_id] = identity
        return identity

    def find_managed_identity(
        self,
        *,
        client_id: str | None = None,
        object_id: str | None = None,
        resource_id: str | None = None,
    ) -> ManagedIdentity | None:
        if not (client_id or object_id or resource_id):
            return self.system_identity
        with self._lock:
            for identity in self._user_identities.values():
                if (
                    (client_id and identity.client_id == client_id)
                    or (object_id and identity.object_id == object_id)
                    or (resource_id and identity.resource_id.lower() == resource_id.lower())
                ):
                    return identity
        return None

    def issue_token(
        self,
        *,
        audience: str = KEYVAULT_AUDIENCE,
        object_id: str | None = None,
        app_id: str | None = None,
        lifetime_seconds: int = 3600,
    ) -> str:
        """A token from this emulator's issuer (tests: expired or foreign-audience tokens)."""
        token, _ = self.issuer.issue(
            audience=audience,
            object_id=object_id or self.system_identity.object_id,
            app_id=app_id or self.system_identity.client_id,
            lifetime_seconds=lifetime_seconds,
        )
        return token

    # --- vault settings and permissions -------------------------------------------------------

    def configure_vault(
        self,
        name: str,
        *,
        permission_model: str | None = None,
        purge_protection: bool | None = None,
        delete_delay: float | None = None,
        recoverable_days: int | None = None,
    ) -> None:
        """Change a vault's settings, as its owner would in Azure (tests, control API)."""
        vault = self._vault(name)
        if permission_model is not None:
            if permission_model not in PERMISSION_MODELS:
                raise ValueError(f"permission_model must be one of {', '.join(PERMISSION_MODELS)}")
            vault.permission_model = permission_model
        if purge_protection is not None:
            if not purge_protection and vault.purge_protection and self._started:
                raise ValueError("purge protection cannot be turned off once it is on")
            vault.purge_protection = purge_protection
        if delete_delay is not None:
            vault.delete_delay = float(delete_delay)
        if recoverable_days is not None:
            if recoverable_days != 0 and not 7 <= recoverable_days <= 90:
                raise ValueError("recoverable_days must be 7 to 90 (0: no soft delete)")
            vault.recoverable_days = recoverable_days

    def grant(self, vault: str, principal: str, role_or_ops: str | Iterable[str]) -> None:
        """RBAC vaults: assign a built-in role (by name), or the data actions of a set of
        operation names, to a principal: an object id, or a client id of a registered app or
        managed identity (resolved to its object id, as ``az role assignment create`` does).
        Default deny."""
        target = self._vault(vault)
        if target.permission_model != RBAC:
            raise ValueError(f"vault {vault} uses access policies: use set_access_policy")
        if isinstance(role_or_ops, str):
            if role_or_ops not in ROLES:
                raise ValueError(f"unknown role {role_or_ops!r}; roles: {sorted(ROLES)}")
            patterns: Iterable[str] = ROLES[role_or_ops]
        else:
            ops = set(role_or_ops)
            unknown = ops - set(OPERATIONS_BY_NAME)
            if unknown:
                raise ValueError(f"unknown operations {sorted(unknown)}")
            patterns = {OPERATIONS_BY_NAME[op].action for op in ops}
        self.access.assign_role(vault, self._object_id(principal), patterns)

    def set_access_policy(self, vault: str, principal: str, keys: Iterable[str]) -> None:
        """Access-policy vaults: the principal's key permissions (``get``, ``list``, ...),
        replacing any it had. ``principal`` is an object id, or a client id of a registered app
        or managed identity (resolved to its object id, as ``az keyvault set-policy`` does)."""
        target = self._vault(vault)
        if target.permission_model != ACCESS_POLICY:
            raise ValueError(f"vault {vault} uses RBAC: use grant")
        self.access.set_policy(vault, self._object_id(principal), keys)

    def _object_id(self, principal: str) -> str:
        """Role assignments and access policies name a principal by its object id."""
        with self._lock:
            client = self._clients.get(principal)
            identity = self._user_identities.get(principal)
        if client is not None:
            return client.object_id
        if identity is not None:
            return identity.object_id
        if principal == self.system_identity.client_id:
            return self.system_identity.object_id
        return principal

    def grants(self, vault: str) -> dict[str, list[str]]:
        """Role assignments (data actions) or access policies (permissions) per principal."""
        if self._vault(vault).permission_model == RBAC:
            return self.access.roles(vault)
        return self.access.policies(vault)

    def clear_grants(self, vault: str | None = None) -> None:
        if vault is not None:
            self._vault(vault)
        self.access.clear(vault)

    # --- faults and events ------------------------------------------------------------------

    def fault(
        self,
        vault: str,
        kind: str,
        op: str | None = None,
        *,
        times: int | None = None,
        retry_after: int | None = None,
        status: int = 500,
        delay: float = 0.0,
    ) -> Fault:
        """Inject a fault: ``throttle``, ``forbidden_by_connection``, ``server_error``,
        ``latency`` or ``drop``; for ``vault`` (or ``"*"``), optionally one operation."""
        if vault != "*":
            self._vault(vault)
        if op is not None and op not in OPERATIONS_BY_NAME:
            raise ValueError(f"unknown operation {op!r}; operations: {sorted(OPERATIONS_BY_NAME)}")
        return self.faults.add(
            Fault(
                vault=vault,
                kind=kind,
                op=op,
                times=times,
                retry_after=retry_after,
                status=status,
                delay=delay,
            )
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    def _event(self, vault: Vault, event_type: str, v: KeyVersion) -> dict[str, Any]:
        return events.key_event(
            event_type,
            vault=vault.name,
            key_id=f"{self.vault_url(vault.name)}/keys/{v.name}/{v.version}",
            name=v.name,
            version=v.version,
            nbf=v.nbf,
            exp=v.exp,
        )

    def _new_version(self, vault: Vault, v: KeyVersion) -> None:
        if self._poster is not None:
            self._poster.post(self._event(vault, "KeyNewVersionCreated", v))

    def fire_event(
        self, vault: str, event_type: str, key: str, version: str | None = None
    ) -> dict[str, Any]:
        """Post ``KeyNearExpiry``/``KeyExpired`` (or ``KeyNewVersionCreated``) for a key."""
        target = self._vault(vault)
        event = self._event(target, event_type, target.get(key, version))
        if self._poster is None:
            raise RuntimeError("no Event Grid webhook is configured")
        self._poster.post(event)
        return event

    # --- inspection and recording -------------------------------------------------------------

    def _vault(self, name: str) -> Vault:
        try:
            return self.vaults[name]
        except KeyError:
            raise KeyError(f"no vault {name!r}; vaults: {sorted(self.vaults)}") from None

    def describe(self) -> list[dict[str, Any]]:
        """Vaults, keys and versions with their metadata; never key material."""
        out = []
        for name, vault in self.vaults.items():
            keys = []
            for entry in vault.list_keys():
                versions = []
                for v in entry.versions:
                    fam, size, crv = describe_material(v.material)
                    versions.append(
                        {
                            "version": v.version,
                            "kty": v.kty,
                            "key_size": size if fam != "EC" else None,
                            "crv": crv,
                            "key_ops": list(v.key_ops),
                            "enabled": v.enabled,
                            "nbf": v.nbf,
                            "exp": v.exp,
                            "tags": dict(v.tags),
                        }
                    )
                keys.append({"name": entry.name, "versions": versions})
            out.append(
                {
                    "name": name,
                    "url": self.vault_url(name) if self._started else None,
                    "managed_hsm": vault.managed_hsm,
                    "permission_model": vault.permission_model,
                    "purge_protection": vault.purge_protection,
                    "keys": keys,
                    "deleted": [e.name for e in vault.list_deleted()],
                    "deleting": [e.name for e in vault.list_deleting()],
                }
            )
        return out

    def record(self, vault: str, operation_id: str | None, status: int, body: Any) -> None:
        if self._record:
            with self._lock:
                self._recorded.append(Recorded(vault, operation_id, status, body))

    def recorded(self) -> list[Recorded]:
        with self._lock:
            return list(self._recorded)

    def clear_recorded(self) -> None:
        with self._lock:
            self._recorded.clear()

    def _save(self, vault: Vault) -> None:
        # Called under the changed vault's lock: snapshot only that vault (no lock ordering).
        if self._state is not None:
            with self._lock:
                self._snapshots[vault.name] = vault.to_state()
                state = dict(self._snapshots)
            self._state.save(state)
