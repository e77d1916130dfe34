"""Cold start: ``import function_app`` vs. ``import azure.functions``, and the first request.

Every sample is a fresh interpreter that times its own imports (interpreter start-up is
not counted). The app's child then indexes the functions as the Python worker does
(``app.get_functions()``) and serves one key read through the registered HTTP trigger's own
function, against Azurite: the first request pays for whatever the import deferred, so
``import + first read`` shows a cost moved rather than removed.

``python -m bench.cold_start [--samples N] [--before DIR] [--no-bytecode]``: with ``--before``
(a checkout of another commit) both trees are measured, interleaved, in the same run. Our own
modules load from bytecode written at the warm-up, as site-packages' do (pip compiles them);
``--no-bytecode`` removes the trees' own ``__pycache__`` and writes none, which is what a
package without it (``.funcignore`` excludes ``__pycache__/``) on a read-only mount pays.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from tools.localstack import ROOT, Azurite, engine_settings

FRAMEWORK_CHILD = """
import time
t0 = time.perf_counter()
import azure.functions
print(time.perf_counter() - t0)
"""

APP_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import function_app
t1 = time.perf_counter()
import azure.functions as func
from shared.api.keys import KEY
functions = function_app.app.get_functions()
t2 = time.perf_counter()
handler = next(f for f in functions if f.get_function_name() == KEY.function_name)
request = func.HttpRequest(
    method=sys.argv[1],
    url="http://127.0.0.1/v1/keymgmt/key/cold",
    headers={"X-Vault-Token": "root", "Content-Type": "application/json"},
    body=sys.argv[2].encode(),
    route_params={"mount": "keymgmt", "name": "cold"},
)
response = handler.get_user_function()(request)
t3 = time.perf_counter()
assert response.status_code in (200, 204), (response.status_code, response.get_body())
print(json.dumps({"import": t1 - t0, "index": t2 - t1, "first": t3 - t2}))
"""


def _child(root: Path, code: str, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=root,
        env={**env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"child in {root} failed: {result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--before", type=Path, help="another checkout, measured interleaved")
    parser.add_argument("--no-bytecode", action="store_true", help="our modules from source")
    args = parser.parse_args()
    trees = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    if args.no_bytecode:
        for root in trees.values():
            for name in ("__pycache__", "shared", "functions"):
                for cache in [root / name, *(root / name).rglob("__pycache__")]:
                    if cache.name == "__pycache__":
                        shutil.rmtree(cache, ignore_errors=True)

    azurite = Azurite()
    try:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KEYMGMT_", "AZURE_")) and k != "PYTHONDONTWRITEBYTECODE"
        }
        if args.no_bytecode:
            base["PYTHONDONTWRITEBYTECODE"] = "1"
        env = {**base, **engine_settings(azurite, f"cold{os.getpid()}")}
        _child(ROOT, APP_CHILD, env, "POST", '{"type": "rsa-2048"}')  # the key to read
        for root in trees.values():  # warm the bytecode caches of every tree
            _child(root, APP_CHILD, env, "GET", "")
        samples: dict[str, dict[str, list[float]]] = {
            name: {"import": [], "index": [], "first": [], "framework": []} for name in trees
        }
        for _ in range(args.samples):
            for name, root in trees.items():
                framework = float(_child(root, FRAMEWORK_CHILD, env))
                app = json.loads(_child(root, APP_CHILD, env, "GET", ""))
                samples[name]["framework"].append(framework)
                for part in ("import", "index", "first"):
                    samples[name][part].append(app[part])
    finally:
        azurite.stop()

    def ms(values: list[float]) -> float:
        return statistics.median(values) * 1000

    print(
        f"{'tree':8} {'azure.functions':>16} {'function_app':>13} {'ratio':>6} "
        f"{'index':>7} {'first read':>11} {'import+first':>13}   (median ms of {args.samples})"
    )
    for name, s in samples.items():
        total = [i + f for i, f in zip(s["import"], s["first"], strict=True)]
        ratios = [a / f for a, f in zip(s["import"], s["framework"], strict=True)]
        print(
            f"{name:8} {ms(s['framework']):16.1f} {ms(s['import']):13.1f} "
            f"{statistics.median(ratios):6.2f} {ms(s['index']):7.1f} {ms(s['first']):11.1f} "
            f"{ms(total):13.1f}"
        )


if __name__ == "__main__":
    main()
