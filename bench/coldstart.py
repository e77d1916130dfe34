"""Cold start: ``import function_app`` against ``import azure.functions``, each in a fresh
interpreter, the import timed inside the child (``time.perf_counter`` around the import, so the
interpreter's own start-up is left out), the two alternated; then the first request after the
import: a fresh child imports function_app and calls the registered function of
``GET /v1/<mount>/key/<name>`` with an ``azure.functions.HttpRequest`` (it builds the service and
opens the first Table connection), against a key made beforehand; the second request's time too.
The children load our modules from bytecode written by an untimed first child, as site-packages'
modules and the published package's (compiled at publish) load.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Mapping

from bench.common import Recorder
from bench.stack import MOUNT, Stack
from tools.localstack import ROOT, ROOT_TOKEN

IMPORT = """
import time
start = time.perf_counter()
import {module}
print(time.perf_counter() - start)
"""

FIRST_REQUEST = """
import json, sys, time
start = time.perf_counter()
import function_app
imported = time.perf_counter() - start
import azure.functions as func
from shared.api import keys
mount, name, token = sys.argv[1:4]
start = time.perf_counter()
functions = function_app.app.get_functions()  # the Python worker indexes them at start-up
indexed = time.perf_counter() - start
handler = next(
    f for f in functions if f.get_function_name() == keys.KEY.function_name
).get_user_function()

def request():
    return func.HttpRequest(
        method="GET",
        url=f"http://127.0.0.1/v1/{mount}/key/{name}",
        headers={"X-Vault-Token": token},
        params={},
        route_params={"mount": mount, "name": name},
        body=b"",
    )

times = []
for _ in range(2):
    req = request()
    start = time.perf_counter()
    response = handler(req)
    times.append(time.perf_counter() - start)
    assert response.status_code == 200, response.status_code
print(json.dumps({"import": imported, "index": indexed, "first": times[0], "second": times[1]}))
"""


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # Our modules load from bytecode, as site-packages' do and as the published package's do
    # (its __pycache__ is compiled at publish): PYTHONDONTWRITEBYTECODE, if set here, would
    # make every child compile the app from source instead.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KEYMGMT_", "AZURE_", "IDENTITY_", "MSI_", "FUNCHOST_"))
        and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def _child(code: str, *args: str, env: Mapping[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        # The child's stderr can hold a traceback, never a secret: the settings stay in its env.
        raise RuntimeError(f"cold-start child failed: {result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


def bench_coldstart(stack: Stack | None, rec: Recorder, *, imports: int, firsts: int) -> None:
    modules = ("function_app", "azure.functions")
    for module in modules:  # write our bytecode once, untimed
        _child(IMPORT.format(module=module))
    samples: dict[str, list[float]] = {m: [] for m in modules}
    for i in range(imports):
        for module in modules if i % 2 == 0 else reversed(modules):
            samples[module].append(float(_child(IMPORT.format(module=module))))
    print(f"cold start (a fresh interpreter per import, {imports} each, alternated):")
    app = rec.samples("cold.import_function_app", "import function_app", samples["function_app"])
    sdk = rec.samples(
        "cold.import_azure_functions", "anchor: import azure.functions", samples["azure.functions"]
    )
    rec.ratio(
        "cold.import_ratio", "import function_app / import azure.functions", app / sdk, "<= 1.3"
    )
    if stack is None or firsts <= 0:
        return
    stack.engine.create("cold")  # the key the children read, made beforehand
    results = [
        json.loads(_child(FIRST_REQUEST, MOUNT, "cold", ROOT_TOKEN, env=stack.settings))
        for _ in range(firsts)
    ]
    print(f"first requests after the import (a fresh interpreter each, {firsts} runs):")
    for key, label in (
        ("index", "app.get_functions() after import (the worker's indexing)"),
        ("first", "first key read after import (builds the service)"),
        ("second", "second key read in that process"),
    ):
        values = [r[key] for r in results]
        median = statistics.median(values)
        spread = ", ".join(f"{v * 1000:.1f}" for v in values)
        print(f"  {label:<56} median {median * 1000:8.2f} ms   runs: {spread}")
        rec.add(f"cold.{key}_request", label, median * 1000, "ms")
