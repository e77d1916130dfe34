"""``python -m bench.host``: where a key read's time goes, layer by layer, in one run.

The same read of one key, interleaved so machine noise hits every side alike:

- (a) the engine in process: ``shared.api.handle`` with an ``ApiRequest`` (no HTTP);
- (b) the function handler with an ``azure.functions.HttpRequest`` (adds the adapter);
- (c) through the local Functions host over HTTP, one keep-alive ``requests.Session``;
- OpenBao transit's read of a key (``bao server -dev``), and one Table point read.

Then 8 clients reading the key through the host against 8 threads of raw SDK point reads
(``TableClient.get_entity``) in this process, alternated in rounds, as requests per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from bench.common import report
from tools.localstack import ROOT_TOKEN, Azurite, FuncHost, engine_settings, wait_healthy


def _once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(
    fn_per_thread: Callable[[], Callable[[], object]], threads: int, seconds: float
) -> float:
    """Requests per second of ``threads`` threads, each calling its own ``fn`` for ``seconds``."""
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(index: int) -> None:
        fn = fn_per_thread()
        fn()  # its connection opened before the clock starts
        barrier.wait()
        while not stop.is_set():
            fn()
            counts[index] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def process_cpu(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.host", description=__doc__)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--no-openbao", action="store_true")
    args = parser.parse_args(argv)

    azurite = Azurite()
    prefix = f"benchhost{os.getpid()}"
    settings = engine_settings(azurite, prefix)
    os.environ.update(settings)  # the in-process engine reads the same app settings
    host = FuncHost(settings)
    bao = None
    try:
        import azure.functions as func
        from azure.data.tables import TableServiceClient

        from functions._http import serve
        from shared import service
        from shared.api import handle
        from shared.api.routes import ALL
        from shared.vaultapi import ApiRequest

        wait_healthy(host.url)
        session = requests.Session()
        session.headers["X-Vault-Token"] = ROOT_TOKEN
        base = f"{host.url}/v1/keymgmt"
        session.post(f"{base}/key/warmup", json={"type": "rsa-2048"}).raise_for_status()
        url = f"{base}/key/warmup"

        spec = next(s for s in ALL if s.pattern == "key/:name")
        params = {"mount": "keymgmt", "name": "warmup"}

        def in_process() -> None:
            request = ApiRequest(
                method="GET",
                headers={"x-vault-token": ROOT_TOKEN},
                remote_address="127.0.0.1",
                path="keymgmt/key/warmup",
            )
            assert handle(spec, request, params, service.get).status == 200

        def adapter() -> None:
            req = func.HttpRequest(
                method="GET",
                url="http://127.0.0.1/v1/keymgmt/key/warmup",
                headers={"x-vault-token": ROOT_TOKEN, "client-ip": "127.0.0.1:1"},
                params={},
                route_params=params,
                body=b"",
            )
            assert serve(spec, req).status_code == 200

        def over_http() -> None:
            assert session.get(url).status_code == 200

        tables = TableServiceClient.from_connection_string(azurite.connection_string)
        anchor = tables.create_table_if_not_exists(f"{prefix}anchor")
        anchor.upsert_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})

        def point_read() -> None:
            anchor.get_entity("p", "r")

        sides: dict[str, Callable[[], None]] = {
            "(a) engine in process (shared.api.handle)": in_process,
            "(b) function handler (adapter + engine)": adapter,
            "(c) through the local host (HTTP keep-alive)": over_http,
            "one Table point read (SDK)": point_read,
        }
        if not args.no_openbao:
            from tests.fixtures.openbao import OpenBao

            bao = OpenBao()
            bao_session = requests.Session()
            bao_session.headers["X-Vault-Token"] = "root"
            bao_session.post(f"{bao.url}/v1/sys/mounts/transit", json={"type": "transit"})
            bao_session.post(
                f"{bao.url}/v1/transit/keys/warmup", json={"type": "rsa-2048"}
            ).raise_for_status()

            def bao_read() -> None:
                assert bao_session.get(f"{bao.url}/v1/transit/keys/warmup").status_code == 200

            sides["OpenBao transit read"] = bao_read

        samples: dict[str, list[float]] = {label: [] for label in sides}
        for fn in sides.values():
            fn()
        # The CPU each read costs the process that serves it: this one in process, the
        # host's through it, OpenBao's for its own (Linux clock ticks, summed over the run).
        clocks: dict[str, Callable[[], float]] = {label: time.process_time for label in sides}
        clocks["(c) through the local host (HTTP keep-alive)"] = lambda: process_cpu(host.proc.pid)
        if bao is not None:
            bao_pid = bao.proc.pid
            clocks["OpenBao transit read"] = lambda: process_cpu(bao_pid)
        cpu = dict.fromkeys(sides, 0.0)
        for _ in range(args.reads):
            for label, fn in sides.items():
                before = clocks[label]()
                samples[label].append(_once(fn))
                cpu[label] += clocks[label]() - before
        print(f"a key read, {args.reads} interleaved samples each:")
        medians = {label: report(label, s) for label, s in samples.items()}
        print("  CPU per read of the serving process (mean):")
        for label, total in cpu.items():
            print(f"    {label:<54} {total / args.reads * 1000:6.2f} ms")
        a, b, c = (medians[k] for k in list(sides)[:3])
        point = medians["one Table point read (SDK)"]
        adapter_ms, host_ms = (b - a) * 1000, (c - b) * 1000
        print(f"  adapter (b - a): {adapter_ms:.2f} ms; host and HTTP (c - b): {host_ms:.2f} ms")
        print(f"  ratio engine in process / one point read: {a / point:.2f}")
        if "OpenBao transit read" in medians:
            print(f"  ratio through the host / OpenBao: {c / medians['OpenBao transit read']:.2f}")

        def host_client() -> Callable[[], None]:
            s = requests.Session()
            s.headers["X-Vault-Token"] = ROOT_TOKEN

            def read() -> None:
                assert s.get(url).status_code == 200

            return read

        sdk_table = tables.get_table_client(f"{prefix}anchor")

        def sdk_client() -> Callable[[], None]:
            return lambda: sdk_table.get_entity("p", "r")

        # CPU time per request as well: less sensitive to other load than a rate is, and it
        # says which process the time goes to (the host's, or this one's SDK threads).
        host_rates, sdk_rates, host_cpu, sdk_cpu = [], [], [], []
        for _ in range(args.rounds):
            before = process_cpu(host.proc.pid)
            rate = throughput(host_client, args.threads, args.seconds)
            host_rates.append(rate)
            host_cpu.append((process_cpu(host.proc.pid) - before) / (rate * args.seconds))
            before = process_cpu(os.getpid())
            rate = throughput(sdk_client, args.threads, args.seconds)
            sdk_rates.append(rate)
            sdk_cpu.append((process_cpu(os.getpid()) - before) / (rate * args.seconds))
        h, s = statistics.median(host_rates), statistics.median(sdk_rates)
        print(f"{args.threads} clients, {args.rounds} alternated rounds of {args.seconds} s:")
        for label, median, rates, cpu in (
            ("through the local host", h, host_rates, host_cpu),
            ("raw SDK point reads", s, sdk_rates, sdk_cpu),
        ):
            print(
                f"  {label:<24} median {median:8.1f} req/s  {sorted(round(r) for r in rates)}"
                f"   CPU {statistics.median(cpu) * 1000:.2f} ms/request"
            )
        print(f"  ratio host / raw SDK: {h / s:.2f}")
        print("  (CPU: the host process's for a read through it, this process's for a point read)")
    finally:
        host.stop()
        azurite.stop()
        if bao is not None:
            bao.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
