"""Faults on demand: throttling, private-link refusal, server errors, latency, dropped
connections; scoped to a vault (or ``*``) and optionally one operation, for N requests or
until cleared. Faults apply to authenticated requests (after the challenge round trip)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

FAULT_KINDS = ("throttle", "forbidden_by_connection", "server_error", "latency", "drop")


@dataclass
class Fault:
    vault: str  # a vault name or "*"
    kind: str
    op: str | None = None  # an operation name (see api.OPERATIONS) or None for all
    times: int | None = None  # None: until cleared
    retry_after: int | None = None  # throttle: seconds for the Retry-After header
    status: int = 500  # server_error: 500, 502, 503 or 504
    delay: float = 0.0  # latency: seconds added before the request is served

    def matches(self, vault: str, op: str) -> bool:
        return self.vault in ("*", vault) and self.op in (None, op)


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; use one of {FAULT_KINDS}")
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be at least 1 (or None for until cleared)")
        if fault.kind == "server_error" and fault.status not in (500, 502, 503, 504):
            raise ValueError("server_error status must be 500, 502, 503 or 504")
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, vault: str, op: str) -> list[Fault]:
        """Faults to apply to this request; counted ones are consumed. Latency faults come
        first and combine with at most one failing fault."""
        chosen: list[Fault] = []
        failing_taken = False
        with self._lock:
            for fault in list(self._faults):
                if not fault.matches(vault, op):
                    continue
                if fault.kind != "latency":
                    if failing_taken:
                        continue
                    failing_taken = True
                chosen.append(fault)
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
        chosen.sort(key=lambda f: f.kind != "latency")
        return chosen
