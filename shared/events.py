"""Key Vault events (Event Grid, system topic of a vault), in either schema.

Deliveries are at least once and unordered, so every handler is idempotent:
- ``KeyNewVersionCreated`` confirms our own imports; a version of one of our keys that the
  engine did not create is drift: recorded, logged, and disabled when a setting asks for it;
- ``KeyNearExpiry``/``KeyExpired`` on the newest version of an engine key rotate the key once:
  the rotation is conditioned on that version still being the latest, so a repeated or
  concurrent delivery finds it already rotated;
- anything else is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from shared.distribution import TAG_KEY, TAG_MOUNT
from shared.errors import EngineError
from shared.store import rfc3339, utcnow

log = logging.getLogger(__name__)

NEW_VERSION = "Microsoft.KeyVault.KeyNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.KeyNearExpiry"
EXPIRED = "Microsoft.KeyVault.KeyExpired"


def handle(
    service: Any, event_type: str, data: Mapping[str, Any] | None, event_id: str = ""
) -> str:
    """Handle one event; returns what was done (for logs and tests)."""
    if event_type not in (NEW_VERSION, NEAR_EXPIRY, EXPIRED):
        log.debug("ignored event %s (%s)", event_type, event_id)
        return "ignored"
    data = data or {}
    vault = str(data.get("VaultName") or "")
    name = str(data.get("ObjectName") or "")
    version = str(data.get("Version") or "")
    if str(data.get("ObjectType") or "Key") != "Key" or not vault or not name or not version:
        log.debug("ignored event %s without a key, vault and version (%s)", event_type, event_id)
        return "ignored"
    distributor = service.distribution
    dist = distributor.find_by_remote(vault, name)
    if dist is None:
        log.debug("event %s for %s/%s: not a key this engine distributed", event_type, vault, name)
        return "not ours"
    engine_version = next((v for v, vid in dist.versions.items() if vid == version), None)
    if event_type == NEW_VERSION:
        return _new_version(service, dist, vault, name, version, engine_version)
    return _expiring(service, dist, event_type, name, version, engine_version)


def _new_version(
    service: Any, dist: Any, vault: str, name: str, version: str, engine_version: int | None
) -> str:
    if engine_version is not None:
        log.debug(
            "confirmed %s/%s version %s (engine version %d)", vault, name, version, engine_version
        )
        return "confirmed"
    _, provider = service.distribution.provider(dist.mount, dist.provider)
    found = provider.version(name, version)  # one read (``get``), not a listing
    if (
        found is not None
        and found.tags.get(TAG_MOUNT) == dist.mount
        and found.tags.get(TAG_KEY) == dist.key
    ):
        log.debug("%s/%s version %s is our import, not yet recorded", vault, name, version)
        return "ours, pending"
    disabled = False
    if service.settings.disable_foreign_versions and found is not None:
        try:
            provider.set_enabled(name, version, False)
            disabled = True
        except EngineError as exc:
            log.warning("could not disable foreign version %s of %s: %s", version, name, exc)
    service.store.add_event_drift(
        f"{vault.lower()}:{name}:{version}",
        {
            "time": rfc3339(utcnow()),
            "vault": vault,
            "name": name,
            "version": version,
            "mount": dist.mount,
            "provider": dist.provider,
            "key": dist.key,
            "drift": "a Key Vault version of an engine key that the engine did not create",
            "disabled": disabled,
        },
    )
    log.warning(
        "drift: Key Vault %s key %s (engine key %s/%s) has version %s that this engine "
        "did not create%s",
        vault,
        name,
        dist.mount,
        dist.key,
        version,
        "; disabled it" if disabled else "",
    )
    return "drift, disabled" if disabled else "drift"


def _expiring(
    service: Any, dist: Any, event_type: str, name: str, version: str, engine_version: int | None
) -> str:
    if engine_version is None:
        log.warning(
            "%s for %s version %s, which the engine does not know", event_type, name, version
        )
        return "unknown version"
    key = service.keys.get(dist.mount, dist.key)
    if engine_version != key.latest_version:
        log.debug(
            "%s for %s v%d: already rotated (latest is %d)",
            event_type,
            name,
            engine_version,
            key.latest_version,
        )
        return "already rotated"
    new_version, warnings = service.keys.rotate(
        dist.mount, dist.key, expected_latest=engine_version
    )
    if not new_version:
        return "already rotated"
    log.info(
        "%s for %s v%d: rotated %s/%s to version %d",
        event_type,
        name,
        engine_version,
        dist.mount,
        dist.key,
        new_version,
    )
    for warning in warnings:
        log.warning("%s/%s: %s", dist.mount, dist.key, warning)
    return "rotated"
