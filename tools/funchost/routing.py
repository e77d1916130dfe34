"""HTTP routes: ASP.NET route templates as Werkzeug rules, their inline constraints, and the
routes the host keeps for itself."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from werkzeug.routing import BaseConverter, Map, Rule

from tools.funchost.errors import HostError

if TYPE_CHECKING:  # metadata imports this module
    from tools.funchost.metadata import HostedFunction

_TEMPLATE_PART = re.compile(r"\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}")


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


def is_reserved_route(route: str) -> bool:
    """The real host refuses any route that starts with "admin" (a plain prefix test, so
    "administration" too); "runtime/" is ours as well, for the Event Grid webhook."""
    route = route.strip("/").lower()
    return route.startswith("admin") or route.split("/", 1)[0] == "runtime"


def build_url_map(
    functions: Iterable[HostedFunction], route_prefix: str, disabled: Callable[[str], bool]
) -> Map:
    """The rules of every HTTP function not ``disabled``, at ``/<route_prefix>/<route>``."""
    rules = []
    prefix = f"/{route_prefix}" if route_prefix else ""
    for function in functions:
        if function.kind != "http" or disabled(function.name):
            continue
        for rule, defaults in template_to_rules(function.route or ""):
            path = (prefix + rule).rstrip("/") or "/"
            werkzeug_rule = Rule(
                path,
                endpoint=function.name,
                methods=list(function.methods) or None,  # None: every verb, as in Azure
                defaults=defaults or None,
                strict_slashes=False,
            )
            # Werkzeug adds HEAD wherever GET is; Azure routes only the declared methods.
            werkzeug_rule.methods = set(function.methods) or None
            rules.append(werkzeug_rule)
    return Map(
        rules,
        strict_slashes=False,
        merge_slashes=False,
        redirect_defaults=False,
        converters=_CONVERTERS,
    )


def azure_route_comparison(x: str, y: str) -> int:
    """How the Functions host orders two route templates, -1 when ``x`` is tried first
    (Microsoft.Azure.WebJobs.Extensions.Http, WebJobsRouteBuilder.RouteComparison, whose
    order the host's RouteCollection then tries): segment by segment, a literal before a
    parameter, a parameter with more inline constraints first, literals in case-insensitive
    ordinal order; then the longer template first. 0 is a tie, which the host's unstable sort
    leaves in no particular order."""
    xs = [s for s in x.strip("/").split("/") if s]
    ys = [s for s in y.strip("/").split("/") if s]
    for index, x_segment in enumerate(xs):
        if len(ys) <= index:
            return -1
        y_segment = ys[index]
        x_param, y_param = x_segment.startswith("{"), y_segment.startswith("{")
        if x_param != y_param:
            return 1 if x_param else -1
        if x_param:
            x_constraints, y_constraints = x_segment.count(":"), y_segment.count(":")
            if x_constraints != y_constraints:
                return -1 if x_constraints > y_constraints else 1
        else:
            a, b = x_segment.upper(), y_segment.upper()
            if a != b:
                return -1 if a < b else 1
    return 1 if len(ys) > len(xs) else 0
