"""The local host and the Key Vault emulator stop promptly when told to, even with work in
flight: an Event Grid delivery still running, an event post to a webhook that never answers."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fixtures.azurite import ROOT
from tests.fixtures.funchost import FuncHost
from tests.host.conftest import APP_DIR, app_settings, create_emulated_key

# Generous against a busy machine, far below what the in-flight work would hold a process:
# the barrier event waits 30 s, the emulator's event post 10 s.
PROMPTLY = 5.0
CLIENT_ID = "5b2c0a51-0000-4000-8000-00000000c11e"
CLIENT_SECRET = "a-client-secret-for-tests"
WEBHOOK_KEY = "a-webhook-key-for-tests"
KVEMU = (sys.executable, "-m", "tools.kvemu", "--vault", "v=0")


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: signal.Signals(s).name
)
def test_host_stops_promptly_during_an_event_grid_delivery(signum: int) -> None:
    with tempfile.TemporaryDirectory(prefix="funchost-stop-") as markers:
        host = FuncHost(app_settings(Path(markers)), app_dir=APP_DIR)
        try:
            # One event that waits on a three-party barrier: it runs until its 30 s timeout.
            event = {
                "id": "never-done",
                "topic": "t",
                "subject": "s",
                "eventType": "Demo.Stuck",
                "eventTime": "2024-05-06T07:08:09Z",
                "dataVersion": "1",
                "data": {"barrier": True},
            }
            threading.Thread(
                target=_post_quietly,
                args=(
                    f"{host.url}/runtime/webhooks/eventgrid?functionName=on_event",
                    json.dumps([event]),
                ),
                daemon=True,
            ).start()
            time.sleep(1)  # the invocation is under way
            host.proc.send_signal(signum)
            host.proc.wait(PROMPTLY)
            assert host.proc.returncode == 0
        finally:
            host.stop()


def _post_quietly(url: str, body: str) -> None:
    try:
        requests.post(url, data=body, headers={"aeg-event-type": "Notification"}, timeout=60)
    except requests.RequestException:
        pass  # the host went away mid-request, as it should


@pytest.fixture
def silent_webhook() -> Iterator[socket.socket]:
    """A port that takes connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener


def _secrets_file(folder: Path, secrets: dict, mode: int = 0o600) -> Path:
    path = folder / "secrets.json"
    path.write_text(json.dumps(secrets))
    path.chmod(mode)
    return path


def _start_emulator(folder: Path, *extra: str) -> tuple[subprocess.Popen, dict[str, str]]:
    """``python -m tools.kvemu`` with one vault ``v``; its printed settings."""
    proc = subprocess.Popen(
        [*KVEMU, "--identity-port", "0", "--cert-dir", str(folder / "certs"), *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    printed: dict[str, str] = {}
    while True:
        line = lines.get(timeout=60)
        if line is None:
            pytest.fail(f"the emulator exited with {proc.wait()}")
        if line.startswith("control API:"):
            return proc, printed
        name, sep, value = line.strip().partition("=")
        if sep:
            printed[name] = value
        elif line.startswith("vault v "):
            printed["vault"] = line.split()[2]


def test_emulator_takes_secrets_from_a_file_and_stops_promptly_mid_post(
    tmp_path: Path, silent_webhook: socket.socket
) -> None:
    port = silent_webhook.getsockname()[1]
    webhook = f"http://127.0.0.1:{port}/hook?functionName=keyvault_events&code={WEBHOOK_KEY}"
    secrets = _secrets_file(
        tmp_path, {"clients": {CLIENT_ID: CLIENT_SECRET}, "eventgrid_webhook": webhook}
    )
    proc, printed = _start_emulator(
        tmp_path,
        "--secrets-file",
        str(secrets),
        "--role-assignment",
        f"v:{CLIENT_ID}:Key Vault Crypto Officer",
    )
    try:
        ca = printed["KEYMGMT_KEYVAULT_CA_BUNDLE"]
        # The client from the file gets a token, and with it creates a key...
        create_emulated_key(
            printed["AZURE_AUTHORITY_HOST"],
            printed["AZURE_TENANT_ID"],
            CLIENT_ID,
            CLIENT_SECRET,
            printed["vault"],
            "stuck",
            ca,
        )
        # ...whose KeyNewVersionCreated goes to the webhook from the file, query string kept.
        silent_webhook.settimeout(30)
        connection, _ = silent_webhook.accept()
        with connection:
            connection.settimeout(30)
            request_line = connection.recv(65536).split(b"\r\n", 1)[0].decode()
            assert request_line == (
                f"POST /hook?functionName=keyvault_events&code={WEBHOOK_KEY} HTTP/1.1"
            )
            # The post now waits for an answer that never comes; the emulator must not.
            proc.send_signal(signal.SIGTERM)
            proc.wait(PROMPTLY)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_emulator_refuses_a_secrets_file_others_can_read(tmp_path: Path) -> None:
    secrets = _secrets_file(tmp_path, {"clients": {CLIENT_ID: CLIENT_SECRET}}, mode=0o644)
    result = subprocess.run(
        [*KVEMU, "--cert-dir", str(tmp_path), "--secrets-file", str(secrets)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "must be readable by its owner only" in result.stderr
    assert CLIENT_SECRET not in result.stderr
