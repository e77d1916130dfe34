"""Read cost by number of versions: one rsa-2048 key each of 1, 10, 100 and 1,000 versions.

The versions are made with rotations through the engine in process (``key/:name/rotate``
through ``shared.api.handle``), outside the timed part. An rsa-2048 keygen takes about 80 ms on
a shared core, so 1,110 of them would take a minute and a half: by default the rotations take
their material from a pool of 16 real rsa-2048 keys generated first (``shared.keytypes.generate``
replaced for the setup only; every row the engine writes is as large as with fresh material,
and a read never looks at the private part). ``--fresh-versions`` generates each one.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

from bench.common import Recorder, interleaved
from bench.stack import KEY_TYPE, Stack, replayer, session, uncached_calls


def _pooled_keygen(size: int) -> tuple[Callable[[], Iterator[None]], list[int]]:
    """A context manager that makes ``shared.keytypes.generate`` hand out a pool's keys."""
    import contextlib

    from shared import keytypes

    used = [0]

    @contextlib.contextmanager
    def pooled() -> Iterator[None]:
        real = keytypes.generate
        pool = {KEY_TYPE: [real(KEY_TYPE) for _ in range(size)]}
        cycle = {k: itertools.cycle(v) for k, v in pool.items()}

        def generate(key_type: str) -> keytypes.KeyMaterial:
            if key_type not in cycle:
                return real(key_type)
            used[0] += 1
            return next(cycle[key_type])

        keytypes.generate = generate  # type: ignore[assignment]
        try:
            yield
        finally:
            keytypes.generate = real  # type: ignore[assignment]

    return pooled, used


def bench_versions(
    stack: Stack, rec: Recorder, *, sizes: tuple[int, ...], reads: int, fresh: bool
) -> None:
    import contextlib

    engine = stack.engine
    pooled, used = _pooled_keygen(16)
    start = time.perf_counter()
    names = {}
    with contextlib.nullcontext() if fresh else pooled():
        for n in sizes:
            name = f"v{n}"
            engine.create(name)
            for _ in range(n - 1):
                engine.rotate(name)
            names[n] = name
    setup = time.perf_counter() - start
    ours = session()
    url = stack.keys_url
    for name in names.values():  # warm: the first read of each key
        ours.get(f"{url}/{name}").raise_for_status()
        engine.read(name)

    def host(name: str) -> Callable[[], None]:
        def go() -> None:
            assert ours.get(f"{url}/{name}").status_code == 200

        return go

    def local(name: str) -> Callable[[], None]:
        return lambda: engine.read(name)

    raw = stack.table_client()
    sides = []
    for n, name in names.items():
        floor = replayer(raw, uncached_calls(engine, name))
        sides += [(f"host{n}", host(name)), (f"engine{n}", local(name)), (f"floor{n}", floor)]
    samples = interleaved(sides, reads)
    material = "fresh keygen per version" if fresh else f"a pool of 16 keys ({used[0]} drawn)"
    total = sum(sizes) - len(sizes)
    print(
        f"read cost by versions ({KEY_TYPE}; setup: {total} rotations in process in "
        f"{setup:.1f} s, material from {material}):"
    )
    rec.add("versions.setup", "versions: setup time (rotations in process)", setup, "s")
    if not fresh:
        rec.note(f"versions: material for the {total} rotations from a pool of 16 rsa-2048 keys")
    medians: dict[str, float] = {}
    for n in sizes:
        medians[f"host{n}"] = rec.samples(
            f"versions.host.{n}",
            f"read, {n} version{'s' if n > 1 else ''}, through the local host",
            samples[f"host{n}"],
        )
        medians[f"engine{n}"] = rec.samples(
            f"versions.inprocess.{n}",
            f"read, {n} version{'s' if n > 1 else ''}, in process",
            samples[f"engine{n}"],
        )
        medians[f"floor{n}"] = rec.samples(
            f"versions.uncached_floor.{n}",
            f"anchor: {n} version{'s' if n > 1 else ''}, get_key_and_versions' calls raw",
            samples[f"floor{n}"],
        )
    low, high = min(sizes), max(sizes)
    target = "<= 4" if (low, high) == (1, 1000) else None
    rec.ratio(
        f"versions.host_{high}_over_{low}",
        f"read {high} / {low} versions, host",
        medians[f"host{high}"] / medians[f"host{low}"],
        target,
    )
    rec.ratio(
        f"versions.uncached_floor_{high}_over_{low}",
        f"uncached range query {high} / {low} versions, raw",
        medians[f"floor{high}"] / medians[f"floor{low}"],
    )
    rec.ratio(
        f"versions.inprocess_{high}_over_{low}",
        f"read {high} / {low} versions, in process",
        medians[f"engine{high}"] / medians[f"engine{low}"],
        target,
    )
