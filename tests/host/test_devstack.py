"""``make run`` (tools.devstack): it restarts at once, every way of stopping it stops every
process it started, secrets stay off command lines, and its data folder is its owner's only."""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.fixtures.azurite import ROOT, free_port
from tests.host.conftest import create_emulated_key
from tools.devstack import SEED_CLIENT_ID, SEED_CLIENT_SECRET, SEED_TENANT_ID, _free

# What "stops within a few seconds" means here: devstack gives its children 3 s to exit.
STOPPED_WITHIN = 5.0
DEVSTACK = (sys.executable, "-m", "tools.devstack")


@dataclass(frozen=True)
class Ports:
    host: int
    table: int
    vault: int
    identity: int  # the emulator's authority listens on the next port
    blob: int

    def all(self) -> tuple[int, ...]:
        return (self.host, self.table, self.vault, self.identity, self.identity + 1, self.blob)

    def args(self) -> list[str]:
        return [
            *("--port", str(self.host), "--table-port", str(self.table)),
            *("--blob-port", str(self.blob)),
            *("--vault-port", str(self.vault), "--identity-port", str(self.identity)),
        ]


def free_ports() -> Ports:
    while True:
        identity = free_port()
        if _free(identity + 1):
            return Ports(free_port(), free_port(), free_port(), identity, free_port())


def _plain_bind(port: int) -> bool:
    """A bind without SO_REUSEADDR: what the port check did before, refused in TIME_WAIT."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def leave_time_wait(port: int) -> None:
    """What a stopped run leaves on a server's port: a connection the server closed first,
    in TIME_WAIT for a minute."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _ = listener.accept()
            served.close()
            client.settimeout(5)
            assert client.recv(1) == b""  # the server's FIN; closing now completes the close


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()  # state, ppid, pgrp, ...


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            yield int(entry.name), fields


def running_in_groups(groups: set[int]) -> list[int]:
    """Processes (zombies aside) whose process group is one of ``groups``."""
    return [pid for pid, f in _processes() if f[0] != "Z" and int(f[2]) in groups]


class Devstack:
    """``python -m tools.devstack`` on the given ports and data folder, output collected."""

    def __init__(
        self, ports: Ports, data_dir: Path, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.ports = ports
        self.data_dir = data_dir
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("FUNCHOST_")}
        self.proc = subprocess.Popen(
            [*DEVSTACK, *ports.args(), "--data-dir", str(data_dir), *extra],
            cwd=ROOT,
            env={**inherited, **(env or {}), "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.children: list[int] = []

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no ready: line within {timeout} s:\n{self.output()}")
            if line is None:
                pytest.fail(f"devstack exited with {self.proc.wait()}:\n{self.output()}")
            if line.startswith("ready:"):
                break
        self.children = [pid for pid, f in _processes() if int(f[1]) == self.proc.pid]
        assert len(self.children) == 3, self.output()  # Azurite, the emulator, the host

    def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(text := self.output()):
                return text
            time.sleep(0.1)
        pytest.fail(f"gave up waiting for {what}:\n{self.output()}")

    def kill(self) -> None:
        for pgid in [self.proc.pid, *self.children]:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


@pytest.fixture
def start_devstack() -> Iterator[Callable[..., Devstack]]:
    started: list[Devstack] = []

    def start(ports: Ports, data_dir: Path, *extra: str, **kwargs: object) -> Devstack:
        started.append(Devstack(ports, data_dir, *extra, **kwargs))
        return started[-1]

    yield start
    for stack in started:
        stack.kill()


# -- 1. a restart right after a stop ----------------------------------------------------------


def test_restart_is_not_refused_by_the_last_run_s_time_wait(
    tmp_path: Path, start_devstack: Callable[..., Devstack]
) -> None:
    ports = free_ports()
    for port in ports.all():
        leave_time_wait(port)
        # The state the check used to trip on: a plain bind is refused for a minute.
        assert not _plain_bind(port)
    stack = start_devstack(ports, tmp_path / "data")
    stack.wait_ready()  # the check lets it start, and every server binds its port
    assert requests.get(f"http://127.0.0.1:{ports.host}/v1/sys/health", timeout=60).ok


def test_a_port_in_use_is_still_refused(
    tmp_path: Path, start_devstack: Callable[..., Devstack]
) -> None:
    ports = free_ports()
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", ports.table))
        holder.listen()
        stack = start_devstack(ports, tmp_path / "data")
        assert stack.proc.wait(60) == 1
    assert f"port {ports.table} (Azurite) is in use" in stack.output()


# -- 2. every way of stopping it --------------------------------------------------------------


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: signal.Signals(s).name
)
def test_every_stop_signal_stops_every_child(
    tmp_path: Path, start_devstack: Callable[..., Devstack], signum: int
) -> None:
    stack = start_devstack(free_ports(), tmp_path / "data")
    stack.wait_ready()
    groups = set(stack.children)  # each child leads its own process group
    stack.proc.send_signal(signum)
    deadline = time.monotonic() + STOPPED_WITHIN
    while running_in_groups(groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running_in_groups(groups) == [], stack.output()
    assert stack.proc.wait(max(0.1, deadline - time.monotonic())) == 0


# -- 3. secrets and files ---------------------------------------------------------------------


def test_secrets_stay_off_command_lines_and_the_data_folder_is_private(
    tmp_path: Path, start_devstack: Callable[..., Devstack]
) -> None:
    data = tmp_path / "data"
    # What an earlier run left, before files were made private.
    (data / "kvemu").mkdir(parents=True)
    data.chmod(0o755)
    (data / "kvemu").chmod(0o755)
    seal_key = base64.b64encode(os.urandom(32)).decode()
    (data / "seal.key").write_text(seal_key)
    (data / "seal.key").chmod(0o644)
    ports = free_ports()
    master_key = uuid.uuid4().hex
    stack = start_devstack(ports, data, "--persist", env={"FUNCHOST_MASTER_KEY": master_key})
    stack.wait_ready()

    secrets = json.loads((data / "kvemu" / "secrets.json").read_text())
    webhook = urllib.parse.urlsplit(secrets["eventgrid_webhook"])
    (eventgrid_key,) = urllib.parse.parse_qs(webhook.query)["code"]
    for pid in stack.children:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        for secret in (SEED_CLIENT_SECRET, eventgrid_key, seal_key, master_key):
            assert secret.encode() not in argv, argv.replace(b"\0", b" ")
        assert b"code=" not in argv
        if b"tools.funchost" not in argv:  # the host's keys are the host's alone
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert master_key.encode() not in environ
            assert eventgrid_key.encode() not in environ
    admin = f"http://127.0.0.1:{ports.host}/admin/functions/reconciler"
    assert requests.get(admin, timeout=60).status_code == 401
    # Past the key check; the local host routes POST only.
    assert (
        requests.get(admin, headers={"x-functions-key": master_key}, timeout=60).status_code == 404
    )

    # The seed's client creates a key: state for the emulator to persist.
    create_key(ports, data, "devstack-state")
    # The file audit device under the data folder: named in the banner, the root token only
    # as its HMAC, the file private (checked with the rest below).
    audit_log = data / "audit.log"
    assert f"audit log: {audit_log}" in stack.output()
    mounts = requests.get(
        f"http://127.0.0.1:{ports.host}/v1/sys/mounts",
        headers={"X-Vault-Token": "root"},
        timeout=60,
    )
    assert mounts.ok
    entries = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert [e["type"] for e in entries if e["request"]["path"] == "sys/mounts"] == [
        "request",
        "response",
    ]
    assert entries[-1]["auth"]["client_token"].startswith("hmac-sha256:")
    login_as_the_managed_identity(stack, ports, tmp_path)
    assert (data / "kvemu" / "state.sqlite").exists()
    for path in [data, *data.rglob("*")]:
        try:
            info = path.lstat()
        except FileNotFoundError:  # a journal that came and went
            continue
        expected = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        assert stat.S_IMODE(info.st_mode) == expected, f"{path}: {oct(info.st_mode)}"


def login_as_the_managed_identity(stack: Devstack, ports: Ports, home: Path) -> None:
    """The banner's login recipe, run as printed: a managed-identity token for Resource
    Manager from the identity endpoint, then auth/azure, with the bao CLI."""
    lines = stack.output().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("log in as the Function"))
    recipe = [line.strip() for line in lines[start + 1 : start + 6]]
    assert recipe[0] == "bao auth enable azure" and recipe[-1].startswith(
        "bao write auth/azure/login"
    )
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "BAO_ADDR": f"http://127.0.0.1:{ports.host}",
        "BAO_TOKEN": "root",
        "HOME": str(home),
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(recipe)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "token_meta_role" in done.stdout
        and 'token_policies                    ["default"]' in done.stdout
    )


