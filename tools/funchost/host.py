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
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
import threading
import traceback
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.timer import TimerRequest
from croniter import croniter
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

log = logging.getLogger("funchost")

# What "all methods" means for an HTTP trigger that declares none (Microsoft's answer in
# azure-docs #104685). Custom verbs such as LIST are not routed, as in Azure.
DEFAULT_METHODS = ("GET", "POST", "DELETE", "HEAD", "PATCH", "PUT", "OPTIONS", "TRACE")
_SETTING_REF = re.compile(r"%([^%]+)%")
_TEMPLATE_PART = re.compile(r"\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}")
# Event Grid origins the extension echoes in WebHook-Allowed-Origin; any other gets the first.
EVENTGRID_ORIGINS = (
    "eventgrid.azure.net",
    "eventgrid.azure.us",
    "eventgrid.azure.eaglex.ic.gov",
    "eventgrid.azure.microsoft.scloud",
    "eventgrid.azure.cn",
)


class _Constraint(BaseConverter):
    """An ASP.NET inline constraint: checks the segment, keeps the raw string (as Azure does)."""


def _constraint(pattern: str) -> type[BaseConverter]:
    return type("Constraint", (_Constraint,), {"regex": pattern})


_HEX = "[0-9A-Fa-f]"
_CONVERTERS: dict[str, type[BaseConverter]] = {
    "int": _constraint(r"-?\d+"),
    "long": _constraint(r"-?\d+"),
    "alpha": _constraint(r"[A-Za-z]+"),
    "bool": _constraint(r"(?i:true|false)"),
    "guid": _constraint(rf"(?:{_HEX}{{8}}-(?:{_HEX}{{4}}-){{3}}{_HEX}{{12}}|{_HEX}{{32}})"),
}
# A timer run that starts this much after its scheduled time reports past_due.
PAST_DUE_AFTER = dt.timedelta(seconds=5)
# Where the real host reads a key from: this header, else the ``code`` query parameter
# (AuthenticationLevelHandler in azure-functions-host; the header wins when both are sent).
KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"
# At most this many invocations of one Event Grid delivery run at once.
EVENTGRID_CONCURRENCY = 32


class HostError(RuntimeError):
    """The app cannot be hosted (bad route, schedule or setting), as the real host refuses."""


