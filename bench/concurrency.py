"""``python -m bench.concurrency``: what one instance can serve, measured through the local host.

For the Flex Consumption settings in infra/ (per-instance HTTP concurrency, instance memory,
the Python worker's thread pool): docs/performance.md explains how these numbers become them.

- CPU per request: the host process's CPU seconds (utime + stime of every thread, from
  /proc/<pid>/stat) over the requests it served, for a key read, a key create (rsa-2048) and,
  with the Key Vault emulator, a distribution of a one-version key (``protection=hsm``); beside
  it Azurite's CPU per request (the stand-in for Table Storage) and the wall time per request
  at one client, so the time the engine waits rather than computes is visible;
- throughput and latency at 1, 2, 4, 8 and 16 concurrent clients, with the host's CPU per
  request and the cores it used (host CPU seconds / wall seconds): where the host reaches one
  core, the GIL is the limit and more concurrency only queues.

The levels are measured in rounds, interleaved (1, 2, 4, ... then again), and reported as
medians over the rounds: the machine is shared, so no single figure is trusted.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from tools.localstack import Azurite, FuncHost, emulator_settings, engine_settings, wait_healthy

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LEVELS = (1, 2, 4, 8, 16)
VAULT = "bench-vault"


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every process, every core), from
    /proc/stat: what other work on a shared machine took is visible beside ours."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of ``pid`` and its descendants, from /proc."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces) start at field 3 (state).
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        pending += _children(current)
    return total


@dataclass(frozen=True)
class Run:
    """One measured batch: requests served, wall seconds, CPU seconds of each process."""

    requests: int
    wall: float
    host_cpu: float
    azurite_cpu: float
    client_cpu: float
    machine_cpu: float
    latencies: tuple[float, ...]

    @property
    def throughput(self) -> float:
        return self.requests / self.wall

    @property
    def host_cpu_ms(self) -> float:
        return self.host_cpu / self.requests * 1000

    @property
    def azurite_cpu_ms(self) -> float:
        return self.azurite_cpu / self.requests * 1000

    @property
    def client_cpu_ms(self) -> float:
        return self.client_cpu / self.requests * 1000

    @property
    def host_cores(self) -> float:
        return self.host_cpu / self.wall

    @property
    def azurite_cores(self) -> float:
        return self.azurite_cpu / self.wall

    @property
    def client_cores(self) -> float:
        return self.client_cpu / self.wall

    @property
    def machine_cores(self) -> float:
        return self.machine_cpu / self.wall


def measure(
    op: Callable[[requests.Session], None],
    sessions: list[requests.Session],
    per_client: int,
    host_pid: int,
    azurite_pid: int,
) -> Run:
    """``per_client`` calls of ``op`` from each of ``len(sessions)`` threads at once."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start_line = threading.Barrier(len(sessions) + 1)

    def client(session: requests.Session) -> None:
        mine = []
        start_line.wait()
        try:
            for _ in range(per_client):
                began = time.perf_counter()
                op(session)
                mine.append(time.perf_counter() - began)
        except BaseException as exc:  # reported after the join
            errors.append(exc)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    host0, azurite0 = process_cpu(host_pid), process_cpu(azurite_pid)
    client0, machine0 = time.process_time(), machine_busy()
    wall0 = time.perf_counter()
    start_line.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall0
    if errors:
        raise errors[0]
    return Run(
        requests=len(latencies),
        wall=wall,
        host_cpu=process_cpu(host_pid) - host0,
        azurite_cpu=process_cpu(azurite_pid) - azurite0,
        client_cpu=time.process_time() - client0,
        machine_cpu=machine_busy() - machine0,
        latencies=tuple(latencies),
    )


def median_of(runs: list[Run], attribute: str) -> float:
    return statistics.median(getattr(r, attribute) for r in runs)


