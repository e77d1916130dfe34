"""The benchmark's shared helpers that are pure enough to test directly (bench/common.py's CPU
clocks from /proc, bench/coldstart.py's removal of the app's bytecode)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench import coldstart
from bench.common import machine_busy, process_cpu


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_process_cpu_counts_this_process_work() -> None:
    before = process_cpu(os.getpid())
    _spin(0.3)
    spent = process_cpu(os.getpid()) - before
    # Clock ticks (1/100 s): within a few ticks of the CPU spent in this thread.
    assert 0.2 <= spent <= 1.0


def test_process_cpu_includes_children() -> None:
    mine, own = process_cpu(os.getpid()), time.process_time()
    spin = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", spin + "input()"], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while process_cpu(child.pid) < 0.35 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_cpu(child.pid) >= 0.35
        # This process barely ran; its total holds its live child's CPU.
        assert (process_cpu(os.getpid()) - mine) - (time.process_time() - own) >= 0.3
    finally:
        child.communicate(b"\n", timeout=30)


def test_process_cpu_of_a_missing_process_is_zero() -> None:
    assert process_cpu(2**22 + 12345) == 0.0


def test_machine_busy_grows() -> None:
    before = machine_busy()
    _spin(0.2)
    assert machine_busy() - before >= 0.1


def test_remove_bytecode_removes_only_the_apps_own(tmp_path: Path) -> None:
    kept = tmp_path / ".venv" / "lib" / "__pycache__"
    removed = [
        tmp_path / "__pycache__",
        tmp_path / "shared" / "__pycache__",
        tmp_path / "shared" / "api" / "__pycache__",
        tmp_path / "functions" / "__pycache__",
    ]
    for directory in [kept, *removed]:
        directory.mkdir(parents=True)
        (directory / "m.cpython-311.pyc").write_bytes(b"x")
    (tmp_path / "shared" / "api" / "keys.py").write_text("")
    coldstart.remove_bytecode(tmp_path)
    assert [d for d in removed if d.exists()] == []
    assert kept.exists()
    assert (tmp_path / "shared" / "api" / "keys.py").exists()
