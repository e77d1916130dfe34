"""Event Grid trigger for the Key Vault system topic (Event Grid or CloudEvents schema)."""

import logging

import azure.functions as func

from shared import events, service

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.event_grid_trigger(arg_name="event")
def keyvault_events(event: func.EventGridEvent) -> None:
    # The worker hands a CloudEvent when the subscription uses the CloudEvents schema.
    event_type = getattr(event, "event_type", None) or getattr(event, "type", "")
    try:
        data = event.get_json()
    except ValueError:
        data = None
    outcome = events.handle(
        service.get(),
        event_type,
        data if isinstance(data, dict) else None,
        event_id=getattr(event, "id", "") or "",
    )
    log.info("event %s %s: %s", event_type, getattr(event, "id", ""), outcome)
