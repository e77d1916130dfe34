"""Auth methods (``sys/auth``, ``auth/<mount>/*``): the ``jwt`` and ``azure`` types.

An enabled method is a row in the store (``_auth/mount:<path>``) with a uuid; its config and
roles are filed under that uuid, and so is every token it issues (``_auth_tokens:<uuid>``),
written before the token itself. Disabling marks the method ``disabling`` (logins refused),
revokes every token filed under it, removes config and roles, then the method: each step is
safe to repeat, so a disable that died is finished by running it again (or by ``settle``).

Knows nothing of HTTP: the API (``shared/api/auth.py``) declares the fields and passes a
``FieldData``; the token itself comes from the token store (``TokenStore.login``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from shared import mounts
from shared.errors import ConcurrentChange, InvalidRequest, PermissionDenied
from shared.names import check_mount, is_mount_name
from shared.records import AuthItem, AuthMount, MountSettings, TokenEntry, TokenInfo, utcnow
from shared.seal import Sealer
from shared.settings import Settings
from shared.store import Store, optimistic
from shared.tokens import TokenStore, address_allowed
from shared.vaultapi import FieldData

log = logging.getLogger(__name__)
# Each method's module (shared.auth.jwt, shared.auth.azure: claims checks, key fetches, PyJWT
# behind them) is imported by the first request that reaches that method: every cold start
# imports this package (the service builds AuthMethods), few requests touch an auth method.
JWT = "jwt"  # shared.auth.jwt.TYPE
AZURE = "azure"  # shared.auth.azure.TYPE
TYPES = (JWT, AZURE)
ALIASES = {"oidc": JWT}  # OpenBao's oidc type is the same backend as jwt
TOKEN_MOUNT = "token"  # noqa: S105 (the token method's path, no secret)


def login_path(mount: str) -> str:
    return f"auth/{mount}/login"


def _shown(text: str) -> str:
    """A path repeated in an error: bounded and printable."""
    text = text[:64]
    return text if text.isprintable() else text.encode("unicode_escape").decode()


def _secret_context(mount: AuthMount, name: str) -> str:
    return f"azure-keymgmt/v1/auth/{mount.uuid}/{name or 'config'}"


class AuthMethods:
    def __init__(
        self,
        store: Store,
        tokens: TokenStore,
        settings: Settings,
        sealer: Sealer,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.settings = settings
        self.sealer = sealer
        self._now = clock

    # -- sys/auth ------------------------------------------------------------------------------

    def enable(
        self,
        path: str,
        method_type: str,
        description: str = "",
        config: Any = None,
        options: Mapping[str, str] | None = None,
        *,
        local: bool = False,
        seal_wrap: bool = False,
        external_entropy_access: bool = False,
    ) -> None:
        """Enable a method, keeping enable's ``config``, ``options`` and flags as a secrets
        engine mount keeps them (``shared.mounts.enable_settings``), plus its token_type."""
        if not method_type:
            raise InvalidRequest("backend type must be specified as a string")
        method_type = ALIASES.get(method_type, method_type)
        if method_type not in TYPES:
            raise InvalidRequest(f"plugin not found in the catalog: {method_type[:64]}")
        settings = mounts.enable_settings(
            config,
            options or {},
            local=local,
            seal_wrap=seal_wrap,
            external_entropy_access=external_entropy_access,
            system_max=self.settings.token_max_ttl,
            auth_type=method_type,
        )
        name = path.strip("/")
        if name == TOKEN_MOUNT:
            raise InvalidRequest(f"path is already in use at {TOKEN_MOUNT}/")
        name = check_mount(name)
        mount_uuid = str(uuid.uuid4())
        mount = AuthMount(
            path=name,
            type=method_type,
            description=description,
            accessor=f"auth_{method_type}_{uuid.uuid4().hex[:8]}",
            uuid=mount_uuid,
            created=self._now(),
            settings=settings,
        )
        try:
            self.store.create_auth_mount(mount)
        except ConcurrentChange:
            raise InvalidRequest(f"path is already in use at {name}/") from None
        log.info("enabled auth method %s at auth/%s/", method_type, name)

    def enabled(self) -> list[AuthMount]:
        return [m for m in self.store.list_auth_mounts() if m.state == "active"]

    def get(self, path: str) -> AuthMount | None:
        """The active method at ``path``, or None."""
        name = path.strip("/")
        if not is_mount_name(name):
            return None
        mount = self.store.get_auth_mount(name)
        return mount if mount is not None and mount.state == "active" else None

    # -- sys/auth/:path/tune ---------------------------------------------------------------------

    def tune_view(self, path: str) -> dict[str, Any]:
        """``GET sys/auth/:path/tune``: the effective TTLs and the settings set, with OpenBao's
        texts for a method that is not there; ``token/`` shows the token store's."""
        name = path.strip("/")
        system_default, system_max = self.settings.token_default_ttl, self.settings.token_max_ttl
        if name == TOKEN_MOUNT:
            return mounts.settings_view(
                "token based credentials", MountSettings(), system_default, system_max, auth=True
            )
        mount = self.get(name)
        if mount is None:
            raise InvalidRequest(f'cannot fetch sysview for path "auth/{_shown(name)}/"')
        return mounts.settings_view(
            mount.description, mount.settings, system_default, system_max, auth=True
        )

    def tune(self, path: str, changes: Mapping[str, Any]) -> None:
        """``POST sys/auth/:path/tune`` (``changes``: the decoded fields sent), in one
        conditional write; nothing changes on an error."""
        name = path.strip("/")
        if name == TOKEN_MOUNT:
            if "token_type" in changes:
                raise InvalidRequest(
                    "'token_type' cannot be set for 'token' or 'ns_token' auth mounts"
                )
            # OpenBao keeps a tune of token/; this server has no row for the token method yet.
            raise InvalidRequest(f"tuning {TOKEN_MOUNT}/ is not supported by this server")

        def attempt() -> None:
            mount = self.get(name)
            if mount is None:
                raise InvalidRequest(
                    f'tune of path "auth/{_shown(name)}/" failed: no mount entry found'
                )
            settings = mounts.tuned_settings(mount.settings, changes, auth_type=mount.type)
            description = changes.get("description", mount.description)
            self.store.update_auth_mount(replace(mount, description=description, settings=settings))

        optimistic(attempt, what=f"auth method {name}/")
        log.info("tuned auth method %s/ (%s)", name, ", ".join(sorted(changes)) or "nothing")

    def disable(self, path: str) -> None:
        """Vault's disable: its tokens revoked (all it issued), config and roles gone. Nothing
        enabled there is no error; repeating a disable finishes one that died."""
        name = path.strip("/")
        if name == TOKEN_MOUNT:
            raise InvalidRequest("token credential backend cannot be disabled")

        def mark() -> AuthMount | None:
            mount = self.store.get_auth_mount(name) if name else None
            if mount is None or mount.state == "disabling":
                return mount
            return self.store.update_auth_mount(
                replace(mount, state="disabling", changed=self._now())
            )

        mount = optimistic(mark, what=f"auth method {name}/")
        if mount is None:
            return
        self._finish_disable(mount)

    def _finish_disable(self, mount: AuthMount) -> None:
        while True:
            issued = self.store.auth_tokens(mount.uuid)
            if not issued:
                break
            self.tokens.revoke_salted(issued)
            self.store.drop_auth_tokens(mount.uuid, issued)
        for role in self.store.auth_role_names(mount.uuid):
            self.store.delete_auth_item(mount.uuid, role)
        self.store.delete_auth_item(mount.uuid)
        # A login that read the method as active a moment before filed its token before
        # writing it, and looks again after: it takes its token back, or is listed here.
        if self.store.auth_tokens(mount.uuid):
            self._finish_disable(mount)
            return
        current = self.store.get_auth_mount(mount.path)
        if current is not None and current.uuid == mount.uuid:
            self.store.delete_auth_mount(current)
        log.info("disabled auth method %s at auth/%s/", mount.type, mount.path)

    def settle(self, older_than: float = 300) -> list[str]:
        """Finish disables that died more than ``older_than`` seconds ago."""
        done = []
        for mount in self.store.list_auth_mounts():
            if mount.state != "disabling" or mount.changed is None:
                continue
            if (self._now() - mount.changed).total_seconds() >= older_than:
                self._finish_disable(mount)
                done.append(
                    f"auth method {mount.path}/: a disable that did not finish was finished"
                )
        return done

    # -- the method's own paths ------------------------------------------------------------------

    def mount(self, path: str) -> AuthMount:
        """The active method at ``path``; a missing one is Vault's 403 (no route, no leak)."""
        found = self.get(path)
        if found is None:
            raise PermissionDenied()
        return found

    def _open(self, mount: AuthMount, item: AuthItem) -> dict[str, str]:
        if item.secret is None:
            return {}
        secret: dict[str, str] = json.loads(
            self.sealer.open(item.secret, _secret_context(mount, item.name))
        )
        return secret

    def config(self, mount: AuthMount) -> dict[str, Any] | None:
        item = self.store.get_auth_item(mount.uuid)
        return None if item is None else dict(item.settings)

    def render_config(self, mount: AuthMount) -> dict[str, Any] | None:
        from shared.auth import azure, jwt

        config = self.config(mount)
        if config is None:
            return None
        if mount.type == JWT:
            return jwt.render_config(config)
        return azure.render_config(config)

    def write_config(self, mount: AuthMount, data: FieldData) -> None:
        from shared.auth import azure, jwt

        def attempt() -> None:
            current = self.store.get_auth_item(mount.uuid)
            if mount.type == JWT:
                settings, secret = jwt.config_from(data)
            else:
                old_secret = self._open(mount, current) if current is not None else {}
                settings, secret = azure.config_from(
                    data, current.settings if current is not None else {}, old_secret
                )
            sealed = (
                self.sealer.seal(json.dumps(secret).encode(), _secret_context(mount, ""))
                if secret
                else None
            )
            item = AuthItem(
                mount.uuid, "", settings, sealed, etag=current.etag if current else None
            )
            self.store.put_auth_item(item)

        optimistic(attempt, what=f"the config of auth/{mount.path}/")
        self._still_there(mount)

    def delete_config(self, mount: AuthMount) -> None:
        self.store.delete_auth_item(mount.uuid)

    def _still_there(self, mount: AuthMount) -> None:
        """After a write: a method disabled meanwhile must not keep it (its disable may have
        listed its rows before this one was written)."""
        current = self.store.get_auth_mount(mount.path)
        if current is None or current.uuid != mount.uuid or current.state != "active":
            self._finish_disable(mount)
            raise PermissionDenied()

    def role(self, mount: AuthMount, name: str) -> dict[str, Any] | None:
        item = self.store.get_auth_item(mount.uuid, name)
        return None if item is None else dict(item.settings)

    def render_role(self, mount: AuthMount, name: str) -> dict[str, Any] | None:
        from shared.auth import azure, jwt

        role = self.role(mount, name)
        if role is None:
            return None
        return jwt.render_role(role) if mount.type == JWT else azure.render_role(role)

    def write_role(self, mount: AuthMount, name: str, data: FieldData) -> list[str]:
        from shared.auth import azure, jwt

        warnings: list[str] = []
        system_max = self.settings.token_max_ttl

        def attempt() -> None:
            current = self.store.get_auth_item(mount.uuid, name)
            existing = current.settings if current is not None else {}
            if mount.type == JWT:
                role, notes = jwt.role_from(data, existing, system_max=system_max)
            else:
                role, notes = azure.role_from(data, existing, system_max=system_max)
            warnings[:] = notes
            item = AuthItem(mount.uuid, name, role, etag=current.etag if current else None)
            self.store.put_auth_item(item)

        optimistic(attempt, what=f"role {name} of auth/{mount.path}/")
        self._still_there(mount)
        return warnings

    def delete_role(self, mount: AuthMount, name: str) -> None:
        self.store.delete_auth_item(mount.uuid, name)

    def roles(self, mount: AuthMount) -> list[str]:
        return self.store.auth_role_names(mount.uuid)

    # -- login ---------------------------------------------------------------------------------

    def login(
        self, mount: AuthMount, data: FieldData, remote_address: str
    ) -> tuple[TokenInfo, list[str]]:
        if mount.type == JWT:
            return self._login_jwt(mount, data, remote_address)
        return self._login_azure(mount, data, remote_address)

    @staticmethod
    def _cidrs_allow(role: Mapping[str, Any], remote_address: str) -> None:
        cidrs = role.get("token_bound_cidrs") or []
        if cidrs and not address_allowed(remote_address, cidrs):
            raise PermissionDenied()

    def _login_jwt(
        self, mount: AuthMount, data: FieldData, remote_address: str
    ) -> tuple[TokenInfo, list[str]]:
        from shared.auth import jwt

        config = self.config(mount)
        role_name = (data.get("role") or "").strip()
        if not role_name and config is not None:
            role_name = config.get("default_role") or ""
        if not role_name:
            raise InvalidRequest("missing role")
        role = self.role(mount, role_name.lower())
        if role is None:
            raise InvalidRequest(f'role "{role_name[:64]}" could not be found')
        if role.get("role_type") == "oidc":
            raise InvalidRequest("role with oidc role_type is not allowed")
        token = data.get("jwt") or ""
        if not token:
            raise InvalidRequest("missing token")
        self._cidrs_allow(role, remote_address)
        if config is None:
            raise InvalidRequest("could not load configuration")
        claims = jwt.validate(token, config, role)
        identity = jwt.login_identity(claims, role)
        metadata = {**identity.metadata, "role": role_name.lower()}
        return self._issue(mount, role_name.lower(), role, identity.name, metadata)

    def _login_azure(
        self, mount: AuthMount, data: FieldData, remote_address: str
    ) -> tuple[TokenInfo, list[str]]:
        from shared.auth import azure

        token = data.get("jwt") or ""
        if not token:
            raise InvalidRequest("jwt is required")
        role_name = (data.get("role") or "").strip()
        if not role_name:
            raise InvalidRequest("role is required")
        role = self.role(mount, role_name.lower())
        if role is None:
            raise InvalidRequest(f'invalid role name "{role_name[:64]}"')
        self._cidrs_allow(role, remote_address)
        request = azure.Request(
            subscription_id=data.get("subscription_id") or "",
            resource_group_name=data.get("resource_group_name") or "",
            vm_name=data.get("vm_name") or "",
            vmss_name=data.get("vmss_name") or "",
            resource_id=data.get("resource_id") or "",
        )
        azure.check_request(request)
        config = azure.effective(self.config(mount) or {}, self.settings)
        claims = azure.login_claims(token, config, self.settings.keyvault_ca_bundle)
        azure.check_role(claims, role)
        azure.check_resource(claims, role, request)
        oid = claims.get("oid")
        if not isinstance(oid, str) or not oid:
            raise InvalidRequest("oid claim is missing from token")
        metadata = azure.metadata(role_name.lower(), request, claims)
        return self._issue(mount, role_name.lower(), role, oid, metadata)

    def _issue(
        self,
        mount: AuthMount,
        role_name: str,
        role: Mapping[str, Any],
        alias: str,
        metadata: Mapping[str, str],
    ) -> tuple[TokenInfo, list[str]]:
        from shared.auth import common

        def still_valid() -> bool:
            current = self.store.get_auth_mount(mount.path)
            return current is not None and current.uuid == mount.uuid and current.state == "active"

        return self.tokens.login(
            path=login_path(mount.path),
            policies=role.get("token_policies") or [],
            no_default_policy=bool(role.get("token_no_default_policy")),
            display=common.display_name(mount.path, alias),
            meta=metadata,
            internal={"mount_uuid": mount.uuid, "mount": mount.path, "role": role_name},
            ttl=int(role.get("token_ttl") or 0),
            max_ttl=int(role.get("token_max_ttl") or 0),
            explicit_max_ttl=int(role.get("token_explicit_max_ttl") or 0),
            period=int(role.get("token_period") or 0),
            num_uses=int(role.get("token_num_uses") or 0),
            bound_cidrs=list(role.get("token_bound_cidrs") or []),
            entity_id=common.entity_id(mount.accessor, alias),
            file_under=lambda salted: self.store.add_auth_token(mount.uuid, salted),
            still_valid=still_valid,
        )

    # -- renewal (the token store's hook) --------------------------------------------------------

    def renewal(self, entry: TokenEntry) -> tuple[int, int, int]:
        """Vault's pathLoginRenew: the role must still exist; its TTLs apply from now on."""
        internal = entry.internal or {}
        role_name = internal.get("role", "")
        mount = self.store.get_auth_mount(internal.get("mount", ""))
        role = None
        if (
            mount is not None
            and mount.uuid == internal.get("mount_uuid")
            and mount.state == "active"
        ):
            role = self.role(mount, role_name)
        if role is None:
            # Both plugins' text; Vault answers it with 500, this server with 400.
            raise InvalidRequest(
                "1 error occurred:\n\t* failed to renew entry: role "
                f"{role_name} does not exist during renewal\n\n"
            )
        return (
            int(role.get("token_ttl") or 0),
            int(role.get("token_max_ttl") or 0),
            int(role.get("token_period") or 0),
        )
