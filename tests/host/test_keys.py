"""The master key (/admin/functions/...) and the Event Grid system key (the webhook), when the
host is given them: refused as Azure refuses, 401 without a valid key and 403 for a valid key of
too low a level; taken from the x-functions-key header, else the code query parameter."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fixtures.funchost import FuncHost
from tests.host.conftest import APP_DIR, AppHost, app_settings, run_host_expecting_failure

MASTER_KEY = "master-key-for-tests-0123456789"
EVENTGRID_KEY = "eventgrid-key-for-tests-0123456789"
WRONG_KEY = "not-a-key-of-this-host-0123456789"
WEBHOOK = "runtime/webhooks/eventgrid"


@pytest.fixture(scope="module")
def keyed_host() -> Iterator[AppHost]:
    with tempfile.TemporaryDirectory(prefix="funchost-keys-") as markers:
        settings = app_settings(
            Path(markers),
            FUNCHOST_MASTER_KEY=MASTER_KEY,
            FUNCHOST_EVENTGRID_KEY=EVENTGRID_KEY,
        )
        host = FuncHost(settings, app_dir=APP_DIR)
        try:
            yield AppHost(host, Path(markers), settings)
        finally:
            host.stop()


def unsubscribe(host: AppHost, **kwargs: object) -> requests.Response:
    """The lightest webhook call: 202 once past the key check, the function never runs."""
    params = {"functionName": "on_event", **kwargs.pop("params", {})}
    headers = {"aeg-event-type": "Unsubscribe", **kwargs.pop("headers", {})}
    return host.request("POST", WEBHOOK, params=params, headers=headers, **kwargs)


def admin_tick(host: AppHost, **kwargs: object) -> requests.Response:
    return host.request("POST", "admin/functions/tick", json={"input": ""}, **kwargs)


# -- the Event Grid webhook -------------------------------------------------------------------


def test_webhook_without_a_key_is_401(keyed_host: AppHost) -> None:
    assert unsubscribe(keyed_host).status_code == 401


@pytest.mark.parametrize(
    "how", [{"params": {"code": WRONG_KEY}}, {"headers": {"x-functions-key": WRONG_KEY}}]
)
def test_webhook_with_a_wrong_key_is_401(keyed_host: AppHost, how: dict) -> None:
    assert unsubscribe(keyed_host, **how).status_code == 401


@pytest.mark.parametrize(
    "how", [{"params": {"code": EVENTGRID_KEY}}, {"headers": {"x-functions-key": EVENTGRID_KEY}}]
)
def test_webhook_with_the_system_key_is_served(keyed_host: AppHost, how: dict) -> None:
    assert unsubscribe(keyed_host, **how).status_code == 202


def test_webhook_takes_the_master_key_too(keyed_host: AppHost) -> None:
    assert unsubscribe(keyed_host, params={"code": MASTER_KEY}).status_code == 202


def test_key_is_checked_before_the_function_is_looked_up(keyed_host: AppHost) -> None:
    response = unsubscribe(keyed_host, params={"functionName": "no_such_function"})
    assert response.status_code == 401
    response = unsubscribe(
        keyed_host, params={"functionName": "no_such_function", "code": EVENTGRID_KEY}
    )
    assert response.status_code == 404


def test_cloud_events_handshake_needs_the_key_too(keyed_host: AppHost) -> None:
    headers = {"WebHook-Request-Origin": "eventgrid.azure.net"}
    params = {"functionName": "on_event"}
    refused = keyed_host.request("OPTIONS", WEBHOOK, params=params, headers=headers)
    assert refused.status_code == 401
    params["code"] = EVENTGRID_KEY
    served = keyed_host.request("OPTIONS", WEBHOOK, params=params, headers=headers)
    assert served.status_code == 200
    assert served.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_events_are_delivered_with_the_key(keyed_host: AppHost) -> None:
    event = {
        "id": "keyed-delivery",
        "topic": "t",
        "subject": "s",
        "eventType": "Demo.Keyed",
        "eventTime": "2024-05-06T07:08:09Z",
        "dataVersion": "1",
        "data": {},
    }
    response = keyed_host.request(
        "POST",
        WEBHOOK,
        params={"functionName": "on_event", "code": EVENTGRID_KEY},
        headers={"aeg-event-type": "Notification"},
        data=json.dumps([event]),
    )
    assert response.status_code == 202
    assert keyed_host.events()["keyed-delivery"]["event_type"] == "Demo.Keyed"


# -- the admin API ----------------------------------------------------------------------------


def test_admin_without_a_key_is_401(keyed_host: AppHost) -> None:
    assert admin_tick(keyed_host).status_code == 401
    # Before anything else: an unknown function, or a GET, is refused the same way.
    assert keyed_host.request("POST", "admin/functions/nope", json={}).status_code == 401
    assert keyed_host.request("GET", "admin/functions/tick").status_code == 401


@pytest.mark.parametrize(
    "how", [{"params": {"code": WRONG_KEY}}, {"headers": {"x-functions-key": WRONG_KEY}}]
)
def test_admin_with_a_wrong_key_is_401(keyed_host: AppHost, how: dict) -> None:
    assert admin_tick(keyed_host, **how).status_code == 401


def test_admin_with_the_system_key_is_403(keyed_host: AppHost) -> None:
    # A valid key, but the admin API needs admin level: the master key.
    response = admin_tick(keyed_host, headers={"x-functions-key": EVENTGRID_KEY})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "how", [{"headers": {"x-functions-key": MASTER_KEY}}, {"params": {"code": MASTER_KEY}}]
)
def test_admin_with_the_master_key_runs_the_function(keyed_host: AppHost, how: dict) -> None:
    marker = keyed_host.markers / "tick"
    before = len(marker.read_text().splitlines()) if marker.exists() else 0
    assert admin_tick(keyed_host, **how).status_code == 202
    assert len(marker.read_text().splitlines()) == before + 1


def test_the_header_wins_over_the_query_parameter(keyed_host: AppHost) -> None:
    response = admin_tick(
        keyed_host, headers={"x-functions-key": WRONG_KEY}, params={"code": MASTER_KEY}
    )
    assert response.status_code == 401


# -- what stays the same ----------------------------------------------------------------------


def test_http_functions_take_no_key(keyed_host: AppHost) -> None:
    assert keyed_host.request("GET", "api/items/7").status_code == 200


def test_the_app_cannot_read_the_keys(keyed_host: AppHost) -> None:
    for name in ("FUNCHOST_MASTER_KEY", "FUNCHOST_EVENTGRID_KEY"):
        assert keyed_host.request("GET", f"api/setting/{name}").json() == {"set": False}
    assert keyed_host.request("GET", "api/setting/TEST_MARKER_DIR").json() == {"set": True}


def test_keys_never_reach_the_log(keyed_host: AppHost) -> None:
    unsubscribe(keyed_host, params={"code": EVENTGRID_KEY})
    admin_tick(keyed_host, params={"code": MASTER_KEY})
    admin_tick(keyed_host, params={"code": WRONG_KEY})
    logs = keyed_host.host.logs()
    assert "POST /runtime/webhooks/eventgrid 202" in logs
    assert "POST /admin/functions/tick 401" in logs
    for key in (MASTER_KEY, EVENTGRID_KEY, WRONG_KEY):
        assert key not in logs


def test_an_empty_key_refuses_to_start(tmp_path: Path) -> None:
    result = run_host_expecting_failure(app_settings(tmp_path, FUNCHOST_MASTER_KEY=""))
    assert result.returncode == 1
    assert "the master key is empty" in result.stderr