def load_local_settings(path: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Apply ``Values`` from local.settings.json to the environment, as Core Tools does.

    Variables already set in the environment win, so a shell or test can override a value.
    """
    environ = os.environ if environ is None else environ
    if not path.is_file():
        return {}
    values = json.loads(path.read_text()).get("Values") or {}
    applied = {}
    for name, value in values.items():
        if name not in environ:
            environ[name] = str(value)
            applied[name] = str(value)
    return applied


def resolve_setting_refs(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``%NAME%`` with the app setting NAME; a missing setting is an error."""
    environ = os.environ if environ is None else environ

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise HostError(f"app setting {name!r} (referenced as %{name}%) is not set")
        return environ[name]

    return _SETTING_REF.sub(sub, text)


def template_to_rules(template: str) -> list[tuple[str, dict[str, str]]]:
    """An ASP.NET route template → Werkzeug rule strings (with defaults).

    ``{name}`` → ``<name>``; ``{name:int}`` → ``<int:name>`` (a converter that checks the
    segment and keeps it as the raw string); ``{name?}`` and ``{*rest}`` also match without
    the segment, so each yields a second, shorter rule.
    """
    segments = [s for s in template.strip("/").split("/") if s]
    rules: list[tuple[str, dict[str, str]]] = []
    parts: list[str] = []
    for index, segment in enumerate(segments):
        match = _TEMPLATE_PART.fullmatch(segment)
        if match is None:
            if "{" in segment or "}" in segment:
                raise HostError(f"unsupported route segment {segment!r} in {template!r}")
            parts.append(segment)
            continue
        catch_all, name, constraint, optional = match.groups()
        if constraint is not None and constraint not in _CONVERTERS:
            raise HostError(f"unsupported route constraint {constraint!r} in {template!r}")
        last = index == len(segments) - 1
        if catch_all and not last:
            raise HostError(f"catch-all parameter must be last in {template!r}")
        if (catch_all or optional) and last:
            rules.append(("/" + "/".join(parts), {name: ""} if catch_all else {}))
        if catch_all:
            parts.append(f"<path:{name}>")
        else:
            parts.append(f"<{name}>" if constraint is None else f"<{constraint}:{name}>")
    rules.insert(0, ("/" + "/".join(parts), {}))
    return rules


@dataclass
class HostedFunction:
    name: str
    kind: str  # "http" | "timer" | "eventgrid" | other binding names
    user_function: Callable[..., Any]
    trigger_arg: str
    methods: tuple[str, ...] = ()
    route: str | None = None
    schedule: str | None = None
    run_on_startup: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def is_reserved_route(route: str) -> bool:
    """The real host refuses any route that starts with "admin" (a plain prefix test, so
    "administration" too); "runtime/" is ours as well, for the Event Grid webhook."""
    route = route.strip("/").lower()
    return route.startswith("admin") or route.split("/", 1)[0] == "runtime"


def describe_functions(app: func.FunctionApp) -> list[HostedFunction]:
    """Read the app's metadata once (``get_functions`` cannot be called twice)."""
    hosted = []
    for function in app.get_functions():
        trigger = function.get_trigger()
        binding = trigger.get_binding_name()
        common = {
            "name": function.get_function_name(),
            "user_function": function.get_user_function(),
            "trigger_arg": trigger.name,
        }
        if binding == "httpTrigger":
            methods = tuple(str(getattr(m, "value", m)).upper() for m in (trigger.methods or ()))
            route = trigger.route if trigger.route is not None else function.get_function_name()
            if is_reserved_route(route):
                raise HostError(
                    f"function {common['name']}: the specified route conflicts with one or more "
                    f"built in routes ({route!r})"
                )
            hosted.append(
                HostedFunction(
                    kind="http", methods=methods or DEFAULT_METHODS, route=route, **common
                )
            )
        elif binding == "timerTrigger":
            hosted.append(
                HostedFunction(
                    kind="timer",
                    schedule=trigger.schedule,
                    run_on_startup=bool(trigger.run_on_startup),
                    **common,
                )
            )
        elif binding == "eventGridTrigger":
            hosted.append(HostedFunction(kind="eventgrid", **common))
        else:
            hosted.append(HostedFunction(kind=binding, **common))
    return hosted


def load_app(app_dir: Path, module: str = "function_app") -> func.FunctionApp:
    """Import ``<app_dir>/<module>.py`` and return its module-level FunctionApp."""
    app_dir = app_dir.resolve()
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    spec = importlib.util.spec_from_file_location(module, app_dir / f"{module}.py")
    if spec is None or spec.loader is None:
        raise HostError(f"cannot load {app_dir / module}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)
    apps = [v for v in vars(mod).values() if isinstance(v, func.FunctionApp)]
    if len(apps) != 1:
        raise HostError(f"{module}.py must define exactly one FunctionApp, found {len(apps)}")
    return apps[0]


def read_route_prefix(app_dir: Path) -> str:
    host_json = app_dir / "host.json"
    if not host_json.exists():
        return "api"
    config = json.loads(host_json.read_text())
    prefix = config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return prefix.strip("/")


def _call(fn: Callable[..., Any], arg_name: str, value: Any, function_name: str) -> Any:
    kwargs: dict[str, Any] = {arg_name: value}
    if "context" in inspect.signature(fn).parameters:
        kwargs["context"] = _Context(function_name)
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


class _Context:
    """The parts of ``func.Context`` our functions may read."""

    def __init__(self, function_name: str) -> None:
        self.invocation_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_directory = ""
        self.trace_context = None
        self.retry_context = None


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
        self._stop = threading.Event()
        self._timer_threads: list[threading.Thread] = []
        self.timer_runs: dict[str, int] = {}

    # -- HTTP ---------------------------------------------------------------------------------

    def _build_url_map(self) -> Map:
        rules = []
        prefix = f"/{self.route_prefix}" if self.route_prefix else ""
        for function in self.functions.values():
            if function.kind != "http" or self.disabled(function.name):
                continue
            for rule, defaults in template_to_rules(function.route or ""):
                path = (prefix + rule).rstrip("/") or "/"
                werkzeug_rule = Rule(
                    path,
                    endpoint=function.name,
                    methods=list(function.methods),
                    defaults=defaults or None,
                    strict_slashes=False,
                )
                # Werkzeug adds HEAD wherever GET is; Azure routes only the declared methods.
                werkzeug_rule.methods = set(function.methods)
                rules.append(werkzeug_rule)
        return Map(
            rules,
            strict_slashes=False,
            merge_slashes=False,
            redirect_defaults=False,
            converters=_CONVERTERS,
        )

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
        adapter = self._url_map.bind_to_environ(request.environ)
        normalized = path.rstrip("/") or "/"
        method = request.method.upper()
        try:
            endpoint, values = adapter.match(normalized, method=method)
        except MethodNotAllowed:
            # The real host answers 404 for a known route with an undeclared method
            # (azure-functions-host #10098).
            raise NotFound() from None
        return self._invoke_http(self.functions[endpoint], request, values)

    def _invoke_http(
        self, function: HostedFunction, request: Request, values: Mapping[str, Any]
    ) -> Response:
        route_params = {k: str(v) for k, v in values.items()}
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            key = key.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        req = func.HttpRequest(
            method=request.method.upper(),
            url=request.url,
            headers=headers,
            params=dict(request.args.items()),
            route_params=route_params,
            body=request.get_data(cache=False),
        )
        try:
            result = _call(function.user_function, function.trigger_arg, req, function.name)
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
        """None when the request may go on; else Azure's answer to a missing or wrong key.

        The admin API takes the master key only; the Event Grid webhook its system key or the
        master key (the host's SystemKeyAuthLevel policy accepts admin level too). No key, or
        one that matches nothing, is 401; a valid key of too low a level is 403.
        """
        required = self._master_key if master_only else self._eventgrid_key
        if required is None:
            return None
        if KEY_HEADER in request.headers:
            presented = request.headers[KEY_HEADER]
        else:
            presented = request.args.get(KEY_QUERY, "")
        if _key_matches(presented, self._master_key):
            return None
        if _key_matches(presented, self._eventgrid_key):
            return None if not master_only else Response(status=403)
        return Response(status=401)

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
                obj = self._decode_event(event)
            except Exception:
                return Response("input is not a valid event", status=400)
            _call(function.user_function, function.trigger_arg, obj, function.name)
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
        if request.method not in ("POST", "OPTIONS"):
            raise NotFound()
        name = request.args.get("functionName", "")
        function = self._lookup(name)
        if function is None or function.kind != "eventgrid" or self.disabled(function.name):
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
                decoded.append(self._decode_event(event))
            except Exception as exc:
                log.warning("event %d of the batch is malformed: %s", index, type(exc).__name__)
                return Response(f"event {index} of the batch is malformed", status=400)
        # One invocation per event, all at once; 500 (Event Grid retries the whole batch) if
        # any failed, after all have run; 202 otherwise.
        errors = _run_concurrently(
            lambda obj: _call(function.user_function, function.trigger_arg, obj, function.name),
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

    @staticmethod
    def _decode_event(event: dict[str, Any]) -> Any:
        # The library's own trigger converter: CloudEvent when the event has "specversion"
        # (extension attributes kept), EventGridEvent otherwise, times parsed as the worker does.
        return EventGridEventInConverter.decode(
            meta.Datum(json.dumps(event), "json"), trigger_metadata={}
        )

    # -- timers -------------------------------------------------------------------------------

    def timer_schedule(self, name: str) -> str:
        function = self.functions[name]
        schedule = resolve_setting_refs(function.schedule or "", self.environ)
        if len(schedule.split()) != 6:
            raise HostError(
                f"timer {name}: schedule {schedule!r} must have six NCRONTAB fields "
                "({second} {minute} {hour} {day} {month} {day-of-week})"
            )
        if not croniter.is_valid(schedule, second_at_beginning=True):
            raise HostError(f"timer {name}: invalid NCRONTAB schedule {schedule!r}")
        return schedule

    def disabled(self, name: str) -> bool:
        """``AzureWebJobs.<name>.Disabled``: no route, no webhook, no schedule."""
        flag = self.environ.get(f"AzureWebJobs.{name}.Disabled", "")
        return flag.strip().lower() in ("1", "true")

    def run_timer(self, name: str, *, past_due: bool) -> None:
        function = self.functions[name]
        timer = TimerRequest(past_due=past_due)
        self.timer_runs[name] = self.timer_runs.get(name, 0) + 1
        try:
            _call(function.user_function, function.trigger_arg, timer, name)
        except Exception:
            log.error("timer %s failed:\n%s", name, traceback.format_exc())

    def _timer_loop(self, name: str, schedule: str) -> None:
        if self.functions[name].run_on_startup:
            self.run_timer(name, past_due=False)
        due = next_due(schedule, None, dt.datetime.now(dt.UTC))
        while not self._stop.is_set():
            wait = (due - dt.datetime.now(dt.UTC)).total_seconds()
            if wait > 0 and self._stop.wait(wait):
                return
            self.run_timer(name, past_due=is_past_due(due, dt.datetime.now(dt.UTC)))
            due = next_due(schedule, due, dt.datetime.now(dt.UTC))

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
                yield f"{function.name}: [{','.join(function.methods)}] {prefix}/{function.route}"
            elif function.kind == "timer":
                yield f"{function.name}: timerTrigger {function.schedule}"
            elif function.kind == "eventgrid":
                yield (
                    f"{function.name}: eventGridTrigger "
                    f"/runtime/webhooks/eventgrid?functionName={function.name}"
                )
            else:
                yield f"{function.name}: {function.kind}"


def is_past_due(
    due: dt.datetime, now: dt.datetime, threshold: dt.timedelta = PAST_DUE_AFTER
) -> bool:
    """Whether a run for the occurrence ``due`` starting at ``now`` reports past_due."""
    return now - due > threshold


def next_due(schedule: str, due: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """The occurrence to run next, after the run for ``due`` ended at ``now``.

    Occurrences missed while that run went on collapse into one: the latest of them, run at
    once (and past due if it is late enough); otherwise the next occurrence after ``now``.
    """
    if due is not None:
        latest = croniter(schedule, now, second_at_beginning=True).get_prev(dt.datetime)
        if latest > due:
            return latest
    return croniter(schedule, now, second_at_beginning=True).get_next(dt.datetime)


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


# The method and path as sent, re-quoted, so a control character in them cannot break the log
# line or colour it.
_PATH_SAFE = "/:@!$&'()*+,;="


def _log_request(request: Request, response: Response) -> None:
    """One line per request: method, path (never the query string: it may carry ``code``),
    status, and for a failure the ``errors`` of a Vault-style JSON body. Never the request
    body, nor any other part of the response."""
    method = urllib.parse.quote(request.method, safe="")
    path = urllib.parse.quote(request.path, safe=_PATH_SAFE)
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