def create_key(ports: Ports, data_dir: Path, name: str) -> None:
    """Create a key in the emulated vault as the seed's client (its access policy allows it)."""
    create_emulated_key(
        f"https://127.0.0.1:{ports.identity + 1}",
        SEED_TENANT_ID,
        SEED_CLIENT_ID,
        SEED_CLIENT_SECRET,
        f"https://127.0.0.1:{ports.vault}",
        name,
        str(data_dir / "kvemu" / "ca.pem"),
    )


def test_the_emulator_s_events_carry_the_host_s_event_grid_key(
    tmp_path: Path, start_devstack: Callable[..., Devstack]
) -> None:
    ports = free_ports()
    stack = start_devstack(ports, tmp_path / "data")
    stack.wait_ready()
    create_key(ports, tmp_path / "data", "devstack-event")  # KeyNewVersionCreated, posted
    output = stack.wait_for(
        lambda text: "POST /runtime/webhooks/eventgrid " in text, "the event's delivery"
    )
    (delivery,) = [line for line in output.splitlines() if "POST /runtime/webhooks/" in line]
    assert " 401" not in delivery and " 403" not in delivery, delivery
    secrets = json.loads((tmp_path / "data" / "kvemu" / "secrets.json").read_text())
    assert "&code=" in secrets["eventgrid_webhook"]
    assert secrets["eventgrid_webhook"].rpartition("&code=")[2] not in output
    # Anyone else's post, without the key, is refused.
    refused = requests.post(
        f"http://127.0.0.1:{ports.host}/runtime/webhooks/eventgrid",
        params={"functionName": "keyvault_events"},
        headers={"aeg-event-type": "Unsubscribe"},
        timeout=60,
    )
    assert refused.status_code == 401


def test_a_shared_folder_is_not_taken_as_the_data_folder(
    tmp_path: Path, start_devstack: Callable[..., Devstack]
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: making it private would lock everyone else out
    stack = start_devstack(free_ports(), shared)
    assert stack.proc.wait(60) == 1
    assert "is a shared folder" in stack.output()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert list(shared.iterdir()) == []
