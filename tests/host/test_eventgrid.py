"""The Event Grid webhook: /runtime/webhooks/eventgrid?functionName=<name>."""

from __future__ import annotations

import json
import uuid

import requests

from tests.host.conftest import AppHost

WEBHOOK = "runtime/webhooks/eventgrid"


def post_events(
    app_host: AppHost, body: object, kind: str | None = "Notification", name: str = "on_event"
) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if kind is not None:
        headers["aeg-event-type"] = kind
    return app_host.request(
        "POST", WEBHOOK, params={"functionName": name}, data=json.dumps(body), headers=headers
    )


def grid_event(event_id: str, **data: object) -> dict:
    return {
        "id": event_id,
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
        "subject": f"keys/{event_id}",
        "eventType": "Microsoft.KeyVault.KeyNewVersionCreated",
        "eventTime": "2024-03-04T05:06:07.1234567Z",
        "dataVersion": "1",
        "metadataVersion": "1",
        "data": {"ObjectName": event_id, **data},
    }


def new_id() -> str:
    return uuid.uuid4().hex


def test_one_call_per_event_in_the_array(app_host: AppHost) -> None:
    ids = [new_id() for _ in range(3)]
    response = post_events(app_host, [grid_event(i) for i in ids])
    assert response.status_code == 202
    recorded = app_host.events()
    for event_id in ids:
        seen = recorded[event_id]
        assert seen["class"] == "EventGridEvent"
        assert seen["id"] == event_id
        assert seen["topic"].endswith("/vaults/kv")
        assert seen["subject"] == f"keys/{event_id}"
        assert seen["event_type"] == "Microsoft.KeyVault.KeyNewVersionCreated"
        assert seen["data"] == {"ObjectName": event_id}
        assert seen["data_version"] == "1"
        # Seven fractional digits are parsed as the worker does.
        assert seen["event_time"] == "2024-03-04T05:06:07.123456+00:00"


def test_a_single_event_object_is_delivered_too(app_host: AppHost) -> None:
    event_id = new_id()
    assert post_events(app_host, grid_event(event_id)).status_code == 202
    assert app_host.events()[event_id]["id"] == event_id


def test_events_of_one_delivery_run_concurrently(app_host: AppHost) -> None:
    # Each waits on a threading.Barrier(3): a serial delivery would break it (500).
    ids = [new_id() for _ in range(3)]
    response = post_events(app_host, [grid_event(i, barrier=True) for i in ids])
    assert response.status_code == 202, response.text
    assert set(ids) <= set(app_host.events())


def test_cloud_event_schema(app_host: AppHost) -> None:
    event_id = new_id()
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
        "type": "Microsoft.KeyVault.KeyNewVersionCreated",
        "subject": "keys/k1",
        "time": "2024-03-04T05:06:07Z",
        "datacontenttype": "application/json",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "data": {"ObjectName": "k1"},
    }
    assert post_events(app_host, [event]).status_code == 202
    seen = app_host.events()[event_id]
    assert seen["class"] == "CloudEvent"
    assert seen["source"].endswith("/vaults/kv")
    assert seen["type"] == "Microsoft.KeyVault.KeyNewVersionCreated"
    assert seen["specversion"] == "1.0"
    assert seen["subject"] == "keys/k1"
    assert seen["time"] == "2024-03-04T05:06:07+00:00"
    assert seen["data"] == {"ObjectName": "k1"}
    # Attributes outside the core set reach the function, as the worker's converter keeps them.
    assert seen["extension_attrs"] == {"traceparent": event["traceparent"]}


def test_subscription_validation(app_host: AppHost) -> None:
    body = [
        {
            "id": new_id(),
            "topic": "t",
            "subject": "",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": "2024-03-04T05:06:07Z",
            "dataVersion": "2",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
        }
    ]
    response = post_events(app_host, body, kind="SubscriptionValidation")
    assert response.status_code == 200
    assert response.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert body[0]["id"] not in app_host.events()  # the function is not called


def test_subscription_validation_with_double_encoded_cloud_event_data(app_host: AppHost) -> None:
    body = {"specversion": "1.0", "id": new_id(), "data": json.dumps({"validationCode": "abc"})}
    response = post_events(app_host, body, kind="SubscriptionValidation")
    assert response.json() == {"validationResponse": "abc"}


def test_cloud_events_options_handshake(app_host: AppHost) -> None:
    response = app_host.request(
        "OPTIONS",
        WEBHOOK,
        params={"functionName": "on_event"},
        headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
    )
    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    # Another origin is answered with the public cloud's, as the extension does.
    response = app_host.request(
        "OPTIONS",
        WEBHOOK,
        params={"functionName": "on_event"},
        headers={"WebHook-Request-Origin": "evil.example"},
    )
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_unknown_function_is_404(app_host: AppHost) -> None:
    response = post_events(app_host, [grid_event(new_id())], name="nope")
    assert response.status_code == 404
    # An HTTP function is not an Event Grid function either.
    assert post_events(app_host, [grid_event(new_id())], name="plain").status_code == 404


def test_failing_function_is_500_after_every_event_ran(app_host: AppHost) -> None:
    ok1, failing, ok2 = new_id(), new_id(), new_id()
    body = [grid_event(ok1), grid_event(failing, fail=True), grid_event(ok2)]
    response = post_events(app_host, body)
    assert response.status_code == 500  # so Event Grid retries the delivery
    assert {ok1, failing, ok2} <= set(app_host.events())


def test_missing_or_unknown_event_type_header_is_400(app_host: AppHost) -> None:
    event_id = new_id()
    assert post_events(app_host, [grid_event(event_id)], kind=None).status_code == 400
    assert post_events(app_host, [grid_event(event_id)], kind="Other").status_code == 400
    assert event_id not in app_host.events()


def test_unsubscribe_is_accepted(app_host: AppHost) -> None:
    assert post_events(app_host, [], kind="Unsubscribe").status_code == 202


def test_body_that_is_not_json_is_400(app_host: AppHost) -> None:
    response = app_host.request(
        "POST",
        WEBHOOK,
        params={"functionName": "on_event"},
        data=b"{not json",
        headers={"aeg-event-type": "Notification"},
    )
    assert response.status_code == 400


def test_a_malformed_event_refuses_the_batch_with_400_and_runs_nothing(app_host: AppHost) -> None:
    good, bad = new_id(), new_id()
    for broken in ("not a time", "2024-13-45T99:99:99Z", 12345, ["x"]):
        body = [grid_event(good), {**grid_event(bad), "eventTime": broken}]
        response = post_events(app_host, body)
        assert response.status_code == 400  # Event Grid does not retry it
        assert response.text == "event 1 of the batch is malformed"  # no parser text
    assert good not in app_host.events() and bad not in app_host.events()


def test_a_failing_function_answers_without_its_exception_text(app_host: AppHost) -> None:
    response = post_events(app_host, [grid_event(new_id(), fail=True)])
    assert response.status_code == 500
    assert response.text == "function on_event failed"
