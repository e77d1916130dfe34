"""Secrets engine mounts (``sys/mounts``): only the ``keymgmt`` type exists here.

The mount path is checked here, not by the route (``sys/mounts/:path`` declares no parameter
rule): Vault's route takes any path, a read of one that cannot be a mount answers that there is
no mount there, and an enable checks the engine type before the path.

A mount keeps every setting Vault's mount entry keeps (``MountSettings``): enable sets them from
``config``, ``options`` and the flags, ``tune`` changes them, with OpenBao's rules and texts
(``vault/logical_system.go``: handleMount, handleTuneReadCommon, handleTuneWriteCommon)."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from shared import durations, vaultapi
from shared.errors import ConcurrentChange, InvalidRequest, NotFound
from shared.names import check_mount
from shared.records import Mount, MountSettings, utcnow
from shared.store import Store, optimistic

if TYPE_CHECKING:
    from shared.remount import Mover

log = logging.getLogger(__name__)
ENGINE_TYPE = "keymgmt"
UNDO_WAIT_SECONDS = 10  # how long a disable waits for creates that raced it to take themselves back
SYSTEM_TTL = 768 * 3600  # Vault's system default and max lease TTL (shared.settings' default)
LISTING_VISIBILITY = ("", "unauth", "hidden")
TOKEN_TYPES = ("default-service", "default-batch", "service", "batch")  # an auth mount's
DEFAULT_TOKEN_TYPE = "default-service"  # noqa: S105 (a token type, no secret)
# The list settings (TypeCommaStringSlice in Vault's tune, comma-expanded in enable's config).
LIST_SETTINGS = (
    "audit_non_hmac_request_keys",
    "audit_non_hmac_response_keys",
    "passthrough_request_headers",
    "allowed_response_headers",
)


def no_route(mount: str) -> NotFound:
    """Vault's answer for a path under no mount (reads and writes alike)."""
    shown = mount[:64] if mount.isprintable() else "?"
    return NotFound(f'no handler for route "{shown}/". route entry not found.')


def _shown(text: str) -> str:
    """A value repeated in an error (TTLs, names; never secrets): bounded and printable."""
    text = text[:64]
    return text if text.isprintable() else text.encode("unicode_escape").decode()


def no_mount_read(path: str) -> InvalidRequest:
    """A read of ``sys/mounts/:path`` with no mount there. Terraform's provider looks for
    ``No secret engine mount at`` to plan a re-create (util.IsMountNotFoundError)."""
    return InvalidRequest(f"No secret engine mount at {_shown(path.strip('/'))}/")


# -- settings: enable's config and tune's fields, as OpenBao parses them -----------------------


def _config_value(config: Mapping[str, Any], name: str, kind: type) -> Any:
    """One value of enable's ``config`` as mapstructure decodes it into APIMountConfig (Vault
    reads JSON numbers as json.Number, a string): a string setting takes a string or a
    number, a list one a comma string or a list of strings and numbers, a flag a JSON
    boolean; anything else is Vault's conversion error."""
    value = config.get(name)
    if value is None:
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is str:
        if _stringish(value):
            return str(value)
    elif isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    elif isinstance(value, list) and all(_stringish(item) for item in value):
        return [str(item) for item in value]
    raise InvalidRequest("unable to convert given mount config information")