def keygen_probe(n: int) -> None:
    """The engine's rsa-2048 key generation (shared.keytypes) in this process, with a Python
    thread ticking beside it: its CPU per key, and the longest the ticker stalled during a
    generation. A stall as long as the generation would mean it holds the GIL."""
    from shared import keytypes

    stop = threading.Event()
    stamps: list[float] = []

    def ticker() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())

    thread = threading.Thread(target=ticker)
    thread.start()
    cpu, wall, stalls = [], [], []
    try:
        for _ in range(n):
            began, cpu0 = time.perf_counter(), time.thread_time()
            keytypes.generate("rsa-2048")
            cpu.append(time.thread_time() - cpu0)
            ended = time.perf_counter()
            wall.append(ended - began)
            inside = [t for t in stamps if began <= t <= ended]
            gaps = [b - a for a, b in itertools.pairwise(inside)]
            stalls.append(max(gaps, default=ended - began))
            stamps.clear()
    finally:
        stop.set()
        thread.join()
    # Held, the GIL would stall the ticker for a whole generation; released, for a few ms of
    # scheduling at most.
    verdict = "released" if statistics.median(stalls) < statistics.median(wall) / 4 else "HELD"
    print(
        f"rsa-2048 key generation in process ({n} keys, medians): "
        f"{statistics.median(cpu) * 1000:.1f} ms CPU, {statistics.median(wall) * 1000:.1f} ms wall;"
        f" a Python thread beside it stalled {statistics.median(stalls) * 1000:.1f} ms at most"
        f" (median over the keys; worst {max(stalls) * 1000:.1f} ms):"
        f" the GIL is {verdict} while the key is generated\n"
    )


def session_for(token: str) -> requests.Session:
    s = requests.Session()
    s.headers["X-Vault-Token"] = token
    return s


