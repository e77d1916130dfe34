"""The local stack's parts, written once: Azurite's Table and Blob services, the local Functions
host, and the app settings that point the engine at them.

``make run`` (tools.devstack), the test fixtures (tests/fixtures) and the benchmarks (bench/)
all start the stack from here, so a new flag or setting is added in one place.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
# Azurite's well-known development account; not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# The root token of a throwaway engine (tests, benchmarks).
ROOT_TOKEN = "root"
# The engine's settings for a Key Vault emulator, each with the tools.kvemu.Emulator attribute
# that holds its value (the emulator also prints them as NAME=value lines).
EMULATOR_SETTINGS = {
    "KEYMGMT_KEYVAULT_URLS": "keyvault_urls_setting",
    "KEYMGMT_KEYVAULT_CA_BUNDLE": "ca_path",
    "IDENTITY_ENDPOINT": "identity_endpoint",
    "IDENTITY_HEADER": "identity_header",
    "AZURE_AUTHORITY_HOST": "authority_host",
}


# -- processes and ports ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    """Until something listens on ``port``; RuntimeError if ``proc`` exits first,
    TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout} s")


def wait_healthy(url: str, timeout: float = 60) -> None:
    """Until the host at ``url`` answers ``/v1/sys/health`` with 200; else TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v1/sys/health", timeout=5) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except (OSError, http.client.HTTPException):  # not up yet, or not answering yet
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate, then kill if it does not exit within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- Azurite ----------------------------------------------------------------------------------


def connection_string(port: int, blob_port: int | None = None) -> str:
    """The development account's connection string for Azurite's Table service on ``port``
    (and its Blob service on ``blob_port``: the blob audit device writes there)."""
    blob = f"BlobEndpoint=http://{LOOPBACK}:{blob_port}/{DEV_ACCOUNT};" if blob_port else ""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"TableEndpoint=http://{LOOPBACK}:{port}/{DEV_ACCOUNT};{blob}"
    )


def azurite_binary(name: str = "azurite-table") -> Path:
    """``name`` (``azurite-table``, or ``azurite`` for every service) from node_modules
    (``npm ci``), else from PATH."""
    binary = ROOT / "node_modules" / ".bin" / name
    if not binary.exists():
        found = shutil.which(name)
        if found is None:
            raise RuntimeError(f"{name} not found: run `make test` (it runs npm ci)")
        binary = Path(found)
    return binary


def azurite_command(
    port: int,
    *,
    blob_port: int | None = None,
    queue_port: int | None = None,
    location: Path | None = None,
) -> list[str]:
    """Azurite's Table service on ``port`` (and, with ``blob_port``, its Blob service: then
    the all-services binary runs, its Queue service on ``queue_port``, unused): in memory, or
    in ``location``."""
    # azure-storage-blob 12.31 speaks a service version newer than Azurite 3.35 knows; the
    # engine's client keeps the SDK's version (Azure's own), so the emulator skips its check.
    services = (
        [
            "--skipApiVersionCheck",
            "--blobHost",
            LOOPBACK,
            "--blobPort",
            str(blob_port),
            "--queueHost",
            LOOPBACK,
            "--queuePort",
            str(queue_port or free_port()),
        ]
        if blob_port
        else []
    )
    return [
        str(azurite_binary("azurite" if blob_port else "azurite-table")),
        *(["--location", str(location)] if location is not None else ["--inMemoryPersistence"]),
        "--disableTelemetry",
        "--silent",
        "--tableHost",
        LOOPBACK,
        "--tablePort",
        str(port),
        *services,
    ]


class Azurite:
    """Azurite's Table and Blob services, in memory, on free ports (or ``port``)."""

    def __init__(self, port: int | None = None, *, blob_port: int | None = None) -> None:
        self.port = port or free_port()
        self.blob_port = blob_port or free_port()
        self.proc = subprocess.Popen(
            azurite_command(self.port, blob_port=self.blob_port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        wait_for_port(self.port, self.proc)
        wait_for_port(self.blob_port, self.proc)
        self.connection_string = connection_string(self.port, self.blob_port)

    def stop(self) -> None:
        stop_process(self.proc)


# -- the engine's settings --------------------------------------------------------------------


def new_seal_key() -> str:
    """A fresh seal key (32 random bytes, base64), as KEYMGMT_SEAL_KEY takes it."""
    return base64.b64encode(os.urandom(32)).decode()


def engine_app_settings(
    storage: str, *, seal_key: str, root_token: str, **extra: str
) -> dict[str, str]:
    """The engine's app settings: its Table Storage, seal key and root token, then ``extra``."""
    return {
        "KEYMGMT_STORAGE": storage,
        "KEYMGMT_SEAL_KEY": seal_key,
        "KEYMGMT_ROOT_TOKEN": root_token,
        **extra,
    }


def engine_settings(azurite: Azurite, prefix: str, **extra: str) -> dict[str, str]:
    """A throwaway engine on ``azurite``: tables under ``prefix``, a fresh seal key, the root
    token, the keymgmt mount; ``extra`` adds or overrides settings."""
    defaults = {"KEYMGMT_TABLE_PREFIX": prefix, "KEYMGMT_DEFAULT_MOUNTS": "keymgmt"}
    return engine_app_settings(
        azurite.connection_string,
        seal_key=new_seal_key(),
        root_token=ROOT_TOKEN,
        **{**defaults, **extra},
    )


# The emulator answers on 127.0.0.1, not in a Key Vault domain: the SDK's check of the
# challenge's resource must be off for it (never for a real vault).
EMULATOR_FIXED_SETTINGS = {"KEYMGMT_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false"}


def emulator_settings(kv: object) -> dict[str, str]:
    """Point the engine at a Key Vault emulator (tools.kvemu.Emulator) and its identity."""
    return {
        **{name: getattr(kv, attribute) for name, attribute in EMULATOR_SETTINGS.items()},
        **EMULATOR_FIXED_SETTINGS,
    }


# -- the local Functions host -----------------------------------------------------------------


def funchost_command(
    port: int, *, app_dir: Path = ROOT, settings: str | None = None, timers: bool = True
) -> list[str]:
    """``python -m tools.funchost`` serving ``app_dir`` on ``port``; ``settings`` replaces
    local.settings.json, and ``timers=False`` leaves the timers to the admin endpoint."""
    return [
        sys.executable,
        "-m",
        "tools.funchost",
        "--app-dir",
        str(app_dir),
        "--port",
        str(port),
        *(["--settings", settings] if settings is not None else []),
        *([] if timers else ["--no-timers"]),
    ]


class FuncHost:
    """``python -m tools.funchost`` on a free port with the given app settings."""

    def __init__(
        self,
        settings: Mapping[str, str],
        *,
        app_dir: Path = ROOT,
        timers: bool = False,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.settings = dict(settings)
        self.log = tempfile.NamedTemporaryFile(prefix="funchost-", suffix=".log", delete=False)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KEYMGMT_", "AZURE_", "IDENTITY_", "MSI_", "FUNCHOST_"))
        }
        env.update(settings)
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            funchost_command(self.port, app_dir=app_dir, settings=os.devnull, timers=timers),
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(self.port, self.proc, timeout=60)
        except Exception:
            raise RuntimeError(f"funchost did not start:\n{self.logs()}") from None

    def logs(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
        Path(self.log.name).unlink(missing_ok=True)
