"""What every benchmark shares: reporting samples, recording measures, interleaving sides,
and the CPU a process spent (Linux /proc)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.results import Measure, fmt, mark


def report(label: str, samples: list[float], width: int = 56) -> float:
    """Print median, p10 and p90 in milliseconds; return the median in seconds."""
    median = statistics.median(samples)
    q = statistics.quantiles(samples, n=10) if len(samples) >= 10 else [min(samples), max(samples)]
    print(
        f"  {label:<{width}} median {median * 1000:8.2f} ms   p10 {q[0] * 1000:8.2f}   "
        f"p90 {q[-1] * 1000:8.2f}   n={len(samples)}",
        flush=True,
    )
    return median


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    sides: Sequence[tuple[str, Callable[[], object]]], n: int
) -> dict[str, list[float]]:
    """``n`` samples of each side, one of each per round, the order reversed every other round
    (so neither side always runs right after the same one): machine noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name, _ in sides}
    for i in range(n):
        for name, fn in sides if i % 2 == 0 else reversed(sides):
            samples[name].append(timed(fn))
    return samples


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) of ``pid`` and its descendants so far, from
    /proc/<pid>/stat: the CPU a request costs the process that serves it, less sensitive to
    other load on a shared machine than a rate is."""
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


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every process, every core), from
    /proc/stat: what other work on a shared machine took is visible beside ours."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class Recorder:
    """The measures of one run, in the order they were printed."""

    def __init__(self) -> None:
        self.measures: list[Measure] = []
        self.notes: list[str] = []

    def add(
        self, key: str, label: str, value: float, unit: str, target: str | None = None
    ) -> float:
        self.measures = [m for m in self.measures if m.key != key]
        self.measures.append(Measure(key, label, value, unit, target))
        return value

    def samples(self, key: str, label: str, samples: list[float]) -> float:
        """Report samples (seconds) and record their median in ms; return it in seconds."""
        median = report(label, samples)
        self.add(key, label, median * 1000, "ms")
        return median

    def derived(self, key: str, label: str, value: float, unit: str, *, why: str = "") -> float:
        """A value computed from medians above (a difference, a marginal cost), or ``why``."""
        how = why or "from the medians above"
        print(f"  {label:<56} {fmt(value, unit):>16}   ({how})", flush=True)
        return self.add(key, label, value, unit)

    def ratio(self, key: str, label: str, value: float, target: str | None = None) -> float:
        status = mark(value, target)
        goal = f"   target {target}: {status}" if target else ""
        print(f"  ratio {label}: {value:.2f}{goal}", flush=True)
        return self.add(key, f"ratio {label}", value, "x", target)

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.notes.append(text)
