"""A small local Azure Functions host for the Python v2 programming model.

Azure Functions Core Tools cannot be installed on our machines, so this adapts the app's own
function metadata (``app.get_functions()``) onto Werkzeug: HTTP triggers at
``/<routePrefix>/<route>``, timer triggers on their NCRONTAB schedules, the admin endpoint that
invokes non-HTTP functions, and the Event Grid webhook. It is a thin adapter, not a framework:
everything it knows comes from ``function_app.py`` and ``host.json``.

Differences from the real host are deliberate and few (see docs/local-host.md): no function
keys are enforced, and ``/admin/functions/<name>`` runs the function before answering 202.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest
from croniter import croniter
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

log = logging.getLogger("funchost")

# What "all methods" means for an HTTP trigger that declares none (Microsoft's answer in
# azure-docs #104685). Custom verbs such as LIST are not routed, as in Azure.
DEFAULT_METHODS = ("GET", "POST", "DELETE", "HEAD", "PATCH", "PUT", "OPTIONS", "TRACE")
RESERVED_FIRST_SEGMENTS = ("admin", "runtime")
_SETTING_REF = re.compile(r"%([^%]+)%")
_TEMPLATE_PART = re.compile(r"\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}")
_CONSTRAINTS = {None: "default", "alpha": "default", "int": "int", "guid": "uuid", "long": "int"}
# A timer run that starts this much after its scheduled time reports past_due.
PAST_DUE_AFTER = dt.timedelta(seconds=5)


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

    ``{name}`` → ``<name>``; ``{name:int}`` → ``<int:name>``; ``{name?}`` and ``{*rest}`` also
    match without the segment, so each yields a second, shorter rule.
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
        if constraint not in _CONSTRAINTS:
            raise HostError(f"unsupported route constraint {constraint!r} in {template!r}")
        last = index == len(segments) - 1
        if catch_all and not last:
            raise HostError(f"catch-all parameter must be last in {template!r}")
        if (catch_all or optional) and last:
            rules.append(("/" + "/".join(parts), {name: ""} if catch_all else {}))
        if catch_all:
            parts.append(f"<path:{name}>")
        else:
            converter = _CONSTRAINTS[constraint]
            parts.append(f"<{name}>" if converter == "default" else f"<{converter}:{name}>")
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
            first = route.strip("/").split("/", 1)[0].lower()
            if first in RESERVED_FIRST_SEGMENTS:
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
    ) -> None:
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
            if function.kind != "http":
                continue
            for rule, defaults in template_to_rules(function.route or ""):
                path = (prefix + rule).rstrip("/") or "/"
                rules.append(
                    Rule(
                        path,
                        endpoint=function.name,
                        methods=list(function.methods),
                        defaults=defaults or None,
                        strict_slashes=False,
                    )
                )
        return Map(rules, strict_slashes=False, merge_slashes=False)

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except HTTPException as exc:
            response = exc.get_response()
        return response(environ, start_response)

    __call__ = wsgi_app

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/admin/functions/"):
            return self._admin_invoke(request, path.removeprefix("/admin/functions/"))
        if path.rstrip("/") == "/runtime/webhooks/eventgrid":
            return self._eventgrid(request)
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
        headers = {k.lower(): v for k, v in request.headers.items()}
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
            headers = dict(result.headers.items())
            response = Response(
                b"" if head else result.get_body(),
                status=result.status_code,
                headers=headers,
            )
            if "content-type" not in {k.lower() for k in headers}:
                mimetype = result.mimetype or "text/plain"
                charset = result.charset or "utf-8"
                response.headers["Content-Type"] = f"{mimetype}; charset={charset}"
            return response
        if result is None:
            return Response(status=204)
        body = result if isinstance(result, (bytes, str)) else json.dumps(result)
        return Response(b"" if head else body, status=200, mimetype="text/plain")

    # -- admin and Event Grid -----------------------------------------------------------------

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
            self._deliver_event(function, event)
        else:
            return Response(f"{function.kind} functions are not supported here", status=400)
        return Response(status=202)

    def _lookup(self, name: str) -> HostedFunction | None:
        for function in self.functions.values():
            if function.name.lower() == name.lower():
                return function
        return None

    def _eventgrid(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            # CloudEvents webhook abuse protection handshake.
            origin = request.headers.get("WebHook-Request-Origin", "*")
            return Response(
                status=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"}
            )
        if request.method != "POST":
            raise NotFound()
        function = self._lookup(request.args.get("functionName", ""))
        if function is None or function.kind != "eventgrid":
            return Response("function not found", status=404)
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            return Response("body is not JSON", status=400)
        events = body if isinstance(body, list) else [body]
        if not all(isinstance(e, dict) for e in events):
            return Response("body must be an event or an array of events", status=400)
        kind = request.headers.get("aeg-event-type", "Notification")
        if kind == "SubscriptionValidation":
            for event in events:
                if event.get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent":
                    code = (event.get("data") or {}).get("validationCode")
                    return Response(
                        json.dumps({"validationResponse": code}), mimetype="application/json"
                    )
            return Response("no validation event in the body", status=400)
        if kind != "Notification":
            return Response(f"unsupported aeg-event-type {kind!r}", status=400)
        for event in events:
            try:
                self._deliver_event(function, event)
            except Exception:
                log.error("function %s failed:\n%s", function.name, traceback.format_exc())
                return Response(status=500)
        return Response(status=200)

    def _deliver_event(self, function: HostedFunction, event: dict[str, Any]) -> None:
        if "specversion" in event:
            data = event.get("data")
            obj: Any = func.CloudEvent(
                id=event.get("id"),
                source=event.get("source"),
                type=event.get("type"),
                specversion=event.get("specversion"),
                time=_parse_time(event.get("time")),
                subject=event.get("subject"),
                datacontenttype=event.get("datacontenttype"),
                dataschema=event.get("dataschema"),
                data=data,
            )
        else:
            obj = func.EventGridEvent(
                id=event.get("id", ""),
                data=event.get("data") or {},
                topic=event.get("topic", ""),
                subject=event.get("subject", ""),
                event_type=event.get("eventType", ""),
                event_time=_parse_time(event.get("eventTime")),
                data_version=event.get("dataVersion", ""),
            )
        _call(function.user_function, function.trigger_arg, obj, function.name)

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

    def timer_disabled(self, name: str) -> bool:
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
        due = croniter(schedule, dt.datetime.now(dt.UTC), second_at_beginning=True).get_next(
            dt.datetime
        )
        while not self._stop.is_set():
            wait = (due - dt.datetime.now(dt.UTC)).total_seconds()
            if wait > 0 and self._stop.wait(wait):
                return
            now = dt.datetime.now(dt.UTC)
            self.run_timer(name, past_due=now - due > PAST_DUE_AFTER)
            # Occurrences missed while the run went on collapse into one immediate, past-due
            # run, as the real host does; otherwise wait for the next one.
            now = dt.datetime.now(dt.UTC)
            latest = croniter(schedule, now, second_at_beginning=True).get_prev(dt.datetime)
            if latest > due:
                due = latest
            else:
                due = croniter(schedule, now, second_at_beginning=True).get_next(dt.datetime)

    def start_timers(self) -> list[str]:
        started = []
        for function in self.functions.values():
            if function.kind != "timer":
                continue
            schedule = self.timer_schedule(function.name)
            if self.timer_disabled(function.name):
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


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
