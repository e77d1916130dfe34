"""Independent blocking calls overlapped: one runs on a small shared thread pool while the
caller does the other.

For remote reads and writes that do not depend on each other (a Table read beside a Key Vault
read, the next version's material while the current one is imported). A task run here never
waits on this pool itself, so a full pool only queues work and cannot deadlock. Each task runs
in a copy of the caller's context (the request id its log lines carry).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # the pool's module is imported when first used, not at cold start
    from concurrent.futures import Future, ThreadPoolExecutor

T = TypeVar("T")

# Enough for a few requests overlapping their reads at once; more only queues.
WORKERS = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="keymgmt-overlap")
        return _pool


def start(fn: Callable[[], T]) -> Future[T]:
    """Run ``fn`` on the pool, in the caller's context; its result (or exception) is the
    future's. ``fn`` must not wait on this pool."""
    context = contextvars.copy_context()
    return _executor().submit(context.run, fn)
