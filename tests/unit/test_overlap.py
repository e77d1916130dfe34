"""shared.overlap: a call run beside the caller returns its result or raises its error, in the
caller's context (the request id its log lines carry)."""

from __future__ import annotations

import threading

import pytest

from shared import overlap
from shared.vaultapi import REQUEST_ID


def test_the_result_and_the_thread_are_the_pools() -> None:
    future = overlap.start(lambda: (21 * 2, threading.current_thread().name))
    value, thread = future.result(timeout=10)
    assert value == 42
    assert thread.startswith("keymgmt-overlap") and thread != threading.current_thread().name


def test_an_error_is_raised_where_the_result_is_asked_for() -> None:
    def fail() -> None:
        raise LookupError("not there")

    future = overlap.start(fail)
    with pytest.raises(LookupError, match="not there"):
        future.result(timeout=10)


def test_the_task_sees_the_callers_request_id() -> None:
    token = REQUEST_ID.set("req-123")
    try:
        future = overlap.start(REQUEST_ID.get)
    finally:
        REQUEST_ID.reset(token)
    assert future.result(timeout=10) == "req-123"
