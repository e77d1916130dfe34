"""The app's function metadata: what ``function_app.py`` declares (``get_functions()``),
``host.json``'s route prefix, the app settings of local.settings.json and ``%NAME%``
references to them, and how a function is called."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

from tools.funchost.errors import HostError
from tools.funchost.routing import is_reserved_route

# What an HTTP trigger that declares no methods answers: every verb, LIST and other custom ones
# included. The host adds an HttpMethodRouteConstraint only when the trigger has methods
# (azure-functions-host, WebScriptHostHttpRoutesManager.InitializeHttpFunctionRoutes); the
# "methods" key is then absent from the function's JSON. () stands for that here.
ALL_METHODS: tuple[str, ...] = ()
_SETTING_REF = re.compile(r"%([^%]+)%")


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


@dataclass
class HostedFunction:
    name: str
    kind: str  # "http" | "timer" | "eventgrid" | other binding names
    user_function: Callable[..., Any]
    trigger_arg: str
    methods: tuple[str, ...] = ()  # () for every method (none declared)
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
            if is_reserved_route(route):
                raise HostError(
                    f"function {common['name']}: the specified route conflicts with one or more "
                    f"built in routes ({route!r})"
                )
            hosted.append(
                HostedFunction(kind="http", methods=methods or ALL_METHODS, route=route, **common)
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


@functools.cache
def _takes_context(fn: Callable[..., Any]) -> bool:
    # Once per function, not per call: inspect.signature is most of the cost of a call.
    return "context" in inspect.signature(fn).parameters


def call_function(fn: Callable[..., Any], arg_name: str, value: Any, function_name: str) -> Any:
    kwargs: dict[str, Any] = {arg_name: value}
    if _takes_context(fn):
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
