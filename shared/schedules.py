"""The rotation sweep and the reconciler: what the timer triggers run."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

from shared.cleanup import cleanup
from shared.errors import EngineError
from shared.records import rfc3339, utcnow

if TYPE_CHECKING:
    from shared.records import Distribution
    from shared.service import Service

log = logging.getLogger(__name__)

# One run of each timer at a time across instances (Azure runs a timer on one instance, but a
# run by hand or a slow run can overlap the next): an overlapping run does nothing and says so,
# so each status row holds one run's honest numbers. A dead run's lock expires after this.
SWEEP_LOCK_SECONDS = 300
RECONCILE_LOCK_SECONDS = 900
TOKEN_TIDY_LOCK_SECONDS = 300


def rotation_sweep(
    service: Service, *, past_due: bool = False, now: dt.datetime | None = None
) -> dict[str, Any]:
    with service.store.lock("run:rotation", ttl=SWEEP_LOCK_SECONDS, wait=0) as held:
        if not held:
            log.info("rotation sweep: another run is in progress; this one does nothing")
            return {"skipped_run": "another rotation sweep is running"}
        return _rotation_sweep(service, past_due=past_due, now=now)


def _rotation_sweep(
    service: Service, *, past_due: bool = False, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Rotate every key whose next rotation time has come, once, and redistribute it.

    Reads only the due entries of the rotation index. Each rotation is conditioned on the
    key still holding the entry's slot, so overlapping sweeps, a late run and a rotation by
    hand at the same moment rotate a key once per due time. A failure is counted and left
    for the next run (its index entry stays).
    """
    started = time.monotonic()
    now = now or utcnow()  # the moment the sweep reads the due entries (tests pin it)
    store, keys = service.store, service.keys
    failures: list[str] = []

    def tampered(exc: Exception) -> None:
        failures.append(str(exc))

    due = store.due_rotations(now, on_tampered=tampered)
    rotated = skipped = 0
    failed = len(failures)
    warnings: list[str] = []
    for slot, mount, name in due:
        try:
            key = store.get_key(mount, name)
            if key is None or key.state != "active" or key.rotation_slot != slot:
                # A stale entry: the key moved on (rotated, rescheduled or deleted); one
                # already removed by another run is fine.
                store.drop_rotation_entry(slot)
                skipped += 1
                continue
            version, notes = keys.rotate(mount, name, expected_slot=slot, known=key)
            if version:
                rotated += 1
                warnings += [f"{mount}/{name}: {w}" for w in notes]
            else:
                skipped += 1
        except EngineError as exc:
            failed += 1
            failures.append(f"{mount}/{name}: {exc}")
            log.warning("rotation of %s/%s failed: %s", mount, name, exc)
        except Exception as exc:
            failed += 1
            failures.append(f"{mount}/{name}: internal error ({type(exc).__name__})")
            log.exception("rotation of %s/%s failed", mount, name)
    summary = {
        "time": rfc3339(now),
        "past_due": past_due,
        "due": len(due),
        "rotated": rotated,
        "skipped": skipped,
        "failed": failed,
        "duration_ms": int((time.monotonic() - started) * 1000),
        "warnings": warnings[:50],
        "failures": failures[:50],
    }
    log.info(
        "rotation sweep: due=%d rotated=%d skipped=%d failed=%d duration=%dms%s",
        len(due),
        rotated,
        skipped,
        failed,
        summary["duration_ms"],
        " (past due)" if past_due else "",
    )
    _save(service, "rotation", summary)
    return summary


