"""``make bench`` audit section: what an audit device adds to a request, per sink.

Four local hosts on one Azurite: no device, a file device, a log device, a blob device (append
blobs in Azurite's Blob service). Each reads one key through the API, interleaved so machine
noise hits all alike; reported as each host's median over the no-device host's (the anchor).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.common import Recorder
from tools.localstack import Azurite, FuncHost, engine_settings, wait_healthy

DEVICES = {
    "none": None,
    "file": {"path": "file", "type": "file", "options": {"file_path": ""}},
    "log": {"path": "log", "type": "log"},
    "blob": {"path": "blob", "type": "blob"},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args(argv)
    bench_audit(args.reads, Recorder())
    return 0


def bench_audit(reads: int, rec: Recorder) -> None:
    azurite = Azurite()
    folder = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    hosts: dict[str, FuncHost] = {}
    try:
        for name, device in DEVICES.items():
            extra = {}
            if device is not None:
                if device["type"] == "file":
                    device = {**device, "options": {"file_path": str(folder / "audit.log")}}
                extra["KEYMGMT_AUDIT_DEVICES"] = json.dumps([device])
            hosts[name] = FuncHost(engine_settings(azurite, f"ba{name}{os.getpid()}", **extra))
        sessions = {}
        for name, host in hosts.items():
            wait_healthy(host.url)
            session = requests.Session()
            session.headers["X-Vault-Token"] = "root"
            url = f"{host.url}/v1/keymgmt/key/warm"
            session.post(url, json={"type": "ecdsa-p256"}).raise_for_status()
            for _ in range(5):  # salts, clients, connections: made once per process
                session.get(url).raise_for_status()
            sessions[name] = (session, url)
        samples: dict[str, list[float]] = {name: [] for name in hosts}
        for i in range(reads):
            for name, (session, url) in (
                sessions.items() if i % 2 == 0 else reversed(sessions.items())
            ):
                start = time.perf_counter()
                response = session.get(url)
                samples[name].append(time.perf_counter() - start)
                assert response.status_code == 200, response.text
        print("audit devices: a key read through the API, per sink (Azurite on loopback):")
        medians = {
            name: rec.samples(f"audit.{name}", f"audit: a read, device {name}", s)
            for name, s in samples.items()
        }
        for name in ("file", "log", "blob"):
            rec.ratio(
                f"audit.{name}_over_none", f"audit {name} / none", medians[name] / medians["none"]
            )
    finally:
        for host in hosts.values():
            host.stop()
        azurite.stop()


if __name__ == "__main__":
    sys.exit(main())
