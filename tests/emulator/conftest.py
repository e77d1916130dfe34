"""Every keys API response the emulator sends during these tests must match the spec."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.emulator.conformance import Conformance, spec_path
from tools.kvemu import Emulator


@pytest.fixture(scope="session")
def conformance() -> Conformance | None:
    path = spec_path()
    if not path.exists():
        return None
    return Conformance(json.loads(path.read_text("utf-8")))


@pytest.fixture(autouse=True)
def _responses_conform(
    request: pytest.FixtureRequest, conformance: Conformance | None
) -> Iterator[None]:
    """Validate the responses of the session emulator recorded during each test."""
    if "kv_emulator" not in request.fixturenames:
        yield
        return
    emulator: Emulator = request.getfixturevalue("kv_emulator")
    start = len(emulator.recorded())
    yield
    if conformance is None:
        return  # test_conformance.py reports the skip with its reason
    problems = [
        problem
        for r in emulator.recorded()[start:]
        for problem in conformance.problems(r.operation_id, r.status, r.body)
    ]
    assert not problems, "responses that do not match the keys API spec:\n" + "\n".join(problems)
