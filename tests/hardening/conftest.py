"""Hardening suite plumbing: an Api that counts what it sends, and the session's audit file.

Every request the fuzz and race tests send goes through ``AuditedApi``, which counts it and
every 5xx answer. The tests report the failures only they can judge (a credential echoed,
a refused write that changed state, a success whose effect is missing, a broken invariant).
At the end of the session the totals go to ``.local/audit/hardening-<worker>.json``
(git-ignored), for the closing note: requests tried, 5xx seen, echoes, half-written states.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis.configuration import set_hypothesis_home_dir

from tests.fixtures.azurite import ROOT
from tests.fixtures.funchost import Api, FuncHost

AUDIT_DIR = ROOT / ".local" / "audit"
# Hypothesis keeps caches even without an example database: with the rest of .local (ignored).
set_hypothesis_home_dir(ROOT / ".local" / "hypothesis")
MAX_SAMPLES = 60  # failures kept with their request and response, per kind
EXCERPT = 300

# What the tests report besides the automatic counts.
KINDS = (
    "server_error",  # a 5xx answer
    "echo",  # a credential or token value that was sent came back
    "half_written",  # a refused (4xx) write changed stored state
    "false_success",  # a 2xx whose effect is not there afterwards
    "false_failure",  # a refusal where a later request would have succeeded
    "invariant",  # a state that must never exist (gaps in versions, orphan rows, ...)
)


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="backslashreplace")
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


class Audit:
    """Thread-safe counters for one session (one xdist worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals: Counter[str] = Counter()
        self.by_test: dict[str, Counter[str]] = {}
        self.samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        self.current = "<outside a test>"

    def count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.totals[kind] += n
            self.by_test.setdefault(self.current, Counter())[kind] += n

    def failure(self, kind: str, **detail: Any) -> None:
        """Count one failure of ``kind`` and keep the first ones with their details."""
        assert kind in KINDS, kind
        self.count(kind)
        with self._lock:
            kept = self.samples[kind]
            if len(kept) < MAX_SAMPLES:
                kept.append({"test": self.current, **{k: excerpt(v) for k, v in detail.items()}})

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
                "fuzz_examples_setting": os.environ.get("KEYMGMT_FUZZ_EXAMPLES", "(default)"),
                "totals": {
                    "requests": self.totals["requests"],
                    "server_errors": self.totals["server_error"],
                    "echoes": self.totals["echo"],
                    "half_written": self.totals["half_written"],
                    "false_success": self.totals["false_success"],
                    "false_failures": self.totals["false_failure"],
                    "invariant_violations": self.totals["invariant"],
                    "retries": self.totals["retry"],
                    "fuzz_probes": self.totals["probe"],
                },
                "by_test": {test: dict(counts) for test, counts in sorted(self.by_test.items())},
                "samples": {kind: list(kept) for kind, kept in self.samples.items() if kept},
            }


class AuditedApi(Api):
    """``Api`` (root token, one requests session) that counts every request and every 5xx.

    ``token=None`` sends no token header at all (the token fuzz sets its own headers).
    One instance per thread: a requests session is not meant to be shared between threads.
    """

    def __init__(self, host: FuncHost, audit: Audit, token: str | None = "root") -> None:
        super().__init__(host, token or "")
        if token is None:
            del self.session.headers["X-Vault-Token"]
        self.audit = audit

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = super().request(method, path, **kwargs)
        self.audit.count("requests")
        if response.status_code >= 500:
            self.audit.failure(
                "server_error",
                method=method,
                path=path,
                params=kwargs.get("params"),
                body=kwargs.get("data", kwargs.get("json")),
                status=response.status_code,
                response=response.content,
            )
        return response


_AUDIT = Audit()


@pytest.fixture(scope="session")
def audit() -> Iterator[Audit]:
    """The session's counters; written to .local/audit/ when the session ends."""
    yield _AUDIT
    AUDIT_DIR.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    path = AUDIT_DIR / f"hardening-{worker}.json"
    path.write_text(json.dumps(_AUDIT.report(), indent=2, sort_keys=False) + "\n")


@pytest.fixture(autouse=True)
def _audit_current_test(request: pytest.FixtureRequest, audit: Audit) -> Iterator[None]:
    audit.current = request.node.nodeid
    yield
    audit.current = "<outside a test>"


@pytest.fixture(scope="session")
def make_api(audit: Audit) -> Any:
    """``make_api(host, token="root")`` → a new ``AuditedApi`` (one per thread)."""

    def make(host: FuncHost, token: str | None = "root") -> AuditedApi:
        return AuditedApi(host, audit, token)

    return make