def bench(requests_per_level: int, rounds: int, with_distribution: bool) -> None:
    keygen_probe(max(requests_per_level // 16, 5))
    azurite = Azurite()
    emulator = None
    extra: dict[str, str] = {}
    if with_distribution:
        from tools.kvemu import Emulator

        emulator = Emulator({VAULT: 0}, cert_dir=tempfile.mkdtemp(prefix="bench-kvemu-"))
        client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
        app = emulator.add_client(client_id, secret)
        emulator.grant(VAULT, app.object_id, "Key Vault Crypto Officer")
        emulator.grant(VAULT, emulator.system_identity.object_id, "Key Vault Crypto Officer")
        emulator.start()
        extra = emulator_settings(emulator)
    host = FuncHost(engine_settings(azurite, f"benchc{os.getpid()}", **extra))
    try:
        wait_healthy(host.url)
        base = f"{host.url}/v1/keymgmt"
        admin = session_for("root")
        admin.post(f"{base}/key/hot", json={"type": "rsa-2048"}).raise_for_status()
        if emulator is not None:
            admin.put(
                f"{base}/kms/bench",
                json={
                    "provider": "azurekeyvault",
                    "key_collection": VAULT,
                    "credentials": {
                        "client_id": client_id,
                        "client_secret": secret,
                        "tenant_id": emulator.tenant_id,
                    },
                },
            ).raise_for_status()

        def read(s: requests.Session) -> None:
            r = s.get(f"{base}/key/hot")
            assert r.status_code == 200, r.text

        def create(s: requests.Session) -> None:
            r = s.post(f"{base}/key/c-{uuid.uuid4().hex[:12]}", json={"type": "rsa-2048"})
            assert r.status_code == 204, r.text

        to_distribute: list[str] = []

        def distribute(s: requests.Session) -> None:
            r = s.put(
                f"{base}/kms/bench/key/{to_distribute.pop()}",
                json={"purpose": "encrypt,decrypt", "protection": "hsm"},
            )
            assert r.status_code == 204, r.text

        def prepare_distribution(n: int) -> None:
            for _ in range(n):
                name = f"d-{uuid.uuid4().hex[:12]}"
                admin.post(f"{base}/key/{name}", json={"type": "rsa-2048"}).raise_for_status()
                to_distribute.append(name)

        sessions = [session_for("root") for _ in range(max(LEVELS))]
        for s in sessions:  # open every connection before anything is timed
            read(s)
        create(admin)
        if emulator is not None:
            prepare_distribution(1)
            distribute(admin)  # the first one creates the KEK and the provider's clients

        # 1. CPU per request, one client, the operations interleaved round by round.
        ops: dict[str, list[Run]] = {"read": [], "create (rsa-2048)": []}
        if emulator is not None:
            ops["distribute (1 version, hsm)"] = []
        n_seq = max(requests_per_level // 4, 10)
        for _ in range(rounds):
            ops["read"].append(
                measure(read, sessions[:1], requests_per_level, host.proc.pid, azurite.proc.pid)
            )
            ops["create (rsa-2048)"].append(
                measure(create, sessions[:1], n_seq // 2, host.proc.pid, azurite.proc.pid)
            )
            if emulator is not None:
                prepare_distribution(n_seq // 2)
                ops["distribute (1 version, hsm)"].append(
                    measure(distribute, sessions[:1], n_seq // 2, host.proc.pid, azurite.proc.pid)
                )

        print(f"CPU per request, one client ({os.cpu_count()} cores, medians of {rounds} rounds):")
        print(
            f"  {'operation':<30} {'wall p50 ms':>11} {'host CPU ms':>12} {'Azurite CPU ms':>15} "
            f"{'client CPU ms':>14} {'host waits ms':>14}"
        )
        for label, runs in ops.items():
            wall = statistics.median(statistics.median(r.latencies) for r in runs) * 1000
            host_ms = median_of(runs, "host_cpu_ms")
            print(
                f"  {label:<30} {wall:11.2f} {host_ms:12.2f} "
                f"{median_of(runs, 'azurite_cpu_ms'):15.2f} "
                f"{median_of(runs, 'client_cpu_ms'):14.2f} {wall - host_ms:14.2f}"
            )

        # 2. Throughput of reads and creates at each level of concurrency.
        for label, op, per_level in (
            ("read", read, requests_per_level),
            ("create (rsa-2048)", create, max(requests_per_level // 4, len(LEVELS) * 2)),
        ):
            levels: dict[int, list[Run]] = {c: [] for c in LEVELS}
            for _ in range(rounds):
                for c in LEVELS:
                    per_client = max(per_level // c, 2)
                    levels[c].append(
                        measure(op, sessions[:c], per_client, host.proc.pid, azurite.proc.pid)
                    )
            print(f"\n{label}: concurrent clients (medians of {rounds} rounds)")
            print(
                f"  {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} "
                f"{'host CPU ms/req':>16} {'host cores':>11} {'Azurite':>8} {'client':>7} "
                f"{'machine':>8}"
            )
            for c, runs in levels.items():
                p50 = statistics.median(statistics.median(r.latencies) for r in runs) * 1000
                p90 = (
                    statistics.median(statistics.quantiles(r.latencies, n=10)[-1] for r in runs)
                    * 1000
                )
                cells = [median_of(runs, "throughput"), p50, p90]
                cells += [
                    median_of(runs, a)
                    for a in ("host_cpu_ms", "host_cores", "azurite_cores", "client_cores")
                ]
                cells.append(median_of(runs, "machine_cores"))
                widths = (8, 8, 8, 16, 11, 8, 7, 8)
                print(
                    f"  {c:>7} "
                    + " ".join(f"{v:{w}.2f}" for v, w in zip(cells, widths, strict=True))
                )
    finally:
        host.stop()
        if emulator is not None:
            emulator.stop()
        azurite.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.concurrency", description=__doc__)
    parser.add_argument("--requests", type=int, default=240, help="reads per level and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-distribution", action="store_true", help="skip the Key Vault emulator"
    )
    args = parser.parse_args(argv)
    bench(args.requests, args.rounds, not args.no_distribution)
    return 0


if __name__ == "__main__":
    sys.exit(main())