def _stringish(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _enable_ttl(text: str, what: str) -> int:
    if text in ("", "system"):
        return 0
    try:
        return durations.parse_seconds(text)
    except InvalidRequest as exc:
        raise InvalidRequest(f"unable to parse {what} TTL of {_shown(text)}: {exc}") from None


def _check_options(options: Mapping[str, str], what: str) -> None:
    if options.get("version"):
        raise InvalidRequest(f"{what} does not allow setting a version")


def _check_token_type(value: str) -> None:
    if value not in TOKEN_TYPES:
        raise InvalidRequest("invalid value for 'token_type'")


def _check_visibility(value: str) -> None:
    if value not in LISTING_VISIBILITY:
        raise InvalidRequest(f"invalid listing_visibility {_shown(value)}")


def enable_settings(
    config: Any,
    options: Mapping[str, str],
    *,
    local: bool,
    seal_wrap: bool,
    external_entropy_access: bool,
    system_max: int = SYSTEM_TTL,
    auth_type: str | None = None,
) -> MountSettings:
    """The settings an enable stores, from its ``config`` map, ``options`` and flags; an auth
    method's (``auth_type`` given) keep a ``token_type`` too, as OpenBao's sys/auth does."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise InvalidRequest(
            'Field validation failed: error converting input for field "config": expected a '
            "map of settings"
        )
    default_ttl = _enable_ttl(_config_value(config, "default_lease_ttl", str) or "", "default")
    max_ttl = _enable_ttl(_config_value(config, "max_lease_ttl", str) or "", "max")
    if max_ttl != 0 and default_ttl > max_ttl:
        raise InvalidRequest("given default lease TTL greater than given max lease TTL")
    if default_ttl > system_max and max_ttl == 0:
        raise InvalidRequest(
            f"given default lease TTL greater than system max lease TTL of {system_max}"
        )
    _check_options(
        options,
        f'auth method "{auth_type}"' if auth_type else f'secrets engine "{ENGINE_TYPE}"',
    )
    token_type = ""
    if auth_type is not None:
        token_type = _config_value(config, "token_type", str) or ""
        if token_type:
            _check_token_type(token_type)
    if _config_value(config, "plugin_version", str):
        raise _no_plugin_version(str(config["plugin_version"]))
    force_no_cache = bool(_config_value(config, "force_no_cache", bool))
    if auth_type is not None:
        force_no_cache = False  # OpenBao's auth enable checks the flag but does not keep it
    visibility = _config_value(config, "listing_visibility", str) or ""
    _check_visibility(visibility)
    lists = {name: tuple(_config_value(config, name, list) or ()) for name in LIST_SETTINGS}
    return MountSettings(
        default_lease_ttl=default_ttl,
        max_lease_ttl=max_ttl,
        force_no_cache=force_no_cache,
        listing_visibility=visibility,
        options=tuple(sorted(options.items())),
        local=local,
        seal_wrap=seal_wrap,
        external_entropy_access=external_entropy_access,
        token_type=token_type,
        **lists,
    )


def _no_plugin_version(version: str) -> InvalidRequest:
    # keymgmt is built in: there is no catalog of versions to choose from.
    return InvalidRequest(
        f"plugin not found in the catalog: {ENGINE_TYPE}, version={_shown(version)}"
    )


def tune_list(value: Any, name: str) -> list[str]:
    """A list setting of tune, as Vault's TypeCommaStringSlice decodes it: a comma string or a
    list of strings, each item trimmed; empty items are kept (Terraform sends ``[""]`` for an
    empty list and reads it back), an empty string or list is no items."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(_stringish(item) for item in value):
        items = [str(item) for item in value]
    else:
        raise InvalidRequest(
            f"Field validation failed: {name} must be a comma-separated string or a list of strings"
        )
    if len(items) > vaultapi.MAX_LIST:
        raise InvalidRequest(
            f"Field validation failed: {name} has more than {vaultapi.MAX_LIST} items"
        )
    return [item.strip()[:256] for item in items]


def _tune_ttl(text: str | None, current: int) -> int:
    if text is None or text == "":
        return current
    if text == "system":
        return 0
    return durations.parse_seconds(text)  # Vault answers the parser's own text here


def tuned(current: Mount, changes: Mapping[str, Any]) -> Mount:
    """The mount after a tune: ``changes`` holds the decoded fields that were sent (tune's
    FieldData), each applied as handleTuneWriteCommon does; nothing changes on an error."""
    settings = tuned_settings(current.settings, changes)
    description = changes.get("description", current.description)
    return replace(current, description=description, settings=settings)


def tuned_settings(
    settings: MountSettings, changes: Mapping[str, Any], *, auth_type: str | None = None
) -> MountSettings:
    """A mount's settings after a tune (a secrets engine's, or with ``auth_type`` an auth
    method's: token_type can be set, options keep no version rule, as OpenBao answers)."""
    default_ttl = _tune_ttl(changes.get("default_lease_ttl"), settings.default_lease_ttl)
    max_ttl = _tune_ttl(changes.get("max_lease_ttl"), settings.max_lease_ttl)
    if default_ttl and max_ttl and max_ttl < default_ttl:
        raise InvalidRequest(
            f"backend max lease TTL of {max_ttl} would be less than backend default lease TTL "
            f"of {default_ttl}"
        )
    lockout = changes.get("user_lockout_config")
    if lockout:
        raise InvalidRequest(
            "tuning of user lockout configuration for auth type "
            f'"{auth_type or ENGINE_TYPE}" not allowed'
        )
    updates: dict[str, Any] = {"default_lease_ttl": default_ttl, "max_lease_ttl": max_ttl}
    if changes.get("plugin_version"):
        raise _no_plugin_version(changes["plugin_version"])
    for name in LIST_SETTINGS:
        if name in changes:
            updates[name] = tuple(changes[name])
    if "listing_visibility" in changes:
        _check_visibility(changes["listing_visibility"])
        updates["listing_visibility"] = changes["listing_visibility"]
    if "token_type" in changes:
        if auth_type is None:
            raise InvalidRequest("'token_type' can only be modified on auth mounts")
        _check_token_type(changes["token_type"])
        updates["token_type"] = changes["token_type"]
    options: Mapping[str, str] = changes.get("options") or {}
    if options:
        if auth_type is None:
            _check_options(options, f'secrets engine "{ENGINE_TYPE}"')
        merged = dict(settings.options)
        for key, value in options.items():
            if value == "":
                merged.pop(key, None)  # an empty value deletes the option, as in Vault
            else:
                merged[key] = value
        updates["options"] = tuple(sorted(merged.items()))
    return replace(settings, **updates)


def tune_view(mount: Mount, system_default: int, system_max: int) -> dict[str, Any]:
    """``GET sys/mounts/:path/tune``: the effective TTLs (the system's where the mount's are
    0) and the settings that are set, as handleTuneReadCommon shows them."""
    return settings_view(mount.description, mount.settings, system_default, system_max)


def settings_view(
    description: str,
    s: MountSettings,
    system_default: int,
    system_max: int,
    *,
    auth: bool = False,
) -> dict[str, Any]:
    """The tune read of a mount's settings; an auth method's (``auth``) always names its
    token_type."""
    view: dict[str, Any] = {
        "description": description,
        "default_lease_ttl": s.default_lease_ttl or system_default,
        "max_lease_ttl": s.max_lease_ttl or system_max,
        "force_no_cache": s.force_no_cache,
    }
    if s.external_entropy_access:
        view["external_entropy_access"] = True
    for name in ("audit_non_hmac_request_keys", "audit_non_hmac_response_keys"):
        if getattr(s, name):
            view[name] = list(getattr(s, name))
    if s.listing_visibility:
        view["listing_visibility"] = s.listing_visibility
    for name in ("passthrough_request_headers", "allowed_response_headers"):
        if getattr(s, name):
            view[name] = list(getattr(s, name))
    if s.options:
        view["options"] = dict(s.options)
    if auth:
        view["token_type"] = s.token_type or DEFAULT_TOKEN_TYPE
    return view


def config_view(settings: MountSettings, *, auth: bool = False) -> dict[str, Any]:
    """A mount entry's ``config`` in ``sys/mounts``: the stored TTLs (0 = the system's) and
    the settings that are set (Vault's MountConfigOutput, omitempty)."""
    view: dict[str, Any] = {
        "default_lease_ttl": settings.default_lease_ttl,
        "force_no_cache": settings.force_no_cache,
        "max_lease_ttl": settings.max_lease_ttl,
    }
    for name in LIST_SETTINGS:
        if getattr(settings, name):
            view[name] = list(getattr(settings, name))
    if settings.listing_visibility:
        view["listing_visibility"] = settings.listing_visibility
    if auth:
        view["token_type"] = settings.token_type or DEFAULT_TOKEN_TYPE
    return dict(sorted(view.items()))


MountList = list[Mount]  # the class has a method named ``list``: its annotations use this


@dataclass(frozen=True)
class Contents:
    """How a disable removes what a mount holds. Wired by ``shared.service`` (the key engine and
    the KMS providers are built after the mounts and know nothing of them)."""

    delete_key: Callable[[str, str], None]  # (mount, key); refuses a key still distributed
    finish_key: Callable[[str, str], None]  # (mount, key) a key left ``deleting``
    delete_provider: Callable[[str, str], None]  # (mount, provider); refuses one holding keys


class Mounts:
    def __init__(
        self,
        store: Store,
        *,
        system_default_ttl: int = SYSTEM_TTL,
        system_max_ttl: int = SYSTEM_TTL,
    ) -> None:
        self.store = store
        self.system_default_ttl = system_default_ttl
        self.system_max_ttl = system_max_ttl
        self.contents: Contents | None = None  # set by shared.service.build
        self.mover: Mover | None = None  # sys/remount; set by shared.service.build
        self._known: set[str] = set()

    def enable(
        self,
        path: str,
        engine_type: str,
        description: str = "",
        settings: MountSettings | None = None,
    ) -> None:
        name = check_mount(path)
        if engine_type != ENGINE_TYPE:
            raise InvalidRequest(
                f"unsupported secrets engine type {engine_type!r}; this server offers only "
                f"{ENGINE_TYPE!r}"
            )
        settings = settings or MountSettings()
        if self.store.get_mount(name) is not None or not self._create(name, description, settings):
            raise InvalidRequest(f"path is already in use at {name}/")
        log.info("enabled mount %s", name)

    def _create(self, name: str, description: str, settings: MountSettings) -> bool:
        """Create the mount row; False if it exists already (created concurrently)."""
        try:
            self.store.create_mount(
                Mount(
                    name,
                    ENGINE_TYPE,
                    description,
                    str(uuid.uuid4()),
                    utcnow(),
                    settings=settings,
                )
            )
        except ConcurrentChange:
            return False
        return True

    def ensure(self, path: str) -> None:
        """Enable a mount if it is not there yet (the setting that pre-enables mounts)."""
        name = check_mount(path)
        if self.store.get_mount(name) is None:
            self._create(name, "", MountSettings())

    def get(self, path: str) -> Mount | None:
        """The mount at ``path`` (any state), or None; a path that cannot be a mount is none."""
        name = path.strip("/")
        if not name or "/" in name or not name.isprintable():
            return None
        try:
            check_mount(name)
        except InvalidRequest:
            return None
        return self.store.get_mount(name)

    def tune(self, path: str, changes: Mapping[str, Any]) -> None:
        """Apply a tune (``changes``: the decoded fields sent) in one conditional write."""

        def attempt() -> None:
            mount = self.get(path)
            if mount is None or mount.state != "active":
                raise InvalidRequest(
                    f'tune of path "{_shown(path.strip("/"))}/" failed: no mount entry found'
                )
            after = tuned(mount, changes)
            if after != mount:
                self.store.update_mount(replace(after, changed=utcnow()))

        optimistic(attempt, what=f"mount {path.strip('/')}/")
        log.info("tuned mount %s (%s)", path.strip("/"), ", ".join(sorted(changes)) or "nothing")

    def tune_view(self, path: str) -> dict[str, Any]:
        mount = self.get(path)
        if mount is None:
            raise InvalidRequest(f'cannot fetch sysview for path "{_shown(path.strip("/"))}/"')
        return tune_view(mount, self.system_default_ttl, self.system_max_ttl)

    def disable(self, path: str) -> None:
        """Disable a mount and remove what it holds: its keys (whatever their
        deletion_allowed, as Vault drops a disabled mount's data) and its KMS providers. Refused,
        naming them, while any key is still distributed to a provider: its Key Vault copies
        would be left without their record. Marked ``disabling`` first (new writes are refused
        from then on, and a create that read the mount as active a moment before takes itself
        back when it sees the mark, see ``keeps``), then emptied, then deleted; a disable that
        died half-way is finished by ``settle``."""
        name = check_mount(path)

        def mark() -> Mount | None:
            mount = self.store.get_mount(name)
            if mount is None or mount.state == "disabling":
                return mount
            return self.store.update_mount(replace(mount, state="disabling", changed=utcnow()))

        current = self.store.get_mount(name)
        if current is None:
            return
        if current.state == "moving":
            raise InvalidRequest(f"mount {name}/ is being moved; try again once that is done")
        try:  # before the mark: a refused disable changes nothing
            self._refuse_distributed(name)
        except InvalidRequest:
            if current.state == "disabling":  # a disable that died: the mount is back in use
                self._reactivate(name)
            raise
        if optimistic(mark, what=f"mount {name}/") is None:
            return
        mount = self.store.get_mount(name)  # read again: when the storage wrote the mark
        if mount is None:
            return
        self._known.discard(name)
        try:
            self._empty(mount)
        except InvalidRequest:
            self._reactivate(name)
            raise
        self.store.delete_mount(mount)
        log.info("disabled mount %s", name)

    def distributed(self, name: str) -> dict[str, list[str]]:
        """The mount's keys that are distributed (or being distributed or removed), each with
        its KMS providers."""
        held: dict[str, list[str]] = {}
        for dist in self.store.list_distributions(name):
            held.setdefault(dist.key, []).append(dist.kms)
        for key_name in self.store.list_key_names(name):
            key = self.store.get_key(name, key_name)
            for provider_name in key.kms if key is not None else ():
                if provider_name not in held.get(key_name, []):
                    held.setdefault(key_name, []).append(provider_name)
        return {key: sorted(providers) for key, providers in sorted(held.items())}

    def _refuse_distributed(self, name: str) -> None:
        held = self.distributed(name)
        if not held:
            return
        shown = [f"{key} (in {', '.join(providers)})" for key, providers in list(held.items())[:20]]
        if len(held) > 20:
            shown.append(f"and {len(held) - 20} more")
        raise InvalidRequest(
            f"cannot disable mount {name}/: keys are still distributed to KMS providers: "
            f"{', '.join(shown)}; remove them from the providers first (their Key Vault copies "
            "would be left behind)"
        )

    def _empty(self, mount: Mount) -> None:
        """Delete the mount's keys and providers until none is left. A row written after the
        mark is a create that read the mount as active a moment before; it is deleted too (or
        takes itself back), so the loop ends once such creates have settled."""
        contents = self.contents
        if contents is None:
            raise RuntimeError("Mounts.contents is not wired (shared.service.build does it)")
        deadline = time.monotonic() + UNDO_WAIT_SECONDS
        name = mount.name
        while True:
            self._refuse_distributed(name)
            for key_name in self.store.list_key_names(name):
                contents.delete_key(name, key_name)
            for key_name in self.store.deleting_keys(name):
                contents.finish_key(name, key_name)
            for provider in self.store.list_kms(name):
                contents.delete_provider(name, provider.name)
            if not (self.store.holds(name, "keys") or self.store.holds(name, "providers")):
                return
            if time.monotonic() > deadline:
                raise InvalidRequest(
                    f"cannot disable mount {name}/: keys or KMS providers keep being written "
                    "to it; try again"
                )
            time.sleep(0.1)

    def _reactivate(self, name: str) -> None:
        def attempt() -> None:
            mount = self.store.get_mount(name)
            if mount is not None and mount.state == "disabling":
                self.store.update_mount(replace(mount, state="active", changed=utcnow()))

        optimistic(attempt, what=f"mount {name}/")

    def keeps(self, name: str, written: Callable[[], dt.datetime | None]) -> bool:
        """After a create that may be the first in the mount: may the created row stay
        (``written`` tells when the storage wrote it)? Yes while the mount is active. Once it
        is being disabled, only if the storage wrote the row before the mark: then the disable
        sees it and refuses. A row written after the mark (or a mount already gone) must go:
        the disable is waiting for that."""
        mount = self.store.get_mount(name)
        if mount is not None and mount.state == "active":
            return True
        if mount is None or mount.written is None:
            return False
        written_at = written()
        return written_at is not None and written_at < mount.written

    def settle(self, older_than: float = 300) -> list[str]:
        """Finish what a disable that died left: a mount ``disabling`` for longer than
        ``older_than`` seconds is emptied and deleted, or made active again if a key in it is
        distributed (or it cannot be emptied now)."""
        done = []
        for mount in self.store.list_mounts():
            if mount.state != "disabling" or mount.changed is None:
                continue
            if (utcnow() - mount.changed).total_seconds() < older_than:
                continue
            try:
                self._empty(mount)
            except InvalidRequest:
                self._reactivate(mount.name)
                done.append(f"mount {mount.name}/: a disable that did not finish was undone")
                continue
            self.store.delete_mount(mount)
            done.append(f"mount {mount.name}/: a disable that did not finish was finished")
        if self.mover is not None:
            done.extend(self.mover.settle(older_than))
        return done

    def forget(self) -> None:
        """Drop the cache of known mounts (the table was lost and recreated)."""
        self._known.clear()

    def exists(self, path: str, *, for_write: bool = False) -> bool:
        # Reads may trust the cache: a disabled mount holds no keys, so they find nothing.
        # Writes always look, so nothing is written under a mount another instance disabled
        # or is disabling.
        if path in self._known and not for_write:
            return True
        mount = self.store.get_mount(path)
        if mount is None or (for_write and mount.state != "active"):
            return False
        self._known.add(path)
        return True

    def list(self) -> MountList:
        """Every mount, as storage lists them (``disabling`` ones too, until they are gone)."""
        return self.store.list_mounts()
