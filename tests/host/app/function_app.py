"""A small app for the local host's own tests (tests/host), served with routePrefix "api".

Functions record what they received in files under the folder named by the TEST_MARKER_DIR
app setting, so a test in another process can read it back.
"""

import asyncio
import json
import os
import threading
from pathlib import Path

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

# Released only when four requests wait at once: proves the host serves them concurrently.
HTTP_BARRIER = threading.Barrier(4, timeout=30)
# The same for the three events of one Event Grid delivery.
EVENT_BARRIER = threading.Barrier(3, timeout=30)


def _markers() -> Path:
    path = Path(os.environ["TEST_MARKER_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def _json(value: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(value), status_code=status, mimetype="application/json")


@app.route(route="items/special", methods=["GET"])
def items_special(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"function": "items_special", "route_params": dict(req.route_params)})


@app.route(route="items/{id}", methods=["GET"])
def items_get(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"function": "items_get", "route_params": dict(req.route_params)})


@app.route(route="typed/{id:int}", methods=["GET"])
def typed(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"function": "typed", "route_params": dict(req.route_params)})


@app.route(route="hello/{name?}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"function": "hello", "route_params": dict(req.route_params)})


@app.route(route="files/{*rest}", methods=["GET"])
def files(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"function": "files", "route_params": dict(req.route_params)})


@app.route(route="echo", methods=["POST", "PUT"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = req.get_body()
    return _json(
        {
            "method": req.method,
            "params": dict(req.params),
            "route_params": dict(req.route_params),
            "x_test_header": req.headers.get("X-Test-Header"),
            "x_test_header_lower": req.headers.get("x-test-header"),
            "body_hex": body.hex(),
        }
    )


@app.route(route="raw", methods=["POST"])
def raw(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), mimetype="application/octet-stream")


@app.route(route="json", methods=["POST"])
def json_body(req: func.HttpRequest) -> func.HttpResponse:
    try:
        value = req.get_json()
    except ValueError:
        return _json({"error": "no JSON body"}, status=400)
    return _json({"received": value})


@app.route(route="custom", methods=["GET"])
def custom(req: func.HttpRequest) -> func.HttpResponse:
    response = func.HttpResponse(
        b'{"brewing": false}',
        status_code=418,
        headers={"X-Custom": "yes", "Set-Cookie": "a=1"},
        mimetype="application/json",
    )
    response.headers.add("Set-Cookie", "b=2")
    return response


@app.route(route="html", methods=["GET"])
def html(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("<p>hi</p>", mimetype="text/html")


@app.route(route="plain", methods=["GET"])
def plain(req: func.HttpRequest) -> str:
    return "just a string"


@app.route(route="async", methods=["GET"])
async def async_fn(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(0)
    return func.HttpResponse(f"async {req.params.get('n', '')}")


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")


@app.route(route="getonly", methods=["GET"])
def getonly(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("get only")


@app.route(route="anymethod")
def anymethod(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.method)


@app.route(route="setting/{name}", methods=["GET"])
def setting(req: func.HttpRequest) -> func.HttpResponse:
    """Whether the app sees an environment variable (never its value)."""
    return _json({"set": req.route_params["name"] in os.environ})


@app.route(route="barrier", methods=["GET"])
def barrier(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(str(HTTP_BARRIER.wait()))


@app.timer_trigger(arg_name="timer", schedule="%TEST_SCHEDULE%")
def tick(timer: func.TimerRequest) -> None:
    with (_markers() / "tick").open("a") as f:
        f.write(json.dumps({"past_due": timer.past_due}) + "\n")


@app.timer_trigger(arg_name="timer", schedule="%TEST_SCHEDULE%")
def tock(timer: func.TimerRequest) -> None:
    with (_markers() / "tock").open("a") as f:
        f.write(json.dumps({"past_due": timer.past_due}) + "\n")


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *")
def storage_timer(timer: func.TimerRequest, context: func.Context) -> None:
    """Azurite smoke test: upsert one entity the test reads back."""
    from azure.data.tables import TableServiceClient

    service = TableServiceClient.from_connection_string(os.environ["TEST_STORAGE"])
    table = service.create_table_if_not_exists(os.environ["TEST_TABLE"])
    table.upsert_entity(
        {
            "PartitionKey": "timer",
            "RowKey": os.environ["TEST_RUN_ID"],
            "past_due": timer.past_due,
            "function_name": context.function_name,
        }
    )


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    data = event.get_json()
    if isinstance(data, dict) and data.get("barrier"):
        EVENT_BARRIER.wait()
    record = {"class": type(event).__name__, "data": data}
    if isinstance(event, func.CloudEvent):
        time = event.time
        record.update(
            id=event.id,
            source=event.source,
            type=event.type,
            specversion=event.specversion,
            subject=event.subject,
            time=time.isoformat() if time else None,
            extension_attrs=event.extension_attrs,
        )
    else:
        time = event.event_time
        record.update(
            id=event.id,
            topic=event.topic,
            subject=event.subject,
            event_type=event.event_type,
            event_time=time.isoformat() if time else None,
            data_version=event.data_version,
        )
    events = _markers() / "events"
    events.mkdir(exist_ok=True)
    (events / f"{event.id}.json").write_text(json.dumps(record))
    if isinstance(data, dict) and data.get("fail"):
        raise RuntimeError(f"event {event.id} failed on purpose")
