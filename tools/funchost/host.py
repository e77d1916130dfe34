"""A small local Azure Functions host for the Python v2 programming model.

Azure Functions Core Tools cannot be installed on our machines, so this adapts the app's own
function metadata (``app.get_functions()``) onto Werkzeug: HTTP triggers at
``/<routePrefix>/<route>``, timer triggers on their NCRONTAB schedules, the admin endpoint that
invokes non-HTTP functions, and the Event Grid webhook. It is a thin adapter, not a framework:
everything it knows comes from ``function_app.py`` and ``host.json``.

Where Azure's behaviour is known it is copied (404 for an undeclared method, Event Grid's
status codes, the worker's own converters, the master and Event Grid system keys when they are
given); the deliberate differences are few and listed in docs/local-host.md: no function keys,
``/admin/functions/<name>`` runs the function before answering 202, no timer singleton across
processes, a local past-due rule.

This module composes the host; its parts live beside it: ``metadata`` (what the app declares,
settings), ``routing`` (route templates as Werkzeug rules), ``eventgrid`` (the webhook and the
host's keys) and ``timers`` (schedules and their loop).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map
from werkzeug.wrappers import Request, Response

from tools.funchost import eventgrid, timers
from tools.funchost.errors import HostError
from tools.funchost.eventgrid import (
    EVENTGRID_CONCURRENCY,
    EVENTGRID_ORIGINS,
    KEY_HEADER,
    KEY_QUERY,
    decode_event,
)
from tools.funchost.metadata import (
    ALL_METHODS,
    HostedFunction,
    call_function,
    describe_functions,
    load_app,
    load_local_settings,
    read_route_prefix,
    resolve_setting_refs,
)
from tools.funchost.routing import (
    _CONVERTERS,
    build_url_map,
    is_reserved_route,
    template_to_rules,
)
from tools.funchost.timers import PAST_DUE_AFTER, is_past_due, next_due

# The names this module had before it was split: other code imports them from here.
__all__ = [
    "ALL_METHODS",
    "EVENTGRID_CONCURRENCY",
    "EVENTGRID_ORIGINS",
    "KEY_HEADER",
    "KEY_QUERY",
    "PAST_DUE_AFTER",
    "_CONVERTERS",
    "FunctionHost",
    "HostError",
    "HostedFunction",
    "describe_functions",
    "is_past_due",
    "is_reserved_route",
    "load_app",
    "load_local_settings",
    "next_due",
    "read_route_prefix",
    "resolve_setting_refs",
    "template_to_rules",
]

log = logging.getLogger("funchost")

# Route matches remembered (most recent first), and the longest path remembered: a read of
# the same key matches once, and no request can make the cache hold much.
_MATCH_CACHE = 4096
_MATCH_CACHED_PATH = 512


class FunctionHost:
    """Serves one FunctionApp: a WSGI application plus timer threads."""

    def __init__(
        self,
        app: func.FunctionApp,
        route_prefix: str = "api",
        environ: Mapping[str, str] | None = None,
        *,
        master_key: str | None = None,
        eventgrid_key: str | None = None,
    ) -> None:
        """``master_key`` guards ``/admin/functions/...`` and ``eventgrid_key`` (the
        ``eventgrid_extension`` system key) the Event Grid webhook, as in Azure; None leaves
        that endpoint open, as Core Tools does."""
        for name, key in (("master key", master_key), ("Event Grid key", eventgrid_key)):
            if key is not None and not key:
                raise HostError(f"the {name} is empty; give a value or none at all")
        self._master_key = master_key
        self._eventgrid_key = eventgrid_key
        self.environ = os.environ if environ is None else environ
        self.route_prefix = route_prefix.strip("/")
        self.functions = {f.name: f for f in describe_functions(app)}
        self._url_map = self._build_url_map()
        # The rules match no host, so one adapter serves every request; and the map is fixed
        # once built, so a path and method always match the same function: remembered.
        self._adapter = self._url_map.bind("localhost")
        self._match = functools.lru_cache(maxsize=_MATCH_CACHE)(self._match_route)
        self._stop = threading.Event()
        self._timer_threads: list[threading.Thread] = []
        self.timer_runs: dict[str, int] = {}

    # -- HTTP ---------------------------------------------------------------------------------

    def _build_url_map(self) -> Map:
        return build_url_map(self.functions.values(), self.route_prefix, self.disabled)

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except HTTPException as exc:
            response = exc.get_response()
        _log_request(request, response)
        return response(environ, start_response)

    __call__ = wsgi_app

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        # Azure checks the key before it looks at the function, method or body.
        if path.startswith("/admin/functions/"):
            refused = self._refuse(request, master_only=True)
            return refused or self._admin_invoke(request, path.removeprefix("/admin/functions/"))
        if path.rstrip("/") == "/runtime/webhooks/eventgrid":
            return self._refuse(request, master_only=False) or self._eventgrid(request)
        normalized = path.rstrip("/") or "/"
        method = request.method.upper()
        match = (
            self._match(normalized, method)
            if len(normalized) <= _MATCH_CACHED_PATH
            else self._match_route(normalized, method)
        )
        if match is None:
            raise NotFound()
        endpoint, values = match
        return self._invoke_http(self.functions[endpoint], request, values)

    def _match_route(self, path: str, method: str) -> tuple[str, Mapping[str, Any]] | None:
        """The function and route values for ``path``, or None for 404. A known route with an
        undeclared method is 404 too, as the real host answers (azure-functions-host #10098)."""
        try:
            endpoint, values = self._adapter.match(path, method=method)
        except (NotFound, MethodNotAllowed):
            return None
        return str(endpoint), values

    def _invoke_http(
        self, function: HostedFunction, request: Request, values: Mapping[str, Any]
    ) -> Response:
        route_params = {k: str(v) for k, v in values.items()}
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            key = key.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        headers.update(_front_end_headers(request, headers))
        req = func.HttpRequest(
            method=request.method.upper(),
            url=request.url,
            headers=headers,
            params=dict(request.args.items()),
            route_params=route_params,
            body=request.get_data(cache=False),
        )
        try:
            result = call_function(function.user_function, function.trigger_arg, req, function.name)
        except Exception:
            log.error("function %s failed:\n%s", function.name, traceback.format_exc())
            return Response(status=500)
        return self._to_response(result, request.method.upper() == "HEAD")

    @staticmethod
    def _to_response(result: Any, head: bool) -> Response:
        if isinstance(result, func.HttpResponse):
            # Repeated headers (Set-Cookie, Vary) stay repeated.
            response = Response(
                b"" if head else result.get_body(),
                status=result.status_code,
                headers=list(result.headers.items()),
            )
            if "content-type" not in result.headers:
                # As azure.functions' HttpResponseConverter: a charset only for text/*.
                mimetype = result.mimetype or "text/plain"
                if mimetype.startswith("text/"):
                    mimetype = f"{mimetype}; charset={result.charset or 'utf-8'}"
                response.headers["Content-Type"] = mimetype
            return response
        if result is None:
            return Response(status=204)
        body = result if isinstance(result, (bytes, str)) else json.dumps(result)
        return Response(b"" if head else body, status=200, mimetype="text/plain")

    # -- admin and Event Grid -----------------------------------------------------------------

    def _refuse(self, request: Request, *, master_only: bool) -> Response | None:
        return eventgrid.refuse(
            request,
            master_key=self._master_key,
            eventgrid_key=self._eventgrid_key,
            master_only=master_only,
        )

    def _admin_invoke(self, request: Request, name: str) -> Response:
        if request.method != "POST":
            raise NotFound()
        function = self._lookup(name)
        if function is None or function.kind == "http":
            raise NotFound()
        if function.kind == "timer":
            self.run_timer(function.name, past_due=False)
        elif function.kind == "eventgrid":
            payload = request.get_json(silent=True) or {}
            event = payload.get("input")
            event = json.loads(event) if isinstance(event, str) else event
            if not isinstance(event, dict):
                return Response("input must be one event object", status=400)
            try:
                obj = decode_event(event)
            except Exception:
                return Response("input is not a valid event", status=400)
            call_function(function.user_function, function.trigger_arg, obj, function.name)
        else:
            return Response(f"{function.kind} functions are not supported here", status=400)
        return Response(status=202)

    def _lookup(self, name: str) -> HostedFunction | None:
        for function in self.functions.values():
            if function.name.lower() == name.lower():
                return function
        return None

    def _eventgrid(self, request: Request) -> Response:
        """The Event Grid extension's webhook (Microsoft.Azure.WebJobs.Extensions.EventGrid)."""
        return eventgrid.webhook(request, self._eventgrid_function)

    def _eventgrid_function(self, name: str) -> HostedFunction | None:
        function = self._lookup(name)
        if function is None or function.kind != "eventgrid" or self.disabled(function.name):
            return None
        return function

    # -- timers -------------------------------------------------------------------------------

    def timer_schedule(self, name: str) -> str:
        return timers.resolve_schedule(name, self.functions[name].schedule or "", self.environ)

    def disabled(self, name: str) -> bool:
        """``AzureWebJobs.<name>.Disabled``: no route, no webhook, no schedule."""
        flag = self.environ.get(f"AzureWebJobs.{name}.Disabled", "")
        return flag.strip().lower() in ("1", "true")

    def run_timer(self, name: str, *, past_due: bool) -> None:
        function = self.functions[name]
        timer = TimerRequest(past_due=past_due)
        self.timer_runs[name] = self.timer_runs.get(name, 0) + 1
        try:
            call_function(function.user_function, function.trigger_arg, timer, name)
        except Exception:
            log.error("timer %s failed:\n%s", name, traceback.format_exc())

    def _timer_loop(self, name: str, schedule: str) -> None:
        timers.run_loop(
            lambda past_due: self.run_timer(name, past_due=past_due),
            schedule,
            run_on_startup=self.functions[name].run_on_startup,
            stop=self._stop,
        )

    def start_timers(self) -> list[str]:
        started = []
        for function in self.functions.values():
            if function.kind != "timer":
                continue
            schedule = self.timer_schedule(function.name)
            if self.disabled(function.name):
                log.info(
                    "timer %s is disabled by AzureWebJobs.%s.Disabled", function.name, function.name
                )
                continue
            thread = threading.Thread(
                target=self._timer_loop,
                args=(function.name, schedule),
                name=f"timer-{function.name}",
                daemon=True,
            )
            thread.start()
            self._timer_threads.append(thread)
            started.append(f"{function.name} [{schedule}]")
        return started

    def stop(self) -> None:
        self._stop.set()

    def describe(self) -> Iterable[str]:
        prefix = f"/{self.route_prefix}" if self.route_prefix else ""
        for function in self.functions.values():
            if function.kind == "http":
                methods = ",".join(function.methods) or "all"  # as the host's route log says
                yield f"{function.name}: [{methods}] {prefix}/{function.route}"
            elif function.kind == "timer":
                yield f"{function.name}: timerTrigger {function.schedule}"
            elif function.kind == "eventgrid":
                yield (
                    f"{function.name}: eventGridTrigger "
                    f"/runtime/webhooks/eventgrid?functionName={function.name}"
                )
            else:
                yield f"{function.name}: {function.kind}"


# The method and path as sent, re-quoted, so a control character in them cannot break the log
# line or colour it.
_PATH_SAFE = "/:@!$&'()*+,;="
# What quote() leaves as it is, so the common request skips it: letters, digits, "_.-~" and
# the safe characters above (not "%", which quote() escapes).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/:@!$&'()*+,;=-]*")
_PLAIN_METHOD = re.compile(r"[A-Za-z0-9_.~-]*")


def _log_request(request: Request, response: Response) -> None:
    """One line per request: method, path (never the query string: it may carry ``code``),
    status, and for a failure the ``errors`` of a Vault-style JSON body. Never the request
    body, nor any other part of the response."""
    method = request.method
    if not _PLAIN_METHOD.fullmatch(method):
        method = urllib.parse.quote(method, safe="")
    path = request.path
    if not _PLAIN_PATH.fullmatch(path):
        path = urllib.parse.quote(path, safe=_PATH_SAFE)
    status = response.status_code
    if status < 400:
        log.info("%s %s %s", method, path, status)
        return
    messages = _error_messages(response)
    if messages:
        # JSON-encoded, so newlines and escape sequences in a message stay inert.
        log.warning("%s %s %s errors=%s", method, path, status, json.dumps(messages))
    else:
        log.warning("%s %s %s", method, path, status)


def _error_messages(response: Response) -> list[str]:
    """The ``errors`` list of a JSON error body (Vault's envelope, written to be shown)."""
    if response.is_streamed or response.mimetype != "application/json":
        return []
    try:
        body = json.loads(response.get_data())
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [e for e in errors if isinstance(e, str)]


def _front_end_headers(request: Request, headers: Mapping[str, str]) -> dict[str, str]:
    """What App Service's front end adds for the peer it accepted the connection from: the
    ``client-ip`` header (``ip:port``, replacing any a client sent) and the same ``ip:port``
    appended to ``X-Forwarded-For`` (Azure/app-service-linux-docs
    Things_You_Should_Know/headers.md; docs/auth.md)."""
    peer = request.remote_addr or ""
    if not peer:
        return {}
    port = request.environ.get("REMOTE_PORT", "0")
    entry = f"[{peer}]:{port}" if ":" in peer else f"{peer}:{port}"
    forwarded = headers.get("x-forwarded-for")
    return {
        "client-ip": entry,
        "x-forwarded-for": f"{forwarded}, {entry}" if forwarded else entry,
    }
