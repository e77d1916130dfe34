"""The Event Grid extension's webhook (Microsoft.Azure.WebJobs.Extensions.EventGrid) at
``/runtime/webhooks/eventgrid``: the CloudEvents handshake, subscription validation, delivery
of a batch, and the host's keys that guard it and the admin API."""

from __future__ import annotations

import hmac
import json
import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Request, Response

from tools.funchost.metadata import HostedFunction, call_function

log = logging.getLogger("funchost")

# Event Grid origins the extension echoes in WebHook-Allowed-Origin; any other gets the first.
EVENTGRID_ORIGINS = (
    "eventgrid.azure.net",
    "eventgrid.azure.us",
    "eventgrid.azure.eaglex.ic.gov",
    "eventgrid.azure.microsoft.scloud",
    "eventgrid.azure.cn",
)
# Where the real host reads a key from: this header, else the ``code`` query parameter
# (AuthenticationLevelHandler in azure-functions-host; the header wins when both are sent).
KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"
# At most this many invocations of one Event Grid delivery run at once.
EVENTGRID_CONCURRENCY = 32


def refuse(
    request: Request,
    *,
    master_key: str | None,
    eventgrid_key: str | None,
    master_only: bool,
) -> Response | None:
    """None when the request may go on; else Azure's answer to a missing or wrong key.

    The admin API takes the master key only; the Event Grid webhook its system key or the
    master key (the host's SystemKeyAuthLevel policy accepts admin level too). No key, or
    one that matches nothing, is 401; a valid key of too low a level is 403.
    """
    required = master_key if master_only else eventgrid_key
    if required is None:
        return None
    if KEY_HEADER in request.headers:
        presented = request.headers[KEY_HEADER]
    else:
        presented = request.args.get(KEY_QUERY, "")
    if _key_matches(presented, master_key):
        return None
    if _key_matches(presented, eventgrid_key):
        return None if not master_only else Response(status=403)
    return Response(status=401)


def webhook(request: Request, find: Callable[[str], HostedFunction | None]) -> Response:
    """Answer one request to the webhook; ``find`` gives the enabled Event Grid function of
    the ``functionName`` asked for, or None."""
    if request.method not in ("POST", "OPTIONS"):
        raise NotFound()
    name = request.args.get("functionName", "")
    function = find(name)
    if function is None:
        return Response(f"cannot find function: '{name}'", status=404)
    if request.method == "OPTIONS":
        # CloudEvents webhook abuse protection handshake.
        origin = request.headers.get("WebHook-Request-Origin", "")
        allowed = origin if origin in EVENTGRID_ORIGINS else EVENTGRID_ORIGINS[0]
        return Response(status=200, headers={"WebHook-Allowed-Origin": allowed})
    kind = request.headers.get("aeg-event-type", "").lower()
    if kind == "unsubscribe":
        return Response(status=202)
    if kind not in ("subscriptionvalidation", "notification"):
        return Response(status=400)
    try:
        body = json.loads(request.get_data() or b"null")
    except ValueError:
        return Response("body is not JSON", status=400)
    if kind == "subscriptionvalidation":
        code = _validation_code(body)
        if code is None:
            return Response("no validation code in the body", status=400)
        return Response(json.dumps({"validationResponse": code}), status=200)
    events = body if isinstance(body, list) else [body]
    if not events or not all(isinstance(e, dict) for e in events):
        return Response("body must be an event or an array of events", status=400)
    # Decoded first, as the extension binds the batch before any invocation: an event that
    # does not decode (a malformed eventTime, say) refuses the batch with 400, which Event
    # Grid does not retry, and the answer never carries the parser's message.
    decoded = []
    for index, event in enumerate(events):
        try:
            decoded.append(decode_event(event))
        except Exception as exc:
            log.warning("event %d of the batch is malformed: %s", index, type(exc).__name__)
            return Response(f"event {index} of the batch is malformed", status=400)
    # One invocation per event, all at once; 500 (Event Grid retries the whole batch) if
    # any failed, after all have run; 202 otherwise.
    errors = _run_concurrently(
        lambda obj: call_function(function.user_function, function.trigger_arg, obj, function.name),
        decoded,
        EVENTGRID_CONCURRENCY,
    )
    for error in errors:
        log.error(
            "function %s failed:\n%s",
            function.name,
            "".join(traceback.format_exception(error)),
        )
    if errors:
        # The details are in the log; the answer (to whoever posted) carries none.
        return Response(f"function {function.name} failed", status=500)
    return Response(status=202)


def decode_event(event: dict[str, Any]) -> Any:
    """An event as the function receives it."""
    # The library's own trigger converter: CloudEvent when the event has "specversion"
    # (extension attributes kept), EventGridEvent otherwise, times parsed as the worker does.
    return EventGridEventInConverter.decode(
        meta.Datum(json.dumps(event), "json"), trigger_metadata={}
    )


def _key_matches(presented: str, key: str | None) -> bool:
    # An empty key never matches: Azure treats it as no key at all.
    if key is None or not presented:
        return False
    return hmac.compare_digest(presented.encode(), key.encode())


def _run_concurrently(
    call: Callable[[Any], None], items: list[Any], limit: int
) -> list[BaseException]:
    """Run ``call`` on every item, at most ``limit`` at once; the exceptions raised, in the
    items' order.

    Daemon threads rather than a ThreadPoolExecutor, whose workers the interpreter joins at
    exit: a host told to stop must not wait for an invocation that is still running.
    """
    slots = threading.BoundedSemaphore(limit)
    outcomes: list[BaseException | None] = [None] * len(items)

    def run(index: int) -> None:
        try:
            call(items[index])
        except BaseException as exc:  # handed to the caller, who logs it
            outcomes[index] = exc
        finally:
            slots.release()

    threads = []
    for index in range(len(items)):
        slots.acquire()
        thread = threading.Thread(target=run, args=(index,), daemon=True, name="eventgrid-event")
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return [error for error in outcomes if error is not None]


def _validation_code(body: Any) -> str | None:
    """``data.validationCode`` of the first event (an array), or of a single object whose
    ``data`` may be double-encoded (a CloudEvents subscription event)."""
    event = body[0] if isinstance(body, list) and body else body
    if not isinstance(event, dict):
        return None
    data = event.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    code = data.get("validationCode") if isinstance(data, dict) else None
    return None if code is None else str(code)