def token_tidy(service: Service, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Remove tokens that have ended, with their descendants and index rows, and what dead
    creates and revocations left. Reads only the due entries of the expiry index: its cost
    grows with the tokens ending, not with the tokens held. Expired tokens are refused
    whether or not this has run; it only frees their rows."""
    with service.store.lock("run:token-tidy", ttl=TOKEN_TIDY_LOCK_SECONDS, wait=0) as held:
        if not held:
            log.info("token tidy: another run is in progress; this one does nothing")
            return {"skipped_run": "another token tidy is running"}
        started = time.monotonic()
        now = now or utcnow()
        summary = {"time": rfc3339(now), **service.tokens.tidy(now)}
        summary["duration_ms"] = int((time.monotonic() - started) * 1000)
        log.info(
            "token tidy: due=%d revoked=%d leftovers=%d stale=%d extended=%d failed=%d "
            "duration=%dms",
            summary["due"],
            summary["revoked"],
            summary["leftovers"],
            summary["stale"],
            summary["extended"],
            summary["failed"],
            summary["duration_ms"],
        )
        _save(service, "token-tidy", summary)
        return summary


def reconcile_all(service: Service) -> dict[str, Any]:
    """Finish pending distribution work everywhere, enforce enabled states, report drift,
    and clean up what a dead instance left (see ``cleanup``)."""
    with service.store.lock("run:reconcile", ttl=RECONCILE_LOCK_SECONDS, wait=0) as held:
        if not held:
            log.info("reconcile: another run is in progress; this one does nothing")
            return {"skipped_run": "another reconcile is running"}
        return _reconcile_all(service)


def _reconcile_all(service: Service) -> dict[str, Any]:
    started = time.monotonic()
    now = utcnow()
    reports: list[dict[str, Any]] = []

    def tampered(exc: Exception) -> None:
        reports.append(_failed_report(str(exc)))

    # Each distribution alone: one that fails (even unexpectedly) is reported, the rest run.
    for dist in service.store.all_distributions(on_tampered=tampered):
        try:
            reports.append(service.reconciler.reconcile(dist))
        except Exception as exc:
            log.exception("reconcile of %s/%s in %s failed", dist.mount, dist.key, dist.kms)
            reports.append(
                _failed_report(
                    f"internal error ({type(exc).__name__}); the server log has the details",
                    dist,
                )
            )
    cleaned = cleanup(service)
    drift = [
        {
            "mount": r["mount"],
            "provider": r["provider"],
            "key": r["key"],
            "name": r["name"],
            "drift": d,
        }
        for r in reports
        for d in r["drift"]
    ]
    summary = {
        "time": rfc3339(now),
        "distributions": len(reports),
        "imported": sum(len(r["imported"]) for r in reports),
        "enabled_changed": sum(len(r["enabled_changed"]) for r in reports),
        "removed": sum(1 for r in reports if r.get("removed")),
        "errors": sum(len(r["errors"]) for r in reports) + len(cleaned["errors"]),
        "cleanup_errors": cleaned["errors"][:50],
        "drift": drift,
        # what the granted permissions do not allow, per provider (the rest still ran)
        "missing_permissions": [
            {"mount": m, "provider": p, "missing": sorted(missing)}
            for (m, p), missing in sorted(_missing_permissions(reports).items())
        ],
        # distributions another instance was importing into: that one finishes them
        "busy": sum(1 for r in reports if r.get("busy")),
        "cleaned_up": cleaned["done"][:50],
        "duration_ms": int((time.monotonic() - started) * 1000),
        "details": [
            r
            for r in reports
            if r["imported"]
            or r["enabled_changed"]
            or r["drift"]
            or r["errors"]
            or r.get("removed")
            or r.get("missing_permissions")
        ][:50],
    }
    log.info(
        "reconcile: distributions=%d imported=%d enabled_changed=%d removed=%d "
        "drift=%d errors=%d duration=%dms",
        summary["distributions"],
        summary["imported"],
        summary["enabled_changed"],
        summary["removed"],
        len(drift),
        summary["errors"],
        summary["duration_ms"],
    )
    for item in drift:
        log.warning(
            "drift: %s/%s in %s (%s): %s",
            item["mount"],
            item["key"],
            item["provider"],
            item["name"],
            item["drift"],
        )
    _save(service, "reconcile", summary)
    return summary


def _failed_report(message: str, dist: Distribution | None = None) -> dict[str, Any]:
    return {
        "mount": dist.mount if dist else "",
        "provider": dist.kms if dist else "",
        "key": dist.key if dist else "",
        "name": dist.remote_name if dist else "",
        "imported": [],
        "enabled_changed": [],
        "drift": [],
        "errors": [message],
    }


def _missing_permissions(reports: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    missing: dict[tuple[str, str], set[str]] = {}
    for r in reports:
        if r.get("missing_permissions"):
            missing.setdefault((r["mount"], r["provider"]), set()).update(r["missing_permissions"])
    return missing


def _save(service: Service, name: str, summary: dict[str, Any]) -> None:
    try:
        service.store.put_status(name, summary)
    except Exception:  # the status is a report; losing it must not fail the run
        log.exception("could not save the %s status", name)
