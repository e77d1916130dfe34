"""Builds the engine from settings, once per process; adapters and timers share it."""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any

from shared import settings as settings_module
from shared.audit import Broker
from shared.auth import AuthMethods
from shared.distribution import Distributor
from shared.errors import UpstreamUnavailable
from shared.keys import KeyEngine
from shared.kms import Kms
from shared.mounts import Contents, Mounts
from shared.policies import Policies
from shared.reconcile import Reconciler
from shared.remount import Mover
from shared.seal import KeyVaultSealKey, LocalSealKey, Sealer, SealKey
from shared.settings import Settings
from shared.store import Store
from shared.tokens import TokenStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """The engine's parts, each built with its collaborators (no part refers back to this)."""

    settings: Settings
    store: Store
    tokens: TokenStore
    auth: AuthMethods
    policies: Policies
    mounts: Mounts
    keys: KeyEngine
    sealer: Sealer
    kms: Kms
    distribution: Distributor
    reconciler: Reconciler
    audit: Broker


def _seal_key(settings: Settings) -> SealKey:
    if settings.seal_key is not None:
        return LocalSealKey(settings.seal_key)
    if settings.seal_key_id:
        from shared.azure import crypto_client_factory

        return KeyVaultSealKey(settings.seal_key_id, crypto_client_factory(settings))
    raise UpstreamUnavailable(
        "no seal key is configured: set KEYMGMT_SEAL_KEY_ID (a Key Vault key) or, for "
        "development only, KEYMGMT_SEAL_KEY"
    )


def build(settings: Settings, *, table_client: Any = None) -> Service:
    sealer = Sealer(_LazySealKey(settings))
    store = Store(settings, sealer, table_client=table_client)
    mounts = Mounts(
        store,
        system_default_ttl=settings.token_default_ttl,
        system_max_ttl=settings.token_max_ttl,
    )
    policies = Policies(store, settings.policy_cache_seconds)
    kms = Kms(store, settings, sealer, mounts)
    distribution = Distributor(store, settings, sealer, kms)
    keys = KeyEngine(
        store,
        sealer,
        allow_short_rotation=settings.allow_short_rotation,
        propagator=distribution,
        mount_keeps=mounts.keeps,
    )
    mounts.contents = Contents(
        delete_key=functools.partial(keys.delete, with_mount=True),
        finish_key=lambda mount, name: _finish_key(store, keys, mount, name),
        delete_provider=kms.delete,
    )
    mounts.mover = Mover(store, sealer, mounts)
    tokens = TokenStore(store, settings, policy_exists=policies.exists)
    auth = AuthMethods(store, tokens, settings, sealer)
    tokens.login_renewal = auth.renewal  # the token store imports no auth method
    service = Service(
        settings=settings,
        store=store,
        tokens=tokens,
        auth=auth,
        policies=policies,
        mounts=mounts,
        keys=keys,
        sealer=sealer,
        kms=kms,
        distribution=distribution,
        reconciler=Reconciler(store, kms, distribution),
        audit=Broker(settings, store),
    )

    def ensure_default_mounts() -> None:
        for mount in settings.default_mounts:
            service.mounts.ensure(mount)

    # A table found missing is recreated empty: caches go, and the default mounts come back.
    store.on_table_lost += [
        service.mounts.forget,
        service.policies.forget,
        service.kms.forget,
        service.audit.forget,
        ensure_default_mounts,
    ]
    ensure_default_mounts()
    service.policies.load()  # here, not on the first request a token with policies makes
    return service


def _finish_key(store: Store, keys: KeyEngine, mount: str, name: str) -> None:
    key = store.get_key(mount, name)
    if key is not None and key.state == "deleting":
        keys.finish_delete(key)


class _LazySealKey:
    """Resolves the seal key on first use, so a read never needs it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._key: SealKey | None = None
        self._lock = threading.Lock()

    def _get(self) -> SealKey:
        with self._lock:
            if self._key is None:
                self._key = _seal_key(self._settings)
            return self._key

    def wrap(self, dek: bytes) -> tuple[bytes, str]:
        return self._get().wrap(dek)

    def unwrap(self, wrapped: bytes, key_id: str) -> bytes:
        return self._get().unwrap(wrapped, key_id)


_lock = threading.Lock()


@functools.cache
def _cached() -> Service:
    return build(settings_module.get())


def get() -> Service:
    """The process-wide service (built on first use, from app settings)."""
    with _lock:
        return _cached()
