"""HTTP triggers through the local host over real HTTP (the test app, routePrefix "api")."""

from __future__ import annotations

import concurrent.futures

import pytest
import requests

from tests.host.conftest import AppHost


def route_of(response: requests.Response) -> tuple[str, dict[str, str]]:
    assert response.status_code == 200, response.text
    body = response.json()
    return body["function"], body["route_params"]


# -- routing ----------------------------------------------------------------------------------


def test_route_prefix_comes_from_host_json(app_host: AppHost) -> None:
    assert app_host.request("GET", "api/items/special").status_code == 200
    assert app_host.request("GET", "items/special").status_code == 404
    assert app_host.request("GET", "v1/items/special").status_code == 404


def test_literal_segment_wins_over_parameter(app_host: AppHost) -> None:
    assert route_of(app_host.request("GET", "api/items/special")) == ("items_special", {})
    assert route_of(app_host.request("GET", "api/items/other")) == ("items_get", {"id": "other"})


@pytest.mark.parametrize("value", ["42", "007", "-3"])
def test_int_constraint_accepts_integers_and_keeps_the_raw_string(
    app_host: AppHost, value: str
) -> None:
    assert route_of(app_host.request("GET", f"api/typed/{value}")) == ("typed", {"id": value})


@pytest.mark.parametrize("value", ["abc", "4x2", "1.5"])
def test_int_constraint_rejects_other_segments(app_host: AppHost, value: str) -> None:
    assert app_host.request("GET", f"api/typed/{value}").status_code == 404


def test_optional_parameter_with_and_without_its_segment(app_host: AppHost) -> None:
    assert route_of(app_host.request("GET", "api/hello/ada")) == ("hello", {"name": "ada"})
    assert route_of(app_host.request("GET", "api/hello")) == ("hello", {})


def test_catch_all_keeps_slashes(app_host: AppHost) -> None:
    function, params = route_of(app_host.request("GET", "api/files/a/b/c.txt"))
    assert (function, params) == ("files", {"rest": "a/b/c.txt"})


def test_catch_all_with_empty_remainder(app_host: AppHost) -> None:
    assert route_of(app_host.request("GET", "api/files")) == ("files", {"rest": ""})
    assert route_of(app_host.request("GET", "api/files/")) == ("files", {"rest": ""})


def test_trailing_slash_is_tolerated(app_host: AppHost) -> None:
    response = app_host.request("GET", "api/items/7/", allow_redirects=False)
    assert route_of(response) == ("items_get", {"id": "7"})
    response = app_host.request("GET", "api/items/special/", allow_redirects=False)
    assert route_of(response) == ("items_special", {})


def test_unknown_path_is_404(app_host: AppHost) -> None:
    assert app_host.request("GET", "api/nothing/here").status_code == 404


# -- methods ----------------------------------------------------------------------------------


def test_undeclared_method_on_known_route_is_404_like_azure(app_host: AppHost) -> None:
    # azure-functions-host #10098: the real host answers 404, not 405.
    assert app_host.request("GET", "api/getonly").status_code == 200
    for method in ("POST", "DELETE", "PUT"):
        assert app_host.request(method, "api/getonly").status_code == 404, method


def test_head_is_not_implied_by_get(app_host: AppHost) -> None:
    # Azure routes only the declared methods (Werkzeug alone would add HEAD to GET).
    assert app_host.request("HEAD", "api/getonly").status_code == 404


@pytest.mark.parametrize(
    "method",
    ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD", "LIST", "PROPFIND"],
)
def test_no_declared_methods_means_every_verb(app_host: AppHost, method: str) -> None:
    # The host adds a method constraint only for declared methods
    # (WebScriptHostHttpRoutesManager), so custom verbs such as LIST reach the function too.
    response = app_host.request(method, "api/anymethod")
    assert response.status_code == 200
    if method != "HEAD":
        assert response.text == method


def test_a_custom_verb_is_not_routed_to_a_function_that_declares_methods(
    app_host: AppHost,
) -> None:
    assert app_host.request("LIST", "api/getonly").status_code == 404


# -- requests ---------------------------------------------------------------------------------


def test_query_headers_and_body_reach_the_function(app_host: AppHost) -> None:
    body = bytes(range(256)) + b"\r\n\x00end"
    response = app_host.request(
        "PUT",
        "api/echo",
        params={"list": "true", "name": "a b/c"},
        headers={"x-TEST-header": "Value-1"},
        data=body,
    )
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == "PUT"
    assert seen["params"] == {"list": "true", "name": "a b/c"}
    assert seen["route_params"] == {}
    assert seen["x_test_header"] == seen["x_test_header_lower"] == "Value-1"
    assert bytes.fromhex(seen["body_hex"]) == body


def test_empty_body(app_host: AppHost) -> None:
    seen = app_host.request("POST", "api/echo").json()
    assert seen["body_hex"] == ""
    assert seen["params"] == {}
    assert app_host.request("POST", "api/json").status_code == 400


def test_bytes_round_trip(app_host: AppHost) -> None:
    body = bytes(range(256)) * 64
    response = app_host.request("POST", "api/raw", data=body)
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["Content-Type"] == "application/octet-stream"


def test_json_body(app_host: AppHost) -> None:
    payload = {"a": [1, 2, {"b": None}], "text": "\u00e9t\u00e9"}
    response = app_host.request("POST", "api/json", json=payload)
    assert response.status_code == 200
    assert response.json() == {"received": payload}


# -- responses --------------------------------------------------------------------------------


def test_response_status_headers_and_mimetype_as_written(app_host: AppHost) -> None:
    response = app_host.request("GET", "api/custom")
    assert response.status_code == 418
    assert response.content == b'{"brewing": false}'
    assert response.headers["X-Custom"] == "yes"
    # As the worker does: a charset only for text/* types.
    assert response.headers["Content-Type"] == "application/json"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_text_mimetype_gets_a_charset(app_host: AppHost) -> None:
    response = app_host.request("GET", "api/html")
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.text == "<p>hi</p>"


def test_function_returning_str(app_host: AppHost) -> None:
    response = app_host.request("GET", "api/plain")
    assert response.status_code == 200
    assert response.text == "just a string"
    assert response.headers["Content-Type"].startswith("text/plain")


def test_async_function(app_host: AppHost) -> None:
    response = app_host.request("GET", "api/async", params={"n": "5"})
    assert response.status_code == 200
    assert response.text == "async 5"


def test_function_that_raises_is_500(app_host: AppHost) -> None:
    response = app_host.request("GET", "api/boom")
    assert response.status_code == 500
    assert "boom" not in response.text  # no traceback to the client
    # ... and the host keeps serving.
    assert app_host.request("GET", "api/plain").status_code == 200


def test_several_requests_in_flight_at_once(app_host: AppHost) -> None:
    # The function waits on a threading.Barrier(4): it only returns when four requests are
    # inside it together, so a serial host would break the barrier (its timeout) and answer 500.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: app_host.request("GET", "api/barrier"), range(4)))
    assert [r.status_code for r in responses] == [200] * 4
    assert sorted(r.text for r in responses) == ["0", "1", "2", "3"]
