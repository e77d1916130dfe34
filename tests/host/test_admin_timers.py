"""Non-HTTP functions: admin invocation, timers on their schedules, settings, past_due."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.data.tables import TableClient

from tests.fixtures.funchost import FuncHost
from tests.helpers import wait_until
from tests.host.conftest import (
    APP_DIR,
    AppHost,
    app_settings,
    run_host_expecting_failure,
)
from tools.funchost.host import PAST_DUE_AFTER, is_past_due, next_due

# -- POST /admin/functions/<name> -------------------------------------------------------------


def test_admin_invokes_a_timer_that_writes_to_azurite(app_host: AppHost) -> None:
    response = app_host.request("POST", "admin/functions/storage_timer", json={"input": ""})
    # The local host runs the function before it answers (Azure answers 202 at once).
    assert response.status_code == 202
    settings = app_host.settings
    table = TableClient.from_connection_string(
        settings["TEST_STORAGE"], table_name=settings["TEST_TABLE"]
    )
    with table:
        entity = table.get_entity("timer", settings["TEST_RUN_ID"])
    assert entity["past_due"] is False
    assert entity["function_name"] == "storage_timer"


def test_admin_invocation_passes_past_due_false(app_host: AppHost) -> None:
    marker = app_host.markers / "tick"
    before = marker.read_text().splitlines() if marker.exists() else []
    assert app_host.request("POST", "admin/functions/tick", json={}).status_code == 202
    after = marker.read_text().splitlines()
    assert len(after) == len(before) + 1
    assert json.loads(after[-1]) == {"past_due": False}


def test_admin_function_names_are_case_insensitive(app_host: AppHost) -> None:
    assert app_host.request("POST", "admin/functions/TICK", json={}).status_code == 202


@pytest.mark.parametrize("name", ["no_such_function", "items_get"])
def test_admin_invocation_of_unknown_or_http_function_is_404(app_host: AppHost, name: str) -> None:
    assert app_host.request("POST", f"admin/functions/{name}", json={}).status_code == 404


def test_admin_invocation_needs_post(app_host: AppHost) -> None:
    assert app_host.request("GET", "admin/functions/tick").status_code == 404


def test_admin_invokes_an_event_grid_function(app_host: AppHost) -> None:
    event = {
        "id": "admin-invoked",
        "topic": "t",
        "subject": "s",
        "eventType": "Demo.Admin",
        "eventTime": "2024-05-06T07:08:09Z",
        "dataVersion": "1",
        "data": {"k": 1},
    }
    response = app_host.request(
        "POST", "admin/functions/on_event", json={"input": json.dumps(event)}
    )
    assert response.status_code == 202
    recorded = app_host.events()["admin-invoked"]
    assert recorded["event_type"] == "Demo.Admin"
    assert recorded["data"] == {"k": 1}


# -- timers on their schedules ----------------------------------------------------------------


@pytest.fixture(scope="module")
def timer_host() -> Iterator[AppHost]:
    """Timers on, every second from %TEST_SCHEDULE%; `tock` and the `plain` route disabled."""
    with tempfile.TemporaryDirectory(prefix="funchost-timers-") as markers:
        settings = app_settings(
            Path(markers),
            TEST_SCHEDULE="* * * * * *",
            **{"AzureWebJobs.tock.Disabled": "true", "AzureWebJobs.plain.Disabled": "1"},
        )
        host = FuncHost(settings, app_dir=APP_DIR, timers=True)
        try:
            yield AppHost(host, Path(markers), settings)
        finally:
            host.stop()


def test_timer_fires_on_its_schedule_from_a_setting(timer_host: AppHost) -> None:
    marker = timer_host.markers / "tick"

    def runs() -> list[str]:
        return marker.read_text().splitlines() if marker.exists() else []

    lines = wait_until(lambda: len(runs()) >= 2 and runs(), what="two scheduled runs of tick")
    assert all(json.loads(line) == {"past_due": False} for line in lines)
    logs = timer_host.host.logs()
    assert "timer scheduled: tick [* * * * * *]" in logs


def test_disabled_timer_is_not_scheduled(timer_host: AppHost) -> None:
    logs = wait_until(
        lambda: "funchost listening" in (text := timer_host.host.logs()) and text,
        what="host start-up lines",
    )
    assert "timer scheduled: tock" not in logs
    assert "timer tock is disabled by AzureWebJobs.tock.Disabled" in logs
    # Once tick has run twice on the same schedule, an enabled tock would have run too.
    marker = timer_host.markers / "tick"
    wait_until(
        lambda: marker.exists() and len(marker.read_text().splitlines()) >= 2,
        what="two scheduled runs of tick",
    )
    assert not (timer_host.markers / "tock").exists()


def test_disabled_http_function_has_no_route(timer_host: AppHost) -> None:
    assert timer_host.request("GET", "api/plain").status_code == 404
    assert timer_host.request("GET", "api/getonly").status_code == 200


def test_missing_setting_refuses_to_start(tmp_path: Path) -> None:
    settings = app_settings(tmp_path)
    del settings["TEST_SCHEDULE"]
    result = run_host_expecting_failure(settings)
    assert result.returncode != 0
    assert "TEST_SCHEDULE" in result.stderr
    assert "is not set" in result.stderr


def test_five_field_schedule_refuses_to_start(tmp_path: Path) -> None:
    result = run_host_expecting_failure(app_settings(tmp_path, TEST_SCHEDULE="*/5 * * * *"))
    assert result.returncode != 0
    assert "six NCRONTAB fields" in result.stderr


def test_invalid_schedule_refuses_to_start(tmp_path: Path) -> None:
    result = run_host_expecting_failure(app_settings(tmp_path, TEST_SCHEDULE="* * * * * nope"))
    assert result.returncode != 0
    assert "invalid NCRONTAB schedule" in result.stderr


@pytest.mark.parametrize("route", ["admin/things", "Admin", "administration/x", "runtime/x"])
def test_reserved_route_refuses_to_start(tmp_path: Path, route: str) -> None:
    (tmp_path / "host.json").write_text('{"version": "2.0"}')
    (tmp_path / "function_app.py").write_text(
        textwrap.dedent(
            f"""
            import azure.functions as func

            app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


            @app.route(route={route!r})
            def clash(req: func.HttpRequest) -> str:
                return "never"
            """
        )
    )
    result = run_host_expecting_failure({}, tmp_path, "--no-timers")
    assert result.returncode != 0
    assert "conflicts with one or more built in routes" in result.stderr


# -- the past-due decision and the next occurrence (pure functions of the timer loop) ---------

T0 = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_past_due_only_beyond_the_threshold() -> None:
    assert not is_past_due(T0, T0)
    assert not is_past_due(T0, T0 + PAST_DUE_AFTER)
    assert is_past_due(T0, T0 + PAST_DUE_AFTER + dt.timedelta(microseconds=1))
    assert is_past_due(T0, T0 + dt.timedelta(seconds=2), threshold=dt.timedelta(seconds=1))
    assert not is_past_due(T0, T0 - dt.timedelta(seconds=30))


def test_first_occurrence_is_the_next_one() -> None:
    now = T0 + dt.timedelta(seconds=12, microseconds=500)
    assert next_due("0 * * * * *", None, now) == T0 + dt.timedelta(minutes=1)
    assert next_due("*/10 * * * * *", None, now) == T0 + dt.timedelta(seconds=20)


def test_a_quick_run_waits_for_the_next_occurrence() -> None:
    due = T0
    now = T0 + dt.timedelta(seconds=3)
    assert next_due("0 * * * * *", due, now) == T0 + dt.timedelta(minutes=1)


def test_occurrences_missed_during_a_long_run_collapse_into_one() -> None:
    # Every 10 s; the run for 12:00:00 lasted until 12:00:47: 10, 20, 30 and 40 were missed.
    due = T0
    now = T0 + dt.timedelta(seconds=47)
    following = next_due("*/10 * * * * *", due, now)
    assert following == T0 + dt.timedelta(seconds=40)
    # It runs at once, late by 7 s: past due.
    assert is_past_due(following, now)


def test_missed_occurrence_within_the_threshold_is_not_past_due() -> None:
    due = T0
    now = T0 + dt.timedelta(seconds=1, milliseconds=200)
    following = next_due("* * * * * *", due, now)
    assert following == T0 + dt.timedelta(seconds=1)
    assert not is_past_due(following, now)
