"""What one instance can serve, measured through the local host: the ``concurrency`` section of
``make bench``, run only when asked (``python -m bench --only concurrency``, about five minutes;
it is left out of the default run), or alone, printed and not recorded:
``python -m bench.concurrency [--requests N] [--rounds N] [--no-distribution]``.

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
medians over the rounds: the machine is shared, so no single figure is trusted. The stack is
bench/stack.py's (Azurite and the local host, with the emulator's settings), the CPU clocks
bench/common.py's; it runs on a stack of its own because the host must know the emulator when
it starts.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import requests

from bench.common import Recorder, machine_busy, process_cpu
from bench.stack import KEY_TYPE, Stack, key_vault, session
from tools.localstack import emulator_settings

LEVELS = (1, 2, 4, 8, 16)
VAULT = "bench-vault"


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


def keygen_probe(n: int, rec: Recorder) -> None:
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
    rec.add(
        "concurrency.keygen_cpu",
        "rsa-2048 keygen in process: CPU",
        statistics.median(cpu) * 1000,
        "ms",
    )
    rec.add(
        "concurrency.keygen_stall",
        "rsa-2048 keygen: longest stall of a Python thread beside it",
        statistics.median(stalls) * 1000,
        "ms",
    )


def bench_concurrency(
    rec: Recorder, requests_per_level: int, rounds: int, with_distribution: bool
) -> None:
    """Measure on a stack of its own (Azurite and the local host; with ``with_distribution``
    the Key Vault emulator too, which the host must know at its start), and record into
    ``rec`` (``concurrency.*``)."""
    keygen_probe(max(requests_per_level // 16, 5), rec)
    emulator = None
    extra: dict[str, str] = {}
    credentials: dict[str, str] | None = None
    if with_distribution:
        emulator, credentials = key_vault(VAULT)
        extra = emulator_settings(emulator)
    stack: Stack | None = None
    try:
        stack = Stack(extra, openbao=False)
        _bench(stack, rec, requests_per_level, rounds, credentials)
    finally:
        if stack is not None:
            stack.stop()
        if emulator is not None:
            emulator.stop()


def _bench(
    stack: Stack,
    rec: Recorder,
    requests_per_level: int,
    rounds: int,
    credentials: dict[str, str] | None,
) -> None:
    """The measures; ``credentials``: the emulator's app, to distribute (None: no distribution)."""
    with_distribution = credentials is not None
    assert stack.host is not None
    host_pid, azurite_pid = stack.host.proc.pid, stack.azurite.proc.pid
    keys_url = stack.keys_url
    base = keys_url.rsplit("/", 1)[0]
    admin = session()
    admin.post(f"{keys_url}/hot", json={"type": KEY_TYPE}).raise_for_status()
    if credentials is not None:
        admin.put(
            f"{base}/kms/bench",
            json={"provider": "azurekeyvault", "key_collection": VAULT, "credentials": credentials},
        ).raise_for_status()

    def read(s: requests.Session) -> None:
        r = s.get(f"{keys_url}/hot")
        assert r.status_code == 200, r.text

    def create(s: requests.Session) -> None:
        r = s.post(f"{keys_url}/c-{uuid.uuid4().hex[:12]}", json={"type": KEY_TYPE})
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
            admin.post(f"{keys_url}/{name}", json={"type": KEY_TYPE}).raise_for_status()
            to_distribute.append(name)

    sessions = [session() for _ in range(max(LEVELS))]
    for s in sessions:  # open every connection before anything is timed
        read(s)
    create(admin)
    if with_distribution:
        prepare_distribution(1)
        distribute(admin)  # the first one creates the KEK and the provider's clients

    # 1. CPU per request, one client, the operations interleaved round by round.
    ops: dict[str, list[Run]] = {"read": [], "create (rsa-2048)": []}
    if with_distribution:
        ops["distribute (1 version, hsm)"] = []
    n_seq = max(requests_per_level // 4, 10)
    for _ in range(rounds):
        ops["read"].append(measure(read, sessions[:1], requests_per_level, host_pid, azurite_pid))
        ops["create (rsa-2048)"].append(
            measure(create, sessions[:1], n_seq // 2, host_pid, azurite_pid)
        )
        if with_distribution:
            prepare_distribution(n_seq // 2)
            ops["distribute (1 version, hsm)"].append(
                measure(distribute, sessions[:1], n_seq // 2, host_pid, azurite_pid)
            )

    print(f"CPU per request, one client ({os.cpu_count()} cores, medians of {rounds} rounds):")
    print(
        f"  {'operation':<30} {'wall p50 ms':>11} {'host CPU ms':>12} {'Azurite CPU ms':>15} "
        f"{'client CPU ms':>14} {'host waits ms':>14}"
    )
    for label, runs in ops.items():
        wall = statistics.median(statistics.median(r.latencies) for r in runs) * 1000
        host_ms = median_of(runs, "host_cpu_ms")
        azurite_ms = median_of(runs, "azurite_cpu_ms")
        print(
            f"  {label:<30} {wall:11.2f} {host_ms:12.2f} {azurite_ms:15.2f} "
            f"{median_of(runs, 'client_cpu_ms'):14.2f} {wall - host_ms:14.2f}"
        )
        op = label.split(" ", 1)[0]
        rec.add(f"concurrency.{op}.wall", f"one client, {label}: wall p50", wall, "ms")
        rec.add(f"concurrency.{op}.host_cpu", f"one client, {label}: host CPU", host_ms, "ms")
        rec.add(
            f"concurrency.{op}.azurite_cpu", f"one client, {label}: Azurite CPU", azurite_ms, "ms"
        )

    # 2. Throughput of reads and creates at each level of concurrency.
    for label, op_fn, per_level in (
        ("read", read, requests_per_level),
        ("create (rsa-2048)", create, max(requests_per_level // 4, len(LEVELS) * 2)),
    ):
        levels: dict[int, list[Run]] = {c: [] for c in LEVELS}
        for _ in range(rounds):
            for c in LEVELS:
                per_client = max(per_level // c, 2)
                levels[c].append(measure(op_fn, sessions[:c], per_client, host_pid, azurite_pid))
        print(f"\n{label}: concurrent clients (medians of {rounds} rounds)")
        print(
            f"  {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} "
            f"{'host CPU ms/req':>16} {'host cores':>11} {'Azurite':>8} {'client':>7} "
            f"{'machine':>8}"
        )
        op = label.split(" ", 1)[0]
        for c, runs in levels.items():
            p50 = statistics.median(statistics.median(r.latencies) for r in runs) * 1000
            p90 = (
                statistics.median(statistics.quantiles(r.latencies, n=10)[-1] for r in runs) * 1000
            )
            cells = [median_of(runs, "throughput"), p50, p90]
            cells += [
                median_of(runs, a)
                for a in ("host_cpu_ms", "host_cores", "azurite_cores", "client_cores")
            ]
            cells.append(median_of(runs, "machine_cores"))
            widths = (8, 8, 8, 16, 11, 8, 7, 8)
            print(
                f"  {c:>7} " + " ".join(f"{v:{w}.2f}" for v, w in zip(cells, widths, strict=True))
            )
            rec.add(f"concurrency.{op}.{c}.rate", f"{label}, {c} clients", cells[0], "req/s")
            rec.add(f"concurrency.{op}.{c}.p50", f"{label}, {c} clients: p50", p50, "ms")
            rec.add(
                f"concurrency.{op}.{c}.host_cpu",
                f"{label}, {c} clients: host CPU per request",
                cells[3],
                "ms",
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.concurrency", description=__doc__)
    parser.add_argument("--requests", type=int, default=240, help="reads per level and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-distribution", action="store_true", help="skip the Key Vault emulator"
    )
    args = parser.parse_args(argv)
    bench_concurrency(Recorder(), args.requests, args.rounds, not args.no_distribution)
    return 0


if __name__ == "__main__":
    sys.exit(main())
