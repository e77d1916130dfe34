"""Event Grid trigger for the Key Vault system topic (Event Grid or CloudEvents schema)."""

import logging

import azure.functions as func

from shared import events, service
from shared.errors import EngineError

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions is untyped
log = logging.getLogger(__name__)


@bp.event_grid_trigger(arg_name="event")
def keyvault_events(event: func.EventGridEvent) -> None:
    # The worker hands a CloudEvent when the subscription uses the CloudEvents schema.
    event_type = getattr(event, "event_type", None) or getattr(event, "type", "")
    try:
        data = event.get_json()
    except ValueError:
        data = None
    try:
        outcome = events.handle(
            service.get(),
            str(event_type or ""),
            data if isinstance(data, dict) else None,
            event_id=getattr(event, "id", "") or "",
        )
    except EngineError as exc:
        if exc.status >= 500 or exc.status == 429:
            raise  # passing: Event Grid delivers the event again later
        # A refusal that a new delivery would meet again: acknowledged, and said.
        log.warning("event %s %s not acted on: %s", event_type, getattr(event, "id", ""), exc)
        return
    log.info("event %s %s: %s", event_type, getattr(event, "id", ""), outcome)
