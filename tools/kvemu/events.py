"""Event Grid (Event Grid schema) notifications to a webhook, posted off the request thread."""

from __future__ import annotations

import datetime
import json
import logging
import queue
import ssl
import threading
import urllib.request
import uuid
from typing import Any

logger = logging.getLogger(__name__)

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "kvemu"
EVENT_TYPES = ("KeyNewVersionCreated", "KeyNearExpiry", "KeyExpired")


def vault_topic(vault: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
        f"/providers/Microsoft.KeyVault/vaults/{vault}"
    )


def key_event(
    event_type: str,
    *,
    vault: str,
    key_id: str,
    name: str,
    version: str,
    nbf: int | None,
    exp: int | None,
) -> dict[str, Any]:
    """One event in Event Grid schema, with Key Vault's data fields."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}; use one of {EVENT_TYPES}")
    stamp = datetime.datetime.now(datetime.UTC)
    return {
        "id": str(uuid.uuid4()),
        "topic": vault_topic(vault),
        "subject": name,
        "eventType": f"Microsoft.KeyVault.{event_type}",
        "eventTime": stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",
        "data": {
            "Id": key_id,
            "VaultName": vault,
            "ObjectType": "Key",
            "ObjectName": name,
            "Version": version,
            "NBF": nbf,
            "EXP": exp,
        },
        "dataVersion": "1",
        "metadataVersion": "1",
    }


class EventPoster:
    """A daemon thread that POSTs queued events; failures are logged, never raised."""

    def __init__(self, webhook_url: str, *, ca_path: str | None = None, timeout: float = 10.0):
        self.webhook_url = webhook_url
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_path) if ca_path else None
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="kvemu-eventgrid", daemon=True)
        self._thread.start()

    def post(self, event: dict[str, Any]) -> None:
        self._queue.put(event)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=self._timeout + 1)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            body = json.dumps([event]).encode("utf-8")
            request = urllib.request.Request(  # noqa: S310 - the operator's webhook URL
                self.webhook_url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
            )
            try:
                with urllib.request.urlopen(  # noqa: S310
                    request, timeout=self._timeout, context=self._context
                ) as response:
                    response.read()
            except Exception as exc:  # the key operation never fails because of a webhook
                logger.warning(
                    "Event Grid post of %s for %s failed: %s",
                    event["eventType"],
                    event["subject"],
                    exc,
                )
