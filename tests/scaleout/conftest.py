"""Scale-out plumbing: three local hosts on one Azurite and one Key Vault emulator, all on the
same settings (table prefix, seal key, root token, vault URLs), as three instances of the
Function App would be; requests spread round-robin; hosts killed hard and replaced.

Every request a scenario sends is counted with the status it got, and the invariants it
checked are named; at the end of the session the figures go to
``.local/audit/scaleout-<worker>.json`` (git-ignored), for the closing note.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.fixtures.azurite import ROOT, Azurite
from tests.fixtures.funchost import (
    ROOT_TOKEN,
    Api,
    FuncHost,
    emulator_settings,
    engine_settings,
    wait_healthy,
)
from tools.kvemu import Emulator

AUDIT_DIR = ROOT / ".local" / "audit"
HOSTS = 3
MOUNT = "keymgmt"
VAULT = "scaleout-vault"
# Vaults nobody distributed to yet: each is used once, for a first distribution (the KEK race).
FRESH_VAULTS = ("kek-fresh-one", "kek-fresh-two")
DELETE_DELAY = 0.3
OFFICER = "Key Vault Crypto Officer"


# -- the tally -----------------------------------------------------------------------------------


class Tally:
    """Requests sent and statuses seen per scenario (test), and the invariants it checked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = "<outside a test>"
        self.scenarios: dict[str, dict[str, Any]] = {}

    def _entry(self) -> dict[str, Any]:
        return self.scenarios.setdefault(
            self.current,
            {"requests": 0, "statuses": Counter(), "invariants": [], "violations": []},
        )

    def seen(self, status: int | str) -> None:
        with self._lock:
            entry = self._entry()
            entry["requests"] += 1
            entry["statuses"][str(status)] += 1

    def checked(self, invariant: str, ok: bool) -> None:
        with self._lock:
            entry = self._entry()
            if invariant not in entry["invariants"]:
                entry["invariants"].append(invariant)
            if not ok and invariant not in entry["violations"]:
                entry["violations"].append(invariant)

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
                "hosts": HOSTS,
                "totals": {
                    "requests": sum(e["requests"] for e in self.scenarios.values()),
                    "statuses": dict(
                        sum((e["statuses"] for e in self.scenarios.values()), Counter())
                    ),
                },
                "scenarios": {
                    name: {**entry, "statuses": dict(sorted(entry["statuses"].items()))}
                    for name, entry in sorted(self.scenarios.items())
                },
            }


_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Iterator[Tally]:
    yield _TALLY
    AUDIT_DIR.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (AUDIT_DIR / f"scaleout-{worker}.json").write_text(json.dumps(_TALLY.report(), indent=2) + "\n")


@pytest.fixture(autouse=True)
def _tally_current_test(request: pytest.FixtureRequest, tally: Tally) -> Iterator[None]:
    tally.current = request.node.name
    yield
    tally.current = "<outside a test>"


class CountedApi(Api):
    """``Api`` (root token, its own requests session: one per thread) that tallies each answer;
    a connection that breaks (a host killed under it) is tallied as ``connection-error``."""

    def __init__(self, host: FuncHost, tally: Tally) -> None:
        super().__init__(host, ROOT_TOKEN)
        self.tally = tally

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = super().request(method, path, **kwargs)
        except requests.ConnectionError:
            self.tally.seen("connection-error")
            raise
        self.tally.seen(response.status_code)
        return response


# -- the cluster ---------------------------------------------------------------------------------


