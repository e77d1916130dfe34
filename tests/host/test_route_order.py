"""The real app's routes in the order the Functions host tries them: the catch-all last, and
the local host picking, for every route, the function Azure would pick."""

from __future__ import annotations

import functools
import re

import pytest
from werkzeug.exceptions import NotFound

import function_app
from functions.http_api import UNROUTED_FUNCTION, UNROUTED_ROUTE
from tools.funchost.metadata import describe_functions
from tools.funchost.routing import azure_route_comparison, build_url_map, template_to_rules

FUNCTIONS = [f for f in describe_functions(function_app.app) if f.kind == "http"]
ROUTES = {f.name: f.route or "" for f in FUNCTIONS}


def test_the_comparison_follows_webjobs_route_builder() -> None:
    assert azure_route_comparison("sys/mounts", "{mount}/key") == -1  # literal first
    assert azure_route_comparison("{mount}/key/{name}", "{mount}/key") == -1  # longer first
    assert azure_route_comparison("{id:int}", "{id}") == -1  # more constraints first
    assert azure_route_comparison("Auth/x", "sys/x") == -1  # ordinal, case-insensitive
    assert azure_route_comparison("{a}/x", "{b}/x") == 0


def test_the_catch_all_comes_after_every_route() -> None:
    for name, route in ROUTES.items():
        if name != UNROUTED_FUNCTION:
            assert azure_route_comparison(route, UNROUTED_ROUTE) == -1, route
            assert azure_route_comparison(UNROUTED_ROUTE, route) == 1, route


def test_the_catch_all_is_registered_last() -> None:
    # For a host that tries routes in registration order (older Http extensions).
    assert list(ROUTES)[-1] == UNROUTED_FUNCTION


def _matches(route: str, path: str) -> bool:
    """Whether an ASP.NET route template matches ``path`` (parameters one segment, a
    catch-all the rest)."""
    regex = ""
    for piece in re.split(r"(\{[^}]*\})", route):
        if piece.startswith("{*"):
            regex += ".*"
        elif piece.startswith("{"):
            regex += "[^/]+"
        else:
            regex += re.escape(piece)
    return re.fullmatch(regex, path) is not None


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_the_local_host_picks_the_function_azure_picks(name: str) -> None:
    path = re.sub(r"\{\*[^}]*\}", "x/y", re.sub(r"\{[^*][^}]*\}", "x", ROUTES[name]))
    in_azure_order = sorted(
        ROUTES.items(), key=functools.cmp_to_key(lambda a, b: azure_route_comparison(a[1], b[1]))
    )
    azure = next(n for n, route in in_azure_order if _matches(route, path))
    adapter = build_url_map(FUNCTIONS, "v1", lambda _: False).bind("localhost")
    try:
        local, _ = adapter.match(f"/v1/{path}", method="GET")
    except NotFound:  # pragma: no cover - a failure's message
        local = None
    assert local == azure, path
    assert template_to_rules(ROUTES[name])  # every template is one the local host takes
