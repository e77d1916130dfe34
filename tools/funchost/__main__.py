"""``python -m tools.funchost``: serve function_app.py like ``func start`` would.

Keys are read from the environment, never from the command line: FUNCHOST_MASTER_KEY (the
master key, for /admin/functions/...) and FUNCHOST_EVENTGRID_KEY (the Event Grid extension's
system key, for /runtime/webhooks/eventgrid). Without them those endpoints take no key.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from werkzeug.serving import make_server

from tools.funchost.host import (
    FunctionHost,
    HostError,
    load_app,
    load_local_settings,
    read_route_prefix,
)
from tools.funchost.serving import RequestHandler

MASTER_KEY_VARIABLE = "FUNCHOST_MASTER_KEY"
EVENTGRID_KEY_VARIABLE = "FUNCHOST_EVENTGRID_KEY"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.funchost", description=__doc__)
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=Path.cwd(),
        help="folder holding function_app.py and host.json",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument(
        "--settings",
        type=Path,
        default=None,
        help="local.settings.json (default: <app-dir>/local.settings.json)",
    )
    parser.add_argument(
        "--no-timers",
        action="store_true",
        help="do not fire timers on their schedules (admin invocation still works)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The format names no source line, thread or process: not looked up for each record (the
    # logging HOWTO's "Optimization": https://docs.python.org/3/howto/logging.html#optimization).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # The SDKs' request logging is the real host's default off too (Host.Results, etc.).
    logging.getLogger("azure").setLevel(logging.WARNING)
    # The host's keys, taken out of the environment before the app is imported: in Azure
    # function code cannot read them either.
    master_key = os.environ.pop(MASTER_KEY_VARIABLE, None)
    eventgrid_key = os.environ.pop(EVENTGRID_KEY_VARIABLE, None)
    app_dir = args.app_dir.resolve()
    load_local_settings(args.settings or app_dir / "local.settings.json")
    try:
        host = FunctionHost(
            load_app(app_dir),
            route_prefix=read_route_prefix(app_dir),
            master_key=master_key,
            eventgrid_key=eventgrid_key,
        )
        timers = [] if args.no_timers else host.start_timers()
    except HostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    server = make_server(args.host, args.port, host, threaded=True, request_handler=RequestHandler)
    print("Functions:", flush=True)
    for line in host.describe():
        print(f"  {line}", flush=True)
    for line in timers:
        print(f"  timer scheduled: {line}", flush=True)
    if master_key:
        print("the master key is required on /admin/functions/...", flush=True)
    if eventgrid_key:
        print("the Event Grid system key is required on /runtime/webhooks/eventgrid", flush=True)
    print(f"funchost listening on http://{args.host}:{server.server_port}", flush=True)

    def stop(*_: object) -> None:
        host.stop()
        raise KeyboardInterrupt

    # Timer runs and request threads are daemon threads: stopping never waits for them.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        host.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