class Cluster:
    """Three hosts on the same settings; round-robin APIs, admin invocations, kill/replace."""

    def __init__(self, settings: dict[str, str], emulator: Emulator, azurite: Azurite) -> None:
        from azure.data.tables import TableClient

        self.settings = settings
        self.kv = emulator
        self.tally = _TALLY
        self.prefix = settings["KEYMGMT_TABLE_PREFIX"]
        with ThreadPoolExecutor(HOSTS) as pool:
            self.hosts: list[FuncHost] = list(pool.map(lambda _: self._start(), range(HOSTS)))
        self._turn = itertools.count()
        self._turn_lock = threading.Lock()
        self.table = TableClient.from_connection_string(
            azurite.connection_string, f"{self.prefix}state"
        )

    def _start(self) -> FuncHost:
        host = FuncHost(self.settings)
        try:
            wait_healthy(host.url)
        except Exception:
            host.stop()
            raise
        return host

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()

    # -- requests --------------------------------------------------------------------------

    def api(self, index: int | None = None) -> CountedApi:
        """A new API client (one per thread) on host ``index``, or on the next host in turn."""
        if index is None:  # the next live host (a killed one gets nothing until replaced)
            with self._turn_lock:
                for _ in range(len(self.hosts)):
                    index = next(self._turn) % len(self.hosts)
                    if self.hosts[index].proc.poll() is None:
                        break
        return CountedApi(self.hosts[index], self.tally)

    def apis(self, n: int) -> list[CountedApi]:
        """``n`` clients spread round-robin over the hosts, starting with host 0."""
        return [self.api(i % len(self.hosts)) for i in range(n)]

    def admin(self, index: int, function: str) -> int:
        """Run a timer function on host ``index`` (the admin endpoint answers when it is done)."""
        try:
            response = requests.post(
                f"{self.hosts[index].url}/admin/functions/{function}", json={}, timeout=600
            )
        except requests.ConnectionError:
            self.tally.seen("connection-error")
            raise
        self.tally.seen(response.status_code)
        return response.status_code

    def reconcile(self, index: int = 0) -> dict[str, Any]:
        """One reconciler run on host ``index``; returns the stored summary."""
        assert self.admin(index, "reconciler") == 202
        return self.api(index).get("sys/keymgmt/reconcile").json()["data"]

    def sweep(self, index: int = 0) -> int:
        return self.admin(index, "rotation_sweep")

    def deliver(self, index: int, event: dict[str, Any]) -> int:
        webhook = f"{self.hosts[index].url}/runtime/webhooks/eventgrid?functionName=keyvault_events"
        response = requests.post(
            webhook, json=[event], timeout=120, headers={"aeg-event-type": "Notification"}
        )
        self.tally.seen(response.status_code)
        return response.status_code

    # -- hosts -----------------------------------------------------------------------------

    def kill(self, index: int) -> None:
        """SIGKILL host ``index`` and everything it started (its own process group)."""
        host = self.hosts[index]
        try:
            os.killpg(host.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            host.proc.wait(30)
        except subprocess.TimeoutExpired:
            host.proc.kill()
            host.proc.wait()

    def replace(self, index: int) -> FuncHost:
        """A new host on the same settings in place of host ``index`` (killed first if alive)."""
        old = self.hosts[index]
        if old.proc.poll() is None:
            self.kill(index)
        old.stop()
        self.hosts[index] = self._start()
        return self.hosts[index]

    def log_mark(self, index: int) -> int:
        return len(self.hosts[index].logs())

    def log_since(self, index: int, mark: int) -> str:
        return self.hosts[index].logs()[mark:]

    # -- storage ---------------------------------------------------------------------------

    def rows(self, partition: str, prefix: str = "") -> list[Any]:
        if not prefix:
            return list(
                self.table.query_entities("PartitionKey eq @pk", parameters={"pk": partition})
            )
        return list(
            self.table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={
                    "pk": partition,
                    "lo": prefix,
                    "hi": prefix[:-1] + chr(ord(prefix[-1]) + 1),
                },
            )
        )

    def row(self, partition: str, row: str) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    # -- Key Vault -------------------------------------------------------------------------

    def vault(self, name: str = VAULT) -> dict[str, Any]:
        return next(v for v in self.kv.describe() if v["name"] == name)

    def remote(self, name: str, vault: str = VAULT) -> list[dict[str, Any]] | None:
        """Versions of the live Key Vault key ``name``, or None."""
        for key in self.vault(vault)["keys"]:
            if key["name"] == name:
                return key["versions"]
        return None

    def live_names(self, prefix: str, vault: str = VAULT) -> list[str]:
        return sorted(k["name"] for k in self.vault(vault)["keys"] if k["name"].startswith(prefix))


def log_summaries(text: str, kind: str) -> list[dict[str, int]]:
    """The ``rotation sweep: due=.. rotated=..`` or ``reconcile: distributions=.. imported=..``
    lines a host logged (each run logs its own counts), as dicts of ints."""
    head = {"sweep": "rotation sweep:", "reconcile": "reconcile:"}[kind]
    out = []
    for line in text.splitlines():
        at = line.find(f" {head} ")
        if at < 0:
            continue
        out.append({k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line[at:])})
    return out


def errors_in(text: str) -> list[str]:
    """Log lines at ERROR level or of a traceback."""
    return [
        line
        for line in text.splitlines()
        if " ERROR " in line or line.startswith("Traceback") or " CRITICAL " in line
    ]


@pytest.fixture(scope="module")
def scaleout_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator(
        {VAULT: 0, **{name: 0 for name in FRESH_VAULTS}},
        cert_dir=tmp_path_factory.mktemp("scaleout-kv"),
        delete_delay=DELETE_DELAY,
    )
    for name in emulator.vaults:
        emulator.grant(name, emulator.system_identity.object_id, OFFICER)
    with emulator:
        yield emulator


@pytest.fixture(scope="module")
def cluster(azurite: Azurite, scaleout_emulator: Emulator, tally: Tally) -> Iterator[Cluster]:
    # Built once: every host gets the same seal key (engine_settings draws a new one per call).
    settings = engine_settings(
        azurite,
        f"so{os.getpid()}",
        KEYMGMT_ALLOW_SHORT_ROTATION="true",
        **emulator_settings(scaleout_emulator),
    )
    group = Cluster(settings, scaleout_emulator, azurite)
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
def so(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster, with every host alive and no Key Vault fault left after the test."""
    yield cluster
    cluster.kv.clear_faults()
    for i, host in enumerate(cluster.hosts):
        if host.proc.poll() is not None:
            cluster.replace(i)


def together(calls: Sequence[Any]) -> list[Any]:
    """Run the callables at once (one thread each, released by a barrier); their results, or
    the exception each raised, in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Any) -> Any:
        barrier.wait(timeout=60)
        try:
            return call()
        except Exception as exc:  # a killed host's broken connection, say
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))
