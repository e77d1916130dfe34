"""Key Vault events (Event Grid, system topic of a vault), in either schema.

Deliveries are at least once and unordered, so every handler is idempotent:
- ``KeyNewVersionCreated`` confirms our own imports; a version of one of our keys that the
  engine did not create is drift: recorded, logged, and disabled when a setting asks for it;
- ``KeyNearExpiry``/``KeyExpired`` on the newest version of an engine key rotate the key once:
  the rotation is conditioned on that version still being the latest, so a repeated or
  concurrent delivery finds it already rotated;
- anything else is ignored.

An event is a claim, not a fact: whoever can reach the webhook can send one. Nothing is done
on its word: the version is read from Key Vault first (it must exist; for an expiry, it must
be ours and its ``exp`` must really be near), one event rotates at most once and records at
most one drift row, and a malformed event is ignored.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.distribution import is_ours
from shared.errors import EngineError
from shared.records import rfc3339, utcnow

if TYPE_CHECKING:
    from shared.records import Distribution
    from shared.service import Service

log = logging.getLogger(__name__)

NEW_VERSION = "Microsoft.KeyVault.KeyNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.KeyNearExpiry"
EXPIRED = "Microsoft.KeyVault.KeyExpired"
# Key Vault sends KeyNearExpiry 30 days before a version's exp (learn.microsoft.com, "Azure
# Key Vault as Event Grid source"); a day of slack covers delivery delays and retries.
NEAR_EXPIRY_WINDOW = dt.timedelta(days=31)
EXPIRED_SLACK = dt.timedelta(minutes=5)
_VAULT = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9](\.managedhsm)?")
_KEY = re.compile(r"[0-9A-Za-z-]{1,127}")
_VERSION = re.compile(r"[0-9A-Za-z]{1,64}")


def handle(
    service: Service, event_type: str, data: Mapping[str, Any] | None, event_id: str = ""
) -> str:
    """Handle one event; returns what was done (for logs and tests)."""
    if event_type not in (NEW_VERSION, NEAR_EXPIRY, EXPIRED):
        log.debug("ignored event %s (%s)", event_type, event_id)
        return "ignored"
    data = data or {}
    vault, name, version = (data.get(f) for f in ("VaultName", "ObjectName", "Version"))
    if (
        data.get("ObjectType", "Key") != "Key"
        or not isinstance(vault, str)
        or not isinstance(name, str)
        or not isinstance(version, str)
        or not _VAULT.fullmatch(vault)
        or not _KEY.fullmatch(name)
        or not _VERSION.fullmatch(version)
    ):
        log.info("ignored event %s: no valid key, vault and version in it", event_type)
        return "ignored"
    dist = service.distribution.find_by_remote(vault, name)
    if dist is None:
        log.debug("event %s for %s/%s: not a key this engine distributed", event_type, vault, name)
        return "not ours"
    engine_version = next((v for v, vid in dist.versions.items() if vid == version), None)
    if event_type == NEW_VERSION:
        return _new_version(service, dist, vault, name, version, engine_version)
    return _expiring(service, dist, event_type, name, version, engine_version)


def _new_version(
    service: Service,
    dist: Distribution,
    vault: str,
    name: str,
    version: str,
    engine_version: int | None,
) -> str:
    if engine_version is not None:
        log.debug(
            "confirmed %s/%s version %s (engine version %d)", vault, name, version, engine_version
        )
        return "confirmed"
    _, client = service.kms.client(dist.mount, dist.kms)
    found = client.version(name, version)  # one read (``get``), not a listing
    if found is None:
        log.info(
            "event for %s/%s version %s, which Key Vault does not have: ignored",
            vault,
            name,
            version,
        )
        return "not in Key Vault"
    if is_ours(dist, found):
        log.debug("%s/%s version %s is our import, not yet recorded", vault, name, version)
        return "ours, pending"
    disabled = False
    if service.settings.disable_foreign_versions:
        try:
            client.set_enabled(name, version, False)
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
            "provider": dist.kms,
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
    service: Service,
    dist: Distribution,
    event_type: str,
    name: str,
    version: str,
    engine_version: int | None,
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
    why_not = _expiry_unconfirmed(service, dist, event_type, name, version, engine_version)
    if why_not:
        log.warning("%s for %s version %s not acted on: %s", event_type, name, version, why_not)
        return "not confirmed"
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


def _expiry_unconfirmed(
    service: Service,
    dist: Distribution,
    event_type: str,
    name: str,
    version: str,
    engine_version: int,
) -> str:
    """Why Key Vault does not bear the event out ("" when it does)."""
    _, client = service.kms.client(dist.mount, dist.kms)
    found = client.version(name, version)
    if found is None:
        return "Key Vault does not have that version"
    if not is_ours(dist, found, engine_version):
        return "that Key Vault version is not this engine's import of it"
    if found.expires_on is None:
        return "that version has no expiry date in Key Vault"
    now = utcnow()
    limit = now + (NEAR_EXPIRY_WINDOW if event_type == NEAR_EXPIRY else EXPIRED_SLACK)
    if found.expires_on > limit:
        return f"it expires {rfc3339(found.expires_on)} in Key Vault, not soon"
    return ""
