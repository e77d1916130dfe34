"""Keys side by side with OpenBao transit and with the engine's storage floors, in one run.

Every sample takes one of each side in turn (the order reversed every other round), so
machine noise hits both sides of a ratio alike; values are medians. See bench/README.md.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import Recorder, interleaved, machine_busy, process_cpu
from bench.stack import KEY_TYPE, MOUNT, READS, Stack, replayer, session, uncached_calls


def throughput(workers: list[Callable[[], object]], max_requests: int, seconds: float) -> float:
    """Requests per second of ``len(workers)`` threads, each calling its own worker until
    ``max_requests`` are done in all or ``seconds`` have passed."""
    lock = threading.Lock()
    state = {"issued": 0, "done": 0}
    errors: list[BaseException] = []
    start_gate = threading.Barrier(len(workers) + 1)
    deadline = [0.0]

    def run(worker: Callable[[], object]) -> None:
        start_gate.wait()
        try:
            while True:
                with lock:
                    if state["issued"] >= max_requests or time.perf_counter() > deadline[0]:
                        return
                    state["issued"] += 1
                worker()
                with lock:
                    state["done"] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    start_gate.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return state["done"] / elapsed


def _size(entity: dict[str, Any]) -> int:
    """Bytes of a row's values (strings as UTF-8), about what the row weighs on the wire."""
    total = 0
    for value in entity.values():
        raw = getattr(value, "value", value)
        if isinstance(raw, str):
            total += len(raw.encode())
        elif isinstance(raw, (bytes, bytearray)):
            total += len(raw)
        else:
            total += 8
    return total


def _describe(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A recorded call's arguments, names and filters only (no values of stored rows)."""
    parts = [repr(a) for a in args]
    parts += [f"{k}={v!r}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _summary(calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> str:
    """``get_entity x4, submit_transaction x1 (3 rows)``: what a recorded request sent."""
    counts: dict[str, int] = {}
    rows = 0
    for method, args, kwargs in calls:
        counts[method] = counts.get(method, 0) + 1
        if method == "submit_transaction":
            rows += len(args[0] if args else kwargs.get("operations", []))
    text = ", ".join(f"{m} x{n}" for m, n in counts.items()) or "nothing recorded"
    return text + (f" ({rows} rows in transactions)" if rows else "")


def _rows_written(calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]], name: str) -> list[Any]:
    """The key row and the version row the engine wrote in its create transaction(s): the
    rows named ``key:<name>:...`` (docs/storage.md), else the two largest rows written."""
    rows = []
    for method, args, kwargs in calls:
        if method == "submit_transaction":
            ops = args[0] if args else kwargs.get("operations", [])
            rows += [op[1] for op in ops if op[0] != "delete"]
        elif method in ("create_entity", "upsert_entity", "update_entity"):
            rows.append(args[0] if args else kwargs.get("entity"))
    named = [r for r in rows if str(r.get("RowKey", "")).startswith(f"key:{name}:")]
    chosen = named if len(named) == 2 else sorted(rows, key=_size, reverse=True)[:2]
    return [{k: v for k, v in r.items() if k not in ("PartitionKey", "RowKey")} for r in chosen]


