"""Cold start: ``import function_app`` against ``import azure.functions``, each in a fresh
interpreter, the import timed inside the child (``time.perf_counter`` around the import, so the
interpreter's own start-up is left out), the two alternated; then the first request after the
import: a fresh child imports function_app and calls the registered function of
``GET /v1/<mount>/key/<name>`` with an ``azure.functions.HttpRequest`` (it builds the service and
opens the first Table connection), against a key made beforehand; the second request's time too,
and import + first request (the first request pays for whatever the import deferred, so the sum
shows a cost moved rather than removed).
The children load our modules from bytecode written by an untimed first child, as site-packages'
modules and the published package's (compiled at publish) load.

Part of ``make bench`` (the ``cold`` section); alone, printed and not recorded:
``python -m bench.coldstart [--imports N] [--firsts N] [--before DIR] [--no-bytecode]``. With
``--before`` (a checkout of another commit) both trees are measured, interleaved, in the same
run, each child with ``PYTHONPATH`` and working directory in its own tree. ``--no-bytecode``
removes the trees' own ``__pycache__`` (the app's, ``shared/``'s and ``functions/``') and writes
none: what a package without it (``.funcignore`` excludes ``__pycache__/``) on a read-only mount
pays at every cold start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from bench.common import Recorder
from bench.stack import MOUNT, InProcess, Stack
from tools.localstack import ROOT, ROOT_TOKEN, Azurite, engine_settings

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


def _env(root: Path, extra: Mapping[str, str] | None, no_bytecode: bool) -> dict[str, str]:
    # Our modules load from bytecode, as site-packages' do and as the published package's do
    # (its __pycache__ is compiled at publish): PYTHONDONTWRITEBYTECODE, if set here, would
    # make every child compile the app from source instead (--no-bytecode asks for exactly that).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KEYMGMT_", "AZURE_", "IDENTITY_", "MSI_", "FUNCHOST_"))
        and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPATH"] = str(root)
    if no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def _child(
    code: str,
    *args: str,
    root: Path = ROOT,
    env: Mapping[str, str] | None = None,
    no_bytecode: bool = False,
) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=root,
        env=_env(root, env, no_bytecode),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        # The child's stderr can hold a traceback, never a secret: the settings stay in its env.
        raise RuntimeError(f"cold-start child in {root} failed: {result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


def remove_bytecode(root: Path) -> None:
    """Delete the app's own ``__pycache__`` directories in ``root`` (not site-packages')."""
    for name in ("__pycache__", "shared", "functions"):
        top = root / name
        for cache in [top, *top.rglob("__pycache__")]:
            if cache.name == "__pycache__":
                shutil.rmtree(cache, ignore_errors=True)


def bench_coldstart(
    stack: Stack | None,
    rec: Recorder,
    *,
    imports: int,
    firsts: int,
    settings: Mapping[str, str] | None = None,
    make_key: InProcess | None = None,
    before: Path | None = None,
    no_bytecode: bool = False,
) -> None:
    """Record the cold-start measures of this checkout (``cold.*``) and, with ``before``, of
    that checkout too (``cold.before.*``), interleaved. The first-request part needs an
    engine: ``stack``, or ``settings`` with ``make_key`` (an in-process engine on them)."""
    trees = {"": ROOT, **({"before": before.resolve()} if before else {})}
    if no_bytecode:
        for root in trees.values():
            remove_bytecode(root)
    modules = ("function_app", "azure.functions")
    runs = [(tree, module) for tree in trees for module in modules]
    for tree, module in runs:  # write our bytecode once (none with --no-bytecode), untimed
        _child(IMPORT.format(module=module), root=trees[tree], no_bytecode=no_bytecode)
    samples: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    for i in range(imports):
        for tree, module in runs if i % 2 == 0 else reversed(runs):
            out = _child(IMPORT.format(module=module), root=trees[tree], no_bytecode=no_bytecode)
            samples[(tree, module)].append(float(out))
    how = "from source, no bytecode" if no_bytecode else "from bytecode"
    print(f"cold start (a fresh interpreter per import, {imports} each, alternated, {how}):")
    for tree in trees:
        key = f"cold.{tree}." if tree else "cold."
        of = f" ({tree}: {trees[tree]})" if tree else ""
        app = rec.samples(
            f"{key}import_function_app", f"import function_app{of}", samples[(tree, modules[0])]
        )
        sdk = rec.samples(
            f"{key}import_azure_functions",
            f"anchor: import azure.functions{of}",
            samples[(tree, modules[1])],
        )
        rec.ratio(
            f"{key}import_ratio",
            f"import function_app / import azure.functions{of}",
            app / sdk,
            None if tree else "<= 1.3",
        )
    if stack is not None:
        settings, make_key = stack.settings, stack.engine
    if settings is None or make_key is None or firsts <= 0:
        return
    make_key.create("cold")  # the key the children read, made beforehand
    results: dict[str, list[dict[str, float]]] = {tree: [] for tree in trees}
    for i in range(firsts):
        for tree in trees if i % 2 == 0 else reversed(list(trees)):
            out = _child(
                FIRST_REQUEST,
                MOUNT,
                "cold",
                ROOT_TOKEN,
                root=trees[tree],
                env=settings,
                no_bytecode=no_bytecode,
            )
            results[tree].append(json.loads(out))
    print(f"first requests after the import (a fresh interpreter each, {firsts} runs):")
    for tree, runs_of in results.items():
        key = f"cold.{tree}." if tree else "cold."
        of = f" ({tree})" if tree else ""
        for r in runs_of:
            r["import_plus_first"] = r["import"] + r["first"]
        for part, label in (
            ("index", "app.get_functions() after import (the worker's indexing)"),
            ("first", "first key read after import (builds the service)"),
            ("second", "second key read in that process"),
            ("import_plus_first", "import function_app + first key read"),
        ):
            values = [r[part] for r in runs_of]
            median = statistics.median(values)
            spread = ", ".join(f"{v * 1000:.1f}" for v in values)
            print(f"  {label + of:<56} median {median * 1000:8.2f} ms   runs: {spread}")
            rec.add(f"{key}{part}_request", label + of, median * 1000, "ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.coldstart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--imports", type=int, default=10, help="import samples per side")
    parser.add_argument("--firsts", type=int, default=3, help="first-request children per tree")
    parser.add_argument("--before", type=Path, help="another checkout, measured interleaved")
    parser.add_argument(
        "--no-bytecode", action="store_true", help="our modules from source (no __pycache__)"
    )
    args = parser.parse_args(argv)
    azurite = Azurite()
    try:
        settings = engine_settings(azurite, f"cold{os.getpid()}")
        bench_coldstart(
            None,
            Recorder(),
            imports=args.imports,
            firsts=args.firsts,
            settings=settings,
            make_key=InProcess(settings),
            before=args.before,
            no_bytecode=args.no_bytecode,
        )
    finally:
        azurite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
