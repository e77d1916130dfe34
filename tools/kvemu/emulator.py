"""The ``Emulator``: vault servers (one HTTPS port each), identity endpoints, faults, events."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from tools.funchost.serving import RequestHandler

from . import certs, events
from .access import ACCESS_POLICY, PERMISSION_MODELS, RBAC, ROLES, AccessControl
from .api import OPERATIONS_BY_NAME, VaultApp
from .directory import AppRegistration, Directory
from .faults import Fault, FaultBook
from .identity import MSI_PATH, AuthorityApp, MsiApp
from .keys import describe as describe_material
from .store import DEFAULT_DELETE_DELAY, KeyVersion, StateFile, Vault, check_name
from .tokens import KEYVAULT_AUDIENCE, SigningKey, TokenIssuer, resource_of

logger = logging.getLogger(__name__)

DEFAULT_TENANT_ID = "72f988bf-0000-4000-8000-00000000e0e0"
DEFAULT_SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000"
DEFAULT_RESOURCE_GROUP = "kvemu"
DEFAULT_FUNCTION_APP = "kvemu-functions"
TOKEN_KEY_FILE = "token-signing-key.pem"  # the signing key before rollovers were modelled
TOKEN_KEYS_FILE = "token-signing-keys.json"  # current, next and previous signing keys


def _check_subscription(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"a subscription id is a GUID, got {value!r}") from None


def _check_arm_name(value: str, what: str) -> str:
    # ARM names: letters, digits and - _ . ( ); no slashes (the name is a resource id segment).
    if not re.fullmatch(r"[A-Za-z0-9_.()-]{1,90}", value or ""):
        raise ValueError(f"invalid {what} name {value!r}: letters, digits and -_.() only")
    return value


@dataclass(frozen=True)
class ManagedIdentity:
    """A managed identity: the Function App's system-assigned one or a user-assigned one."""

    client_id: str
    object_id: str
    subscription_id: str
    resource_group: str
    name: str
    user_assigned: bool

    @property
    def provider(self) -> str:
        if self.user_assigned:
            return f"Microsoft.ManagedIdentity/userAssignedIdentities/{self.name}"
        return f"Microsoft.Web/sites/{self.name}"

    @property
    def resource_id(self) -> str:
        """The ARM resource id (``mi_res_id``): ``resourceGroups`` as ARM spells it."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{self.provider}"
        )

    @property
    def xms_mirid(self) -> str:
        """The ``xms_mirid`` claim: the same id with ``resourcegroups`` lower-cased, as Entra
        writes it."""
        return (
            f"/subscriptions/{self.subscription_id}/resourcegroups/{self.resource_group}"
            f"/providers/{self.provider}"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "object_id": self.object_id,
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "name": self.name,
            "resource_id": self.resource_id,
        }


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


class _QuietHandler(RequestHandler):
    """Persistent HTTP/1.1 connections, as Key Vault's front end keeps them (the SDK clients
    pool connections and are meant to be reused for that: docs/kvemu.md, "Connections"),
    with the local host's handler; a dropped-connection fault still ends its connection."""

    def setup(self) -> None:
        super().setup()
        self.server.live_connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.live_connections.discard(self.connection)  # type: ignore[attr-defined]

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
        subscription_id: str = DEFAULT_SUBSCRIPTION_ID,
        resource_group: str = DEFAULT_RESOURCE_GROUP,
        function_app: str = DEFAULT_FUNCTION_APP,
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
        self.subscription_id = _check_subscription(subscription_id)
        self.resource_group = _check_arm_name(resource_group, "resource group")
        self.system_identity = ManagedIdentity(
            client_id=str(uuid.uuid5(seed, "system-client")),
            object_id=str(uuid.uuid5(seed, "system-object")),
            subscription_id=self.subscription_id,
            resource_group=self.resource_group,
            name=_check_arm_name(function_app, "function app"),
            user_assigned=False,
        )
        self.directory = Directory()
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
        self._issuer_state: Path | None = None
        self.tls: certs.TlsFiles | None = None
        self._started = False

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Emulator:
        if self._started:
            return self
        self.tls = certs.ensure_tls(self.cert_dir)
        self.issuer = self._token_issuer()
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
        self.issuer.authority = self.authority_host  # the v2.0 issuer names this authority
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
        # Open keep-alive connections, ended by stop(): a client's pooled connection must not
        # outlive the emulator it was made to (a restarted one holds other state).
        server.live_connections = set()  # type: ignore[attr-defined]
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
            for connection in list(server.live_connections):  # type: ignore[attr-defined]
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
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

    def _token_issuer(self) -> TokenIssuer:
        """Reuse the token-signing keys across restarts, so cached tokens stay valid."""
        issuer = TokenIssuer(self.tenant_id)
        self._issuer_state = self.cert_dir / TOKEN_KEYS_FILE
        legacy = self.cert_dir / TOKEN_KEY_FILE
        if self._issuer_state.exists():
            issuer.load_state(json.loads(self._issuer_state.read_text("utf-8")))
        elif legacy.exists():
            issuer.current = SigningKey.from_pem(legacy.read_bytes())
        self._save_issuer(issuer)
        return issuer

    def _save_issuer(self, issuer: TokenIssuer | None = None) -> None:
        if self._issuer_state is not None:
            state = (issuer or self.issuer).to_state()
            certs._write_private(self._issuer_state, json.dumps(state).encode("utf-8"))

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
        self,
        client_id: str,
        object_id: str | None = None,
        *,
        name: str | None = None,
        resource_group: str | None = None,
        subscription_id: str | None = None,
    ) -> ManagedIdentity:
        """A user-assigned identity attached to the Function App (named after its client id
        unless ``name`` is given; the emulator's subscription and resource group by default)."""
        identity = ManagedIdentity(
            client_id=client_id,
            object_id=object_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"kvemu:uami:{client_id}")),
            subscription_id=_check_subscription(subscription_id or self.subscription_id),
            resource_group=_check_arm_name(resource_group or self.resource_group, "resource group"),
            name=_check_arm_name(name or client_id, "identity name"),
            user_assigned=True,
        )
        with self._lock:
            self._user_identities[client_id] = identity
        return identity

    def describe_identities(self) -> list[dict[str, Any]]:
        """The system-assigned identity first, then the user-assigned ones."""
        with self._lock:
            users = list(self._user_identities.values())
        return [
            {**self.system_identity.describe(), "type": "SystemAssigned"},
            *({**i.describe(), "type": "UserAssigned"} for i in users),
        ]

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

    def token_for(
        self,
        resource: str,
        *,
        object_id: str,
        app_id: str,
        client_auth: str,
        managed_identity: ManagedIdentity | None = None,
    ) -> tuple[str, int]:
        """An access token as Entra issues it for ``resource`` (an identifier URI or app id,
        a scope's ``/.default`` removed): the resource decides the version; raises
        ``ResourceNotFound`` for a resource that is neither first-party nor registered."""
        requested = resource_of(resource)
        target = self.directory.resolve(requested)
        extra = self.directory.claims_for(target, object_id)
        if managed_identity is not None and target.first_party:
            extra["xms_mirid"] = managed_identity.xms_mirid
        return self.issuer.issue(
            audience=requested if target.version == 1 else target.app_id,
            object_id=object_id,
            app_id=app_id,
            version=target.version,
            client_auth=client_auth,
            extra=extra,
        )

    # --- app registrations, app roles, groups, signing keys ----------------------------------

    def register_app(
        self,
        *,
        client_id: str | None = None,
        identifier_uris: Iterable[str] = (),
        access_token_version: int | None = None,
        app_roles: Any = None,
        group_membership_claims: str | None = None,
    ) -> AppRegistration:
        """Register an API (app registration + service principal) that tokens can be asked
        for; ``access_token_version`` is the manifest's ``accessTokenAcceptedVersion``."""
        return self.directory.register_app(
            client_id=client_id,
            identifier_uris=identifier_uris,
            access_token_version=access_token_version,
            app_roles=app_roles,
            group_membership_claims=group_membership_claims,
        )

    def assign_app_role(self, app: str, principal: str, role: str) -> None:
        """Assign an app role of a registered API (client id or identifier URI) to a service
        principal: an object id, or a client id of a registered client or managed identity."""
        self.directory.assign_app_role(app, self._object_id(principal), role)

    def add_group_members(self, group_id: str, principals: Iterable[str]) -> list[str]:
        """Make principals (object ids, or client ids resolved) members of a security group."""
        return self.directory.add_group_members(group_id, [self._object_id(p) for p in principals])

    def prepare_signing_key(self) -> str:
        """Publish the next signing key before it signs (as Entra does); returns its kid."""
        key = self.issuer.prepare_next()
        self._save_issuer()
        return key.kid

    def rotate_signing_key(self, *, previous_seconds: float | None = None) -> str:
        """Roll over: the next key signs; the old one stays published (``previous_seconds``,
        or until ``retire_signing_keys``). Returns the new kid."""
        if previous_seconds is not None and previous_seconds < 0:
            raise ValueError("previous_seconds must be 0 or more")
        key = self.issuer.rotate(previous_seconds=previous_seconds)
        self._save_issuer()
        return key.kid

    def retire_signing_keys(self) -> list[str]:
        """Stop publishing the previous keys: tokens they signed are refused from now on."""
        retired = self.issuer.retire_previous()
        self._save_issuer()
        return retired

    def signing_keys(self) -> dict[str, Any]:
        published = {k.kid for k in self.issuer.published()}
        return {
            "current": self.issuer.current.kid,
            "next": [k.kid for k in self.issuer.next],
            "previous": [k.kid for k, _ in self.issuer.previous if k.kid in published],
        }

    def issue_token(
        self,
        *,
        audience: str = KEYVAULT_AUDIENCE,
        object_id: str | None = None,
        app_id: str | None = None,
        lifetime_seconds: int = 3600,
        issued_at: int | None = None,
        version: int = 1,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A token signed by the current published key, shaped by hand (tests: expired, not yet
        valid (``issued_at`` in the future), foreign-audience or wrong-issuer tokens; ``claims``
        adds or overrides claims, e.g. ``{"iss": ...}`` or ``{"xms_mirid": ...}``)."""
        token, _ = self.issuer.issue(
            audience=audience,
            object_id=object_id or self.system_identity.object_id,
            app_id=app_id or self.system_identity.client_id,
            lifetime_seconds=lifetime_seconds,
            now=issued_at,
            version=version,
            extra=claims,
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