def bench_keys(
    stack: Stack,
    rec: Recorder,
    *,
    creates: int,
    reads: int,
    rounds: int,
    clients: int,
    seconds: float,
) -> None:
    from shared import keytypes

    engine = stack.engine
    ours = session()
    bao = session()
    keys_url, transit_url = stack.keys_url, stack.transit_url

    # Policies first: the in-process engine's policy cache (KEYMGMT_POLICY_CACHE_SECONDS, as
    # on another instance) sees them within seconds, while the creates run.
    token = _policy_token(stack)

    # -- warm up every side: the first request of each builds clients, caches, connections
    ours.post(f"{keys_url}/warm", json={"type": KEY_TYPE}).raise_for_status()
    bao.post(f"{transit_url}/warm", json={"type": KEY_TYPE}).raise_for_status()
    for _ in range(5):
        ours.get(f"{keys_url}/warm").raise_for_status()
        bao.get(f"{transit_url}/warm").raise_for_status()
        engine.read("warm")

    # What the engine sends to Table Storage for one create and one read, recorded once.
    name = f"rec-{uuid.uuid4().hex[:8]}"
    create_calls = engine.recorded(lambda: engine.create(name))
    templates = _rows_written(create_calls, name)
    if len(templates) < 2:  # not recorded: rows of the same size (docs/storage.md)
        rec.note("create floor: the engine's rows were not recorded; rows of typical size used")
        templates = [
            {"type": KEY_TYPE, "latest_version": 1, "state": "active", "meta": "x" * 120},
            {"material": b"\0" * 1300, "public_key": "p" * 451, "meta": "x" * 120},
        ]
    read_calls = engine.recorded(lambda: engine.read("warm"))
    if not read_calls:  # not recorded: Store.get_key_and_versions' range query
        rec.note("read floor: the engine's Table calls were not recorded; its range query used")
        read_calls = uncached_calls(engine, "warm")
    raw = stack.table_client()
    from azure.data.tables import TableServiceClient

    anchor_service = TableServiceClient.from_connection_string(stack.azurite.connection_string)
    anchor = anchor_service.create_table_if_not_exists(f"bench{uuid.uuid4().hex[:8]}anchor")

    def ours_create() -> None:
        r = ours.post(f"{keys_url}/c-{uuid.uuid4().hex[:10]}", json={"type": KEY_TYPE})
        assert r.status_code in (200, 204), r.text

    def bao_create() -> None:
        r = bao.post(f"{transit_url}/c-{uuid.uuid4().hex[:10]}", json={"type": KEY_TYPE})
        assert r.status_code in (200, 204), r.text

    def engine_create() -> None:
        engine.create(f"i-{uuid.uuid4().hex[:10]}")

    anchor_rows: list[str] = []

    def floor_create() -> None:
        keytypes.generate(KEY_TYPE)
        row = uuid.uuid4().hex
        anchor.submit_transaction(
            [
                ("create", {"PartitionKey": "p", "RowKey": f"{row}{i}", **template})
                for i, template in enumerate(templates)
            ]
        )
        anchor_rows.append(f"{row}0")

    floor_create()
    samples = interleaved(
        [
            ("ours", ours_create),
            ("bao", bao_create),
            ("floor", floor_create),
            ("engine", engine_create),
        ],
        creates,
    )
    print(f"create {KEY_TYPE} (Azurite, OpenBao dev server, on loopback):")
    c_ours = rec.samples("create.host", "create through the local host", samples["ours"])
    c_bao = rec.samples("create.openbao", "anchor: OpenBao transit create", samples["bao"])
    c_floor = rec.samples(
        "create.floor",
        "anchor: keygen + one Table transaction (key + version row)",
        samples["floor"],
    )
    c_engine = rec.samples("create.inprocess", "create in process (no HTTP)", samples["engine"])
    sizes = ", ".join(f"{_size(t)} B" for t in templates)
    print(f"  (the anchor's transaction writes the rows the engine wrote for a create: {sizes})")
    print(f"  (the engine's Table calls for a create, recorded: {_summary(create_calls)})")
    rec.add(
        "create.table_calls",
        "Table calls of one create (recorded in process)",
        len(create_calls),
        "count",
    )
    rec.ratio("create.host_over_openbao", "create host / OpenBao", c_ours / c_bao, "<= 1.0")
    rec.ratio(
        "create.host_over_floor", "create host / keygen + transaction", c_ours / c_floor, "<= 1.1"
    )
    rec.ratio(
        "create.inprocess_over_floor",
        "create in process / keygen + transaction",
        c_engine / c_floor,
    )
    rec.derived(
        "create.host_overhead",
        "host overhead on a create (host - in process)",
        (c_ours - c_engine) * 1000,
        "ms",
    )

    # -- reads ------------------------------------------------------------------------------
    scoped = session(token)
    point_row = anchor_rows[0]
    replay = [(m, a, k) for m, a, k in read_calls if m in READS]

    for method, args, kwargs in replay:
        print(f"  (the read's Table call, recorded: {method} {_describe(args, kwargs)})")

    def ours_read() -> None:
        assert ours.get(f"{keys_url}/warm").status_code == 200

    def bao_read() -> None:
        assert bao.get(f"{transit_url}/warm").status_code == 200

    def engine_read() -> None:
        engine.read("warm")

    def handler_read() -> None:
        engine.handler_read("warm")

    query_floor = replayer(raw, replay)
    uncached = uncached_calls(engine, "warm")
    uncached_floor = replayer(raw, uncached)

    def point_read() -> None:
        anchor.get_entity("p", point_row)

    def ours_token_read() -> None:
        assert scoped.get(f"{keys_url}/warm").status_code == 200

    def engine_token_read() -> None:
        engine.read("warm", token=token)

    ours_token_read()
    deadline = time.monotonic() + 15
    while True:  # a token's first request reads and parses its policies
        try:
            engine_token_read()
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    sides = [
        ("ours", ours_read),
        ("bao", bao_read),
        ("engine", engine_read),
        ("handler", handler_read),
        ("query", query_floor),
        ("uncached", uncached_floor),
        ("point", point_read),
        ("ours_token", ours_token_read),
        ("engine_token", engine_token_read),
    ]
    samples = interleaved(sides, reads)
    print("read one key of one version:")
    r_ours = rec.samples("read.host", "read through the local host", samples["ours"])
    r_bao = rec.samples("read.openbao", "anchor: OpenBao transit read", samples["bao"])
    r_engine = rec.samples("read.inprocess", "read in process (no HTTP)", samples["engine"])
    r_handler = rec.samples(
        "read.handler",
        "read through the function handler (no host)",
        samples["handler"],
    )
    what = ", ".join(m for m, _, _ in replay) or "nothing recorded"
    r_query = rec.samples(
        "read.query_floor",
        f"anchor: the engine's Table calls for it, raw ({what})",
        samples["query"],
    )
    r_uncached = rec.samples(
        "read.uncached_floor",
        "anchor: Store.get_key_and_versions' Table calls, raw (no cache)",
        samples["uncached"],
    )
    r_point = rec.samples("read.point", "anchor: one Table point read (raw SDK)", samples["point"])
    rec.derived(
        "read.table_calls",
        "Table calls of one read (recorded in process)",
        len(replay),
        "count",
        why="recorded",
    )
    rec.ratio("read.host_over_openbao", "read host / OpenBao", r_ours / r_bao, "<= 2.0")
    if r_query > 0 and replay:
        rec.ratio(
            "read.inprocess_over_query",
            "read in process / its Table calls raw",
            r_engine / r_query,
            "<= 1.2",
        )
    rec.ratio("read.host_over_query", "read host / its Table calls raw", r_ours / r_query)
    rec.ratio(
        "read.inprocess_over_uncached",
        "read in process / get_key_and_versions' calls raw",
        r_engine / r_uncached,
    )
    rec.derived(
        "read.host_overhead",
        "host overhead on a read (host - in process)",
        (r_ours - r_engine) * 1000,
        "ms",
    )
    rec.derived(
        "read.adapter_overhead",
        "of which the adapter (handler - in process)",
        (r_handler - r_engine) * 1000,
        "ms",
    )
    rec.derived(
        "read.host_http_overhead",
        "of which the host and HTTP (host - handler)",
        (r_ours - r_handler) * 1000,
        "ms",
    )

    print("the token and policy check (3 policies x 20 rules from the token store vs root):")
    t_ours = rec.samples("token.host", "read with the 3-policy token, host", samples["ours_token"])
    t_engine = rec.samples(
        "token.inprocess", "read with the 3-policy token, in process", samples["engine_token"]
    )
    rec.derived("token.host_added", "token + policies add, host", (t_ours - r_ours) * 1000, "ms")
    rec.derived(
        "token.inprocess_added",
        "token + policies add, in process",
        (t_engine - r_engine) * 1000,
        "ms",
    )
    rec.derived(
        "token.host_added_reads",
        "token + policies add, host, in point reads",
        (t_ours - r_ours) / r_point,
        "reads",
    )
    rec.derived(
        "token.inprocess_added_reads",
        "token + policies add, in process, in point reads",
        (t_engine - r_engine) / r_point,
        "reads",
    )

    # -- 8 clients reading one key ------------------------------------------------------------
    ours_sessions = [session() for _ in range(clients)]
    bao_sessions = [session() for _ in range(clients)]

    def ours_worker(s: Any) -> Callable[[], None]:
        def go() -> None:
            r = s.get(f"{keys_url}/warm")
            assert r.status_code == 200, r.status_code

        return go

    def bao_worker(s: Any) -> Callable[[], None]:
        def go() -> None:
            r = s.get(f"{transit_url}/warm")
            assert r.status_code == 200, r.status_code

        return go

    # The SDK side reads the anchor's copy of the engine's key row: one client shared by its
    # threads, as the engine shares one.
    sides_t: list[tuple[str, list[Callable[[], object]]]] = [
        ("ours", [ours_worker(s) for s in ours_sessions]),
        ("bao", [bao_worker(s) for s in bao_sessions]),
        ("sdk", [point_read for _ in range(clients)]),
    ]
    # The CPU each request costs the process that serves it (from /proc): the host's for a
    # read through it, OpenBao's for its own, this process's (the SDK threads) for a point read.
    assert stack.host is not None and stack.bao is not None
    serving = {"ours": stack.host.proc.pid, "bao": stack.bao.proc.pid, "sdk": os.getpid()}
    max_requests = max(int(seconds * 2000), 200)
    for _, workers in sides_t:  # open every connection first
        throughput(workers, clients * 2, seconds)
    rates: dict[str, list[float]] = {name: [] for name, _ in sides_t}
    cpu: dict[str, list[float]] = {name: [] for name, _ in sides_t}
    # And what each request costs the whole machine (every process: the serving one, the
    # clients in this process, Azurite): with both cores busy, a side's rate follows it.
    machine: dict[str, list[float]] = {name: [] for name, _ in sides_t}
    for i in range(rounds):
        for name, workers in sides_t if i % 2 == 0 else list(reversed(sides_t)):
            cpu0, busy0 = process_cpu(serving[name]), machine_busy()
            wall0 = time.perf_counter()
            rate = throughput(workers, max_requests, seconds)
            served = rate * (time.perf_counter() - wall0)
            rates[name].append(rate)
            cpu[name].append((process_cpu(serving[name]) - cpu0) / max(served, 1))
            machine[name].append((machine_busy() - busy0) / max(served, 1))
    print(f"{clients} clients reading one key ({rounds} rounds of at most {seconds:.1f} s each):")
    medians, cpu_ms, machine_ms = {}, {}, {}
    for name, label, whose in (
        ("ours", "through the local host", "the host process"),
        ("bao", "anchor: OpenBao transit", "the OpenBao process"),
        ("sdk", f"anchor: raw SDK point reads, {clients} threads", "this process"),
    ):
        medians[name] = statistics.median(rates[name])
        cpu_ms[name] = statistics.median(cpu[name]) * 1000
        machine_ms[name] = statistics.median(machine[name]) * 1000
        spread = ", ".join(f"{r:.0f}" for r in rates[name])
        print(
            f"  {label:<56} median {medians[name]:8.0f} req/s   rounds: {spread}   "
            f"CPU {cpu_ms[name]:.2f} ms/request ({whose}), "
            f"{machine_ms[name]:.2f} ms/request (the machine)"
        )
        rec.add(f"throughput.{name}", f"{clients}-client reads, {label}", medians[name], "req/s")
    for name, label in (
        ("ours", "CPU per request, the host process (8-client reads)"),
        ("bao", "CPU per request, the OpenBao process (8-client reads)"),
        ("sdk", "CPU per request, raw SDK point reads (this process)"),
    ):
        rec.add(f"throughput.{name}_cpu", label, cpu_ms[name], "ms")
        rec.add(
            f"throughput.{name}_machine_cpu",
            f"machine CPU per request (every process), {name} side of the 8-client reads",
            machine_ms[name],
            "ms",
        )
    if machine_ms["ours"] > 0:
        # The rate ratio this predicts when both cores are saturated.
        rec.ratio(
            "throughput.machine_cpu_sdk_over_host",
            "machine CPU per request, raw SDK / host (predicts the throughput ratio)",
            machine_ms["sdk"] / machine_ms["ours"],
        )
    if cpu_ms["sdk"] > 0:  # clock ticks: 0 only if a round served almost nothing
        rec.ratio(
            "throughput.cpu_host_over_sdk",
            "CPU per request host / raw SDK point read",
            cpu_ms["ours"] / cpu_ms["sdk"],
        )
    rec.ratio(
        "throughput.host_over_openbao",
        "throughput host / OpenBao",
        medians["ours"] / medians["bao"],
    )
    rec.ratio(
        "throughput.host_over_sdk",
        "throughput host / raw SDK point reads",
        medians["ours"] / medians["sdk"],
        ">= 0.8",
    )


def _policy_token(stack: Stack) -> str:
    """A token from the token store holding three policies of 20 rules each, the last rule of
    the third granting the read."""
    root = session()
    names = []
    for i in range(3):
        rules = "".join(
            f'path "{MOUNT}/key/p{i}-{j}-*" {{ capabilities = ["read", "list"] }}\n'
            for j in range(19 if i == 2 else 20)
        )
        if i == 2:
            rules += f'path "{MOUNT}/key/*" {{ capabilities = ["read"] }}\n'
        root.put(
            f"{stack.host.url}/v1/sys/policies/acl/bench{i}", json={"policy": rules}
        ).raise_for_status()
        names.append(f"bench{i}")
    created = root.post(
        f"{stack.host.url}/v1/auth/token/create", json={"policies": names, "ttl": "1h"}
    )
    created.raise_for_status()
    token: str = created.json()["auth"]["client_token"]
    return token
